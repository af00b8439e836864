"""ablate.py: a study runs end to end at a tiny budget, writes its table, and resumes."""
import json
import os
import time

import pytest
import torch

import ablate
import train
from conftest import train_args


def study_args(shards, out, study):
    tiny = " ".join(a for a in train_args(shards, out, max_iters=2)
                    if not a.startswith(("--out_dir", "--max_iters", "--eval_interval", "--sample_prompts")))
    return [f"--study={study}", f"--out_dir={out}", "--seeds=2", "--max_iters=2", "--eval_interval=1",
            "--n_per_category=1", "--steps=1", f"--train_args={tiny}"]


def test_mask_study_writes_table_and_resumes(shards, tmp_path):
    rows = ablate.main(study_args(shards, tmp_path, "mask"))
    assert set(rows) == {"random", "diffusion_forcing", "tube"}
    assert all(len(v["val loss"]) == 2 for v in rows.values())  # one value per seed
    assert all(len(v["val loss, tube masks"]) == 2 for v in rows.values())
    # the same tube-masked batches: the tube arm's own loss, another arm's a different one
    assert rows["tube"]["val loss, tube masks"] == rows["tube"]["val loss"]
    assert rows["random"]["val loss, tube masks"] != rows["random"]["val loss"]
    assert all(c in rows["tube"] for c in ("overall",) + ablate.VIDEO_CATEGORIES)
    table = (tmp_path / "mask.md").read_text()
    assert "| tube |" in table and "±" in table
    for arm in rows:  # each arm trained with its own mask kind, each seed with its own seed
        for seed in (0, 1):
            config = torch.load(tmp_path / "mask" / f"{arm}_s{seed}" / "ckpt.pt", weights_only=True)["config"]
            assert (config["mask_kind"], config["seed"]) == (arm, seed)
    ckpt = tmp_path / "mask" / "tube_s1" / "ckpt.pt"
    before = os.path.getmtime(ckpt)
    os.remove(tmp_path / "mask" / "random_s0" / "done.json")  # as if interrupted after training
    again = ablate.main(study_args(shards, tmp_path, "mask"))
    assert os.path.getmtime(ckpt) == before  # finished runs are not trained again
    assert again["tube"] == rows["tube"]
    run = tmp_path / "mask" / "tube_s0"  # as if stopped before its first checkpoint: only a log
    for f in run.iterdir():
        if f.name != "log.jsonl":
            f.unlink()
    assert ablate.main(study_args(shards, tmp_path, "mask"))["tube"] == rows["tube"]  # trained again


def test_history_study_scores_one_model_at_each_ratio(shards, tmp_path, monkeypatch):
    asked, seeds = [], set()
    real_main = ablate.shapesbench.main
    def spy(argv):
        asked.append(next(a for a in argv if a.startswith("--history_ratio=")))
        seeds.add(next(a for a in argv if a.startswith("--seed=")))
        assert {"--n_per_category=1", "--steps=1"} <= set(argv)  # the study's own settings
        return real_main(argv)
    monkeypatch.setattr(ablate.shapesbench, "main", spy)
    rows = ablate.main(study_args(shards, tmp_path, "history"))
    assert list(rows) == [f"history {r}" for r in ablate.HISTORY_RATIOS]
    assert len(os.listdir(tmp_path / "history")) == 1  # one trained model
    assert sorted(set(asked)) == [f"--history_ratio={r}" for r in ablate.HISTORY_RATIOS]
    assert seeds == {"--seed=0", "--seed=1"}  # --seeds=2 sampling seeds at every ratio
    config = torch.load(tmp_path / "history" / "tube_s0" / "ckpt.pt", weights_only=True)["config"]
    assert config["mask_kind"] == "tube"  # the model is the paper's: trained with tube masks
    scored = len(asked)
    ablate.main(study_args(shards, tmp_path, "history"))
    assert len(asked) == scored  # the same model: its cached scores
    later = time.time() + 10
    os.utime(tmp_path / "history" / "tube_s0" / "ckpt.pt", (later, later))  # as if trained on since
    ablate.main(study_args(shards, tmp_path, "history"))
    assert len(asked) == 2 * scored  # scored again


def test_table_cells_are_mean_and_spread():
    assert ablate.mean_spread([1, 3]) == "2.000 ± 1.000"
    assert ablate.mean_spread([0.25]) == "0.250"


def test_table_rows_have_one_cell_per_column():
    """Header, separator and every arm's row have the arm cell plus one cell per column."""
    md = ablate.table({"a": {"x": [1.0], "y": [2.0, 4.0]}, "b": {"x": [0.0], "y": [1.0]}}, ["x", "y"])
    lines = md.splitlines()
    assert len(lines) == 4 and all(line.count("|") == 4 for line in lines)
    assert lines[1] == "|---|---|---|" and lines[2] == "| a | 1.000 | 3.000 ± 1.000 |"


def test_rope_arms_separate_distribution_from_scaling():
    """1D RoPE, M-RoPE (unscaled, sec. 3.2's baseline), MM-RoPE's distribution alone, and
    MM-RoPE with the tokenizer's compression as scales: each arm's model differs from the
    default one in its RoPE only."""
    meta = dict(compression=(2, 3, 5), codebook_size=8)
    default = train.model_config(dict(train.DEFAULTS), meta)
    got = {}
    for arm, overrides in ablate.STUDIES["rope"].items():
        cfg = train.model_config(dict(train.DEFAULTS, **overrides), meta)
        got[arm] = (cfg.rope_kind, cfg.rope_scales if cfg.rope_kind != "1d" else None)
        assert vars(cfg) == dict(vars(default), rope_kind=cfg.rope_kind, rope_scales=cfg.rope_scales)
    assert got == {"1d": ("1d", None), "mrope": ("mrope", (1, 1, 1)),
                   "mmrope_noscale": ("mmrope", (1, 1, 1)), "mmrope": ("mmrope", (2, 3, 5))}


def test_mask_arms_differ_in_the_training_mask_only():
    """The mask study's arms set the kind of training mask and nothing else (sec. 3.3)."""
    arms = ablate.STUDIES["mask"]
    assert {a: o for a, o in arms.items()} == {k: dict(mask_kind=k) for k in
                                               ("random", "diffusion_forcing", "tube")}


def test_history_ratios_include_no_history_mask_and_the_default():
    """The history study compares a clean context (0) with the official ratio sample.py uses."""
    from sample import HISTORY_RATIO
    assert 0.0 in ablate.HISTORY_RATIOS and HISTORY_RATIO in ablate.HISTORY_RATIOS
    assert list(ablate.HISTORY_RATIOS) == sorted(set(ablate.HISTORY_RATIOS))


def test_history_study_on_a_given_model(shards, trained_run, tmp_path, monkeypatch):
    tmp_path = tmp_path / "new"  # an out_dir that does not exist yet
    args = study_args(shards, tmp_path, "history") + [f"--model_dir={trained_run}"]
    rows = ablate.main(args)
    assert list(rows) == [f"history {r}" for r in ablate.HISTORY_RATIOS]
    assert not (tmp_path / "history").exists()  # nothing trained
    assert f"model {trained_run}" in (tmp_path / f"history_{trained_run.name}.md").read_text()
    with pytest.raises(SystemExit, match="no ckpt.pt"):
        ablate.main(study_args(shards, tmp_path, "history") + [f"--model_dir={tmp_path}"])
    with pytest.raises(SystemExit, match="is a file: give the training run's folder"):
        ablate.main(study_args(shards, tmp_path, "history") + [f"--model_dir={trained_run / 'ckpt.pt'}"])
    moved = tmp_path / "moved"  # the model's tokenizer has moved: --tokenizer_path, as in eval.py
    moved.mkdir()
    ckpt = torch.load(trained_run / "ckpt.pt", weights_only=True)
    tokenizer, ckpt["meta"]["tokenizer"] = ckpt["meta"]["tokenizer"], str(tmp_path / "gone.pt")
    torch.save(ckpt, moved / "ckpt.pt")
    one = study_args(shards, tmp_path, "history") + [f"--model_dir={moved}", "--seeds=1"]
    with pytest.raises(SystemExit, match="gone.pt.*cannot be loaded.*--tokenizer_path"):
        ablate.main(one)
    real = ablate.shapesbench.main
    def first_ratio_only(argv):  # the flag reaches eval.py, which then loads the moved tokenizer
        assert f"--tokenizer_path={tokenizer}" in argv
        real(argv)
        raise KeyboardInterrupt  # one ratio shows it; the other four would cost time only
    monkeypatch.setattr(ablate.shapesbench, "main", first_ratio_only)
    with pytest.raises(KeyboardInterrupt):
        ablate.main(one + [f"--tokenizer_path={tokenizer}"])


def test_arms_split_a_study_into_lanes(shards, tmp_path):
    """--arms trains only the named arms (one lane); a later full run reuses them."""
    lane = ablate.main(study_args(shards, tmp_path, "rope") + ["--seeds=1", "--arms=1d, mmrope"])
    assert list(lane) == ["1d", "mmrope"]
    assert sorted(os.listdir(tmp_path / "rope")) == ["1d_s0", "mmrope_s0"]
    assert "| mmrope |" in (tmp_path / "rope_1d_mmrope.md").read_text()
    ckpt = tmp_path / "rope" / "1d_s0" / "ckpt.pt"
    before = os.path.getmtime(ckpt)
    whole = ablate.main(study_args(shards, tmp_path, "rope") + ["--seeds=1"])
    assert list(whole) == list(ablate.STUDIES["rope"])
    assert os.path.getmtime(ckpt) == before and whole["1d"] == lane["1d"]
    with pytest.raises(SystemExit, match="unknown arm"):
        ablate.main(study_args(shards, tmp_path, "rope") + ["--arms=2d"])
    with pytest.raises(SystemExit, match="--seeds=0 is out of range"):
        ablate.main(study_args(shards, tmp_path, "rope") + ["--seeds=0"])


def test_train_args_may_not_set_what_the_study_sets_per_run(tmp_path):
    """An arm's setting or the seed in --train_args would make every arm and seed one model."""
    for study, extra, clash in (("rope", "--rope_kind=1d --seed=7 --batch_size=2", "rope_kind, seed"),
                                ("mask", "--mask_kind=tube", "mask_kind"),
                                ("history", "--out_dir=x", "out_dir")):
        with pytest.raises(SystemExit, match=f"--train_args sets {clash}, which ablate.py sets"):
            ablate.main([f"--study={study}", f"--out_dir={tmp_path}", f"--train_args={extra}"])
    assert not os.listdir(tmp_path)  # stopped before anything ran
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit, match="--out_dir=.*afile is a file, not a folder"):  # before any run
        ablate.main(["--study=mask", f"--out_dir={tmp_path / 'afile'}"])


@pytest.mark.skipif(ablate.fcntl is None, reason="claims need fcntl (not on Windows)")
def test_lanes_share_runs_through_claims(shards, tmp_path):
    """The same study command in two lanes: a run claimed by another lane is left to it, a claim
    left by a lane that died (its lock dropped, the file still there) is taken over, and only a
    lane that finds every run done writes the table."""
    args = study_args(shards, tmp_path, "rope") + ["--seeds=1", "--arms=1d,mmrope"]
    held = tmp_path / "rope" / "1d_s0"
    other_lane = ablate.claim(str(held))  # another open file holding the lock: another lane
    assert other_lane is not None and ablate.claim(str(held)) is None
    assert ablate.main(args) is None
    assert (tmp_path / "rope" / "mmrope_s0" / "done.json").exists()
    assert not (held / "done.json").exists() and not (tmp_path / "rope_1d_mmrope.md").exists()
    assert not ablate.claimed(str(tmp_path / "rope" / "mmrope_s0"))  # released when done
    other_lane.close()  # that lane died: the system drops its lock, claim.lock stays
    assert (held / "claim.lock").exists()
    rows = ablate.main(args)
    assert list(rows) == ["1d", "mmrope"] and (held / "done.json").exists()
    assert "| 1d |" in (tmp_path / "rope_1d_mmrope.md").read_text()


def test_a_run_trained_with_other_settings_is_not_reused(shards, tmp_path):
    args = study_args(shards, tmp_path, "rope") + ["--seeds=1", "--arms=1d"]
    ablate.main(args)
    with pytest.raises(SystemExit, match="trained with max_iters=2; .* asks for max_iters=3"):
        ablate.main(args + ["--max_iters=3"])
    done = tmp_path / "rope" / "1d_s0" / "done.json"
    record = json.loads(done.read_text())
    assert record["train_config"]["learning_rate"] == train.DEFAULTS["learning_rate"]
    assert record["train_config"]["n_layer"] == 2  # from --train_args
    record["train_config"]["text_loss"] = 1.0  # as if trained with the text loss
    done.write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="trained with text_loss=1.0; .*--train_args='--text_loss=1.0'"):
        ablate.main(args)

    def plus(extra):  # more train.py settings in --train_args
        return [a + extra if a.startswith("--train_args=") else a for a in args]

    assert ablate.main(plus(" --text_loss=1.0"))  # reused: the settings match once resolved
    record["train_config"].update(device="cuda", dtype="bfloat16", compile=True)  # ran on a GPU
    done.write_text(json.dumps(record))
    assert ablate.main(plus(" --text_loss=1.0"))  # reused on the CPU: where it ran is not what it learned
    # a train_config from before learned words: it read byte-level prompts
    del record["train_config"]["text_vocab"]
    done.write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="trained with text_vocab='bytes', text_loss=1.0; .*"
                                         "--train_args='--text_vocab=bytes --text_loss=1.0'"):
        ablate.main(args)
    assert ablate.main(plus(" --text_vocab=bytes --text_loss=1.0"))
    # a done.json of 2026-11-30 (Muon at 5e-3): no train_config, the optimizer kept
    record = {k: v for k, v in record.items() if k != "train_config"}
    done.write_text(json.dumps(dict(record, optimizer="muon")))
    lr, min_lr = train.DEFAULTS["learning_rate"], train.DEFAULTS["min_lr"]
    bytes_ = " --text_vocab=bytes --text_loss=1.0"  # its prompts and text loss, as then
    with pytest.raises(SystemExit, match=f"learning_rate=0.005, min_lr=0.0005; this command asks "
                                         f"for learning_rate={lr}, min_lr={min_lr}"):
        ablate.main(plus(bytes_))
    with pytest.raises(SystemExit, match="trained with min_lr=0.0005"):
        ablate.main(plus(bytes_ + " --learning_rate=5e-3"))
    as_it_was = plus(bytes_ + " --learning_rate=5e-3 --min_lr=5e-4")
    assert ablate.main(as_it_was)
    done.write_text(json.dumps(record))  # older still, no optimizer: trained with AdamW
    with pytest.raises(SystemExit, match="trained with optimizer='adamw'; this command asks for "
                                         "optimizer='muon'. .*--train_args='--optimizer=adamw'"):
        ablate.main(as_it_was)


@pytest.mark.skipif(ablate.fcntl is None, reason="claims need fcntl (not on Windows)")
def test_the_last_lane_sees_runs_others_finished_meanwhile(shards, tmp_path, monkeypatch):
    """A run that was busy when this lane passed it, but that its lane finished (trained, scored,
    released) before this lane's last run ended, counts as done: this lane writes the table."""
    args = study_args(shards, tmp_path, "rope") + ["--seeds=1", "--arms=1d,mmrope"]
    other = tmp_path / "rope" / "1d_s0"
    other_lane = ablate.claim(str(other))
    real_train = ablate.train_arm

    def train_and_let_the_other_lane_finish(cfg, arm, overrides, seed):
        out = real_train(cfg, arm, overrides, seed)
        if arm == "mmrope":  # meanwhile the other lane trains and scores 1d_s0, then releases it
            other_lane.close()
            real_train(cfg, "1d", ablate.STUDIES["rope"]["1d"], 0)
            ablate.bench(str(other), cfg)
            ablate.final_val(str(other))
        return out

    monkeypatch.setattr(ablate, "train_arm", train_and_let_the_other_lane_finish)
    rows = ablate.main(args)
    assert rows is not None and list(rows) == ["1d", "mmrope"]


@pytest.mark.skipif(ablate.fcntl is None, reason="claims need fcntl (not on Windows)")
def test_a_run_is_scored_while_its_lane_still_claims_it(tmp_path, monkeypatch):
    """A lane scores each run it trained before releasing the run's claim, so no other lane
    takes it for unscored and scores it too."""
    def trained(cfg, arm, overrides, seed):  # stands in for train.py: the run's done.json
        out = ablate.run_dir(cfg, arm, seed)
        open(os.path.join(out, "done.json"), "w").close()
        return out
    first = {}
    def scored(out, cfg, **kw):
        first.setdefault(out, ablate.claimed(out))
        return {"overall": 0.5}
    monkeypatch.setattr(ablate, "train_arm", trained)
    monkeypatch.setattr(ablate, "bench", scored)
    monkeypatch.setattr(ablate, "final_val", lambda out, kind="": dict(loss=1.0, per_frame=[1.0]))
    monkeypatch.setattr(ablate, "val_curve", lambda out: [])
    monkeypatch.setattr(ablate, "plot_curves", lambda curves, path: None)
    ablate.main(["--study=rope", f"--out_dir={tmp_path}", "--seeds=2", "--arms=1d,mmrope"])
    runs = [str(tmp_path / "rope" / f"{a}_s{s}") for a in ("1d", "mmrope") for s in (0, 1)]
    assert first == {run: True for run in runs}
