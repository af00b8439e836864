"""train.py: config handling, a fresh run end to end, exact resume, DDP == accumulation, bad input."""
import contextlib
import json
import math
import os
import shutil
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp

import train
from configurator import configure
from model import GPT
from tokenizer import N_BYTES
from conftest import train_args


def args(shards, out_dir, **kw):
    return train_args(shards, out_dir, **kw)


def train_log(out_dir):
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return {r["iter"]: r for r in map(json.loads, f) if "loss" in r}


def train_losses(out_dir):
    return {i: r["loss"] for i, r in train_log(out_dir).items()}


def first_step_gradient(out_dir):
    """The gradient of a one-step AdamW run, in the optimiser's order, from its first moment
    (exp_avg = (1 - beta1) g after one step)."""
    state = torch.load(out_dir / "ckpt.pt", weights_only=True)["optimizer"]["state"]
    first_moment = torch.cat([state[i]["exp_avg"].flatten() for i in range(len(state))])
    return first_moment / (1 - train.DEFAULTS["beta1"])


def test_unknown_key_and_wrong_type_are_rejected(capsys, tmp_path):
    with pytest.raises(SystemExit, match="unknown config key 'batchsize' .*: did you mean 'batch_size'\\? "
                                         "Valid keys: .*batch_size") as e:
        train.main(["--batchsize=3"])
    assert "\n" not in e.value.code  # one line
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit, match="--data_dir=.*afile is a file, not a folder: give the folder of token"):
        train.main([f"--data_dir={tmp_path / 'afile'}", f"--out_dir={tmp_path / 'run'}"])
    assert (tmp_path / "afile").read_text() == "mine"
    with pytest.raises(SystemExit, match="batch_size must be an int"):
        train.main(["--batch_size=big"])
    with pytest.raises(SystemExit, match="sample_prompts must be a tuple .* e.g. "
                                         "--sample_prompts=\"\\('a red circle',\\)\""):
        train.main(["--sample_prompts=a red circle"])
    with pytest.raises(SystemExit, match="config file 'config/nope.py' not found"):
        train.main(["config/nope.py"])
    preset = tmp_path / "typo.py"
    preset.write_text("batch_size = 16\nmax_iters = 2000 +\n")
    with pytest.raises(SystemExit, match="typo.py' does not run as Python \\(SyntaxError, line 2"):
        train.main([str(preset)])
    with pytest.raises(SystemExit, match="device='gpu': this project runs on 'cpu' or 'cuda'"):
        train.main(["--device=gpu"])


@pytest.mark.parametrize("bad", ["--batch_size=0", "--gradient_accumulation_steps=0", "--eval_iters=0",
                                 "--log_interval=0", "--learning_rate=-1.0", "--image_ratio=1.5",
                                 "--loss_chunk=-1", "--beta1=1.0", "--sample_steps=0", "--n_head=-2",
                                 "--image_iters=-1"])
def test_settings_out_of_range_stop_before_anything_runs(bad, tmp_path):
    with pytest.raises(SystemExit, match=f"{bad} is out of range"):
        train.main([bad, f"--out_dir={tmp_path}"])
    assert not tmp_path.joinpath("log.jsonl").exists()


@pytest.mark.parametrize("bad", ["--grad_clip=1e400", "--sample_cfg=1e999", "--min_lr=-1e400"])
def test_infinite_settings_stop_before_anything_runs(bad, tmp_path):
    # 1e400 parses as a float, inf, which passes a test like x >= 0
    with pytest.raises(SystemExit, match=f"{bad.split('=')[0]}=-?inf is not a finite number"):
        train.main([bad, f"--out_dir={tmp_path}"])
    assert not tmp_path.joinpath("log.jsonl").exists()


@pytest.mark.parametrize("script", ["train", "sample", "eval"])
def test_help_lists_every_setting_with_its_default_and_note(script, capsys, monkeypatch, tmp_path):
    module = __import__(script)
    monkeypatch.setitem(sys.modules, "__main__", module)  # as `python {script}.py --help` runs
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help", "--batch_size=0"])  # --help wins over anything else
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(module.__doc__.strip()) and f"python {script}.py" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  --")}
    assert set(lines) == {f"--{k}" for k in module.DEFAULTS}
    notes = dict(train=("--mask_kind", "'tube' | 'random' | 'diffusion_forcing'"),
                 sample=("--history_ratio", "# share of each finished frame masked"),
                 eval=("--steps", "# sampling, as in sample.py"))
    key, note = notes[script]
    assert note in lines[key] and "= 0.7" not in lines["--out_dir"]
    assert "# " not in lines["--seed"]  # no note from a later, unrelated line
    assert not os.listdir(tmp_path)  # nothing was run


def test_overrides_take_the_settings_type():
    defaults = dict(max_iters=10, lr=0.1, out_dir="out", flag=False)
    with pytest.raises(SystemExit, match="max_iters must be an int"):
        configure(defaults, ["--max_iters=True"])  # a bool is not a count
    got = configure(defaults, ["--out_dir=2026", "--lr=1", "--flag=true"])
    assert got == dict(max_iters=10, lr=1.0, out_dir="2026", flag=True)  # text stays text
    assert configure(defaults, ["--out_dir='a b'"])["out_dir"] == "a b"


def test_fresh_run_trains_checkpoints_and_samples(shards, tmp_path):
    train.main(args(shards, tmp_path, sample_prompts=("a red circle moves right", "a blue square"),
                    sample_steps=2))
    assert (tmp_path / "ckpt.pt").is_file() and (tmp_path / "best.pt").is_file()
    assert sorted(train_losses(tmp_path)) == [1, 2, 3, 4]
    assert (tmp_path / "samples" / "a_red_circle_moves_right.gif").is_file()
    assert (tmp_path / "samples" / "a_blue_square.png").is_file()
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == 4 and ckpt["config"]["batch_size"] == 4
    with open(tmp_path / "log.jsonl") as f:  # the log opens with what ran, where, with what
        header = json.loads(f.readline())["run"]
    assert header["torch"] == torch.__version__ and header["config"]["batch_size"] == 4


def test_a_sample_prompt_over_the_text_budget_stops_the_run_before_training(shards, tmp_path):
    with pytest.raises(SystemExit, match="sample prompt 'a red circle a red.* over the text budget"):
        train.main(args(shards, tmp_path, sample_prompts=("a red circle " * 40,)))
    assert not (tmp_path / "ckpt.pt").exists()


def test_sample_prompts_do_not_change_the_training(shards, tmp_path):
    """The end-of-run samples check the tokenizer before training; building it must not draw
    from the run's RNG (it did once, and the default job trained another model)."""
    train.main(args(shards, tmp_path / "a", sample_prompts=()))
    train.main(args(shards, tmp_path / "b", sample_prompts=("a blue square",), sample_steps=1))
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")


def test_data_whose_tokenizer_moved_samples_with_tokenizer_path(shards, tmp_path):
    """Shards record the path of the tokenizer that encoded them; moved, it is found through
    --tokenizer_path (the fingerprint still has to match), and the checkpoint records where it
    is now, so sample.py and eval.py find it without the flag."""
    data = tmp_path / "shards"
    shutil.copytree(shards / "shards", data)
    meta = json.loads((data / "meta.json").read_text())
    meta["tokenizer"] = str(tmp_path / "gone" / "tok.pt")
    (data / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="gone.*cannot be loaded.*--tokenizer_path"):
        train.main(args(shards, tmp_path / "a", data_dir=str(data), tokenizer_path=meta["tokenizer"],
                        sample_prompts=("a blue square",)))
    shutil.copy(shards / "tok.pt", tmp_path / "here.pt")
    train.main(args(shards, tmp_path / "b", data_dir=str(data), tokenizer_path=str(tmp_path / "here.pt"),
                    sample_prompts=("a blue square",), sample_steps=1, max_iters=1))
    assert (tmp_path / "b" / "samples" / "a_blue_square.png").is_file()
    ckpt = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert ckpt["meta"]["tokenizer"] == str(tmp_path / "here.pt")


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_continues_exactly(shards, tmp_path, optimizer):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train.main(args(shards, straight, max_iters=6, eval_interval=3, optimizer=optimizer))
    train.main(args(shards, resumed, max_iters=3, lr_decay_iters=6, eval_interval=3, optimizer=optimizer))
    train.main(args(shards, resumed, max_iters=6, eval_interval=3, init_from="resume", optimizer=optimizer))
    a, b = train_losses(straight), train_losses(resumed)
    assert [a[i] for i in (4, 5, 6)] == [b[i] for i in (4, 5, 6)]
    other = "adamw" if optimizer == "muon" else "muon"
    with pytest.raises(SystemExit, match=f"trained with optimizer='{optimizer}': resume it with "
                                         f"--optimizer={optimizer}"):
        train.main(args(shards, resumed, max_iters=7, init_from="resume", optimizer=other))


def test_muon_steps_the_blocks_matrices_and_adamw_the_rest():
    """optimizer='muon': each block matrix moves by an orthogonalised step of RMS 0.2 * lr (about
    AdamW's first step), the embedding, heads and norms by AdamW."""
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_kv_head=1, n_embd=64, ffn_hidden=128, n_visual=100,
                          text_head=True))
    cfg = dict(train.DEFAULTS, optimizer="muon", weight_decay=0.0, learning_rate=0.01)
    opt = train.make_optimizer(model, cfg, "cpu")
    muon, adamw = opt.optimizers[1], opt.optimizers[0]
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    assert in_muon == {n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert len(in_muon) == 8
    assert {names[id(p)] for g in adamw.param_groups for p in g["params"]} == set(names.values()) - in_muon
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    for n, p in model.named_parameters():
        step = before[n] - p.detach()
        rms = step.pow(2).mean().sqrt() / 0.01
        if n in in_muon:
            assert 0.14 < rms < 0.22, n  # 0.2 for a semi-orthogonal step
            sv = torch.linalg.svdvals(step)
            assert sv.max() / sv.quantile(0.1) < 2.0, n  # a flat spectrum: orthogonalised
        else:
            assert 0.9 < rms < 1.1, n  # AdamW's first step: lr * sign(grad)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_weight_decay_shrinks_the_matrices_only(optimizer):
    """With a zero gradient a step is the decoupled weight decay alone: every matrix (embedding,
    heads, the blocks' matrices, on AdamW or Muon) shrinks by lr * weight_decay, the norms' gains
    do not move."""
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_kv_head=1, n_embd=64, ffn_hidden=128, n_visual=32,
                          text_head=True))
    lr, wd = 0.01, 0.1
    opt = train.make_optimizer(model, dict(train.DEFAULTS, optimizer=optimizer, weight_decay=wd,
                                           learning_rate=lr), "cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        shrink = 1 - lr * wd if p.dim() >= 2 else 1.0
        torch.testing.assert_close(p.detach(), before[n] * shrink, msg=n)


class TickingClock:
    """A stand-in for the time module: every reading is one second after the last, so a run's
    logged throughput depends on its token counts alone."""

    def __init__(self):
        self.now = 0.0

    def time(self):
        self.now += 1.0
        return self.now


def _ddp_worker(rank, world, port, argv):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train.time = TickingClock()
    train.main(argv)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_equals_gradient_accumulation(shards, tmp_path, monkeypatch):
    """2 gloo processes x 2 micro-batches == 1 process x 4 micro-batches: same global batch,
    same masked-token normalisation, gradients synced once per step (no_sync on the first
    micro-step), same losses and weights."""
    ddp, accum = tmp_path / "ddp", tmp_path / "accum"
    common = dict(max_iters=3, eval_interval=100, text_drop=0.5, text_loss=0.5)  # both losses
    mp.spawn(_ddp_worker, args=(2, free_port(), args(shards, ddp, gradient_accumulation_steps=2, **common)),
             nprocs=2)
    monkeypatch.setattr(train, "time", TickingClock())
    train.main(args(shards, accum, gradient_accumulation_steps=4, **common))
    a, b = train_log(ddp), train_log(accum)
    assert sorted(a) == [1, 2, 3]
    for i in a:
        # throughput of the global batch: every rank's tokens (its image and video micro-batches
        # differ in length), over the same clock
        assert a[i]["tokens_per_s"] == b[i]["tokens_per_s"]
        assert abs(a[i]["loss"] - b[i]["loss"]) < 1e-5
        # the gradient itself, not only its direction (AdamW and Muon steps hide its scale)
        assert a[i]["grad_norm"] == pytest.approx(b[i]["grad_norm"], rel=1e-4)
        # per-frame losses too: summed over ranks, and over micro-batches of images (1 frame)
        # and videos (3 latent frames) alike
        assert [x is None for x in a[i]["frame_loss"]] == [x is None for x in b[i]["frame_loss"]]
        assert all(abs(x - y) < 1e-5 for x, y in zip(a[i]["frame_loss"], b[i]["frame_loss"]) if x is not None)
    batches = train.Batches(dict(train.DEFAULTS, data_dir=str(shards / "shards"), batch_size=4,
                                 image_ratio=0.5, gradient_accumulation_steps=4), "train", 0)
    kinds = [{int(batches.get(step, m)["frame"].max()) for m in range(4)} for step in range(3)]
    assert {0, 2} in kinds  # some step mixes an image micro-batch with a video one
    wa = torch.load(ddp / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(accum / "ckpt.pt", weights_only=True)["model"]
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-4, msg=name)


def test_missing_and_corrupt_checkpoints_are_clear_errors(shards, tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint at"):
        train.main(args(shards, tmp_path, init_from="resume"))
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="not a readable checkpoint"):
        train.main(args(shards, tmp_path, init_from="resume"))
    assert (tmp_path / "ckpt.pt").read_bytes() == b"not a checkpoint"  # the user's file is kept
    with pytest.raises(SystemExit, match=r"\(ckpt.pt exists\): continue it with --init_from=resume"):
        train.main(args(shards, tmp_path))  # a new run never overwrites an old one's checkpoint
    assert (tmp_path / "ckpt.pt").read_bytes() == b"not a checkpoint"
    train.main(args(shards, tmp_path / "old", max_iters=2))
    ckpt = torch.load(tmp_path / "old" / "ckpt.pt", weights_only=True)
    ckpt["model_args"]["visual_offset"] = 260  # a checkpoint of the byte-only vocabulary of before
    torch.save(ckpt, tmp_path / "old" / "ckpt.pt")
    with pytest.raises(SystemExit, match="older nanolumos.*visual codes at token 260"):
        train.main(args(shards, tmp_path / "old", max_iters=3, init_from="resume"))


@pytest.mark.parametrize("left", ["best.pt", "log.jsonl"])
def test_a_new_run_never_writes_over_what_an_earlier_run_left(shards, tmp_path, left):
    """A folder with an earlier run's best checkpoint or log, but no ckpt.pt, is still a run."""
    (tmp_path / left).write_bytes(b"kept")
    with pytest.raises(SystemExit, match=rf"holds an earlier run \({left} exists\)"):
        train.main(args(shards, tmp_path))
    how = {"best.pt": "holds best.pt but no ckpt.pt: copy best.pt to ckpt.pt to resume",
           "log.jsonl": r"stopped before its first checkpoint \(log.jsonl, no ckpt.pt\): delete log.jsonl"}
    with pytest.raises(SystemExit, match=how[left]):
        train.main(args(shards, tmp_path, init_from="resume"))
    assert (tmp_path / left).read_bytes() == b"kept" and not (tmp_path / "ckpt.pt").exists()
    with pytest.raises(SystemExit, match=f"--out_dir=.*{left} is a file, not a folder"):
        train.main(args(shards, tmp_path / left))


def test_resume_with_another_model_shape_is_a_clear_error(shards, tmp_path):
    """A resumed run takes its model from the checkpoint; a command asking for another shape or
    RoPE stops, instead of training the old model under a config that says otherwise."""
    train.main(args(shards, tmp_path, max_iters=2))
    with pytest.raises(SystemExit, match="n_layer=2; this run asks for n_layer=3"):
        train.main(args(shards, tmp_path, max_iters=3, init_from="resume", n_layer=3))
    with pytest.raises(SystemExit, match="rope_kind='mmrope'; this run asks for rope_kind='1d'"):
        train.main(args(shards, tmp_path, max_iters=3, init_from="resume", rope_kind="1d"))
    train.main(args(shards, tmp_path, max_iters=3, init_from="resume"))
    assert sorted(train_losses(tmp_path)) == [1, 2, 3]


def test_weights_that_do_not_fit_their_config_are_one_short_error(trained_run):
    ckpt = train.load_checkpoint(str(trained_run / "ckpt.pt"))
    ckpt["model_args"] = dict(ckpt["model_args"], n_layer=1)  # weights of 2 blocks, config of 1
    with pytest.raises(SystemExit, match=r"weights do not fit .* \(\d+ missing, extra or misshapen, "
                                         r"such as blocks\.1\.") as e:
        train.model_from_checkpoint(ckpt, "ckpt.pt")
    assert len(str(e.value.code)) < 400
    ckpt["model_args"] = dict(ckpt["model_args"], n_layer=2, ffn_hidden=64)  # misshapen MLPs
    with pytest.raises(SystemExit, match="such as blocks.0.mlp"):
        train.model_from_checkpoint(ckpt, "ckpt.pt")


def test_a_tokenizer_path_the_data_does_not_use_is_named(shards, tmp_path, capsys):
    """The shards decode only with the tokenizer that encoded them; another --tokenizer_path is
    not used, and the run says so instead of recording it in silence."""
    train.main(args(shards, tmp_path, max_iters=1, tokenizer_path=str(tmp_path / "none.pt")))
    assert f"--tokenizer_path={tmp_path / 'none.pt'} is not used" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert os.path.samefile(ckpt["meta"]["tokenizer"], shards / "tok.pt")


def test_a_moved_tokenizer_is_checked_before_it_is_recorded(shards, tmp_path):
    """Shards whose tokenizer has moved take --tokenizer_path, but only the data's own tokenizer:
    another file stops the run instead of entering the checkpoint."""
    data = tmp_path / "data"
    shutil.copytree(shards / "shards", data)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps(dict(meta, tokenizer=str(tmp_path / "moved.pt"))))
    (tmp_path / "ckpt_like.pt").write_bytes(b"not a tokenizer")
    with pytest.raises(SystemExit, match="ckpt_like.pt .*cannot be loaded"):
        train.main(args(shards, tmp_path / "a", data_dir=str(data),
                        tokenizer_path=str(tmp_path / "ckpt_like.pt")))
    train.main(args(shards, tmp_path / "b", data_dir=str(data), max_iters=1))  # the real one, moved
    ckpt = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert os.path.samefile(ckpt["meta"]["tokenizer"], shards / "tok.pt")


def test_resume_at_or_past_max_iters_changes_nothing(shards, tmp_path, capsys):
    """Resuming a finished run with its own max_iters says so and rewrites nothing; with fewer
    it is an error (the checkpoint would claim a max_iters it ran past)."""
    train.main(args(shards, tmp_path, max_iters=2))
    files = {f: (tmp_path / f).read_bytes() for f in ("ckpt.pt", "best.pt", "log.jsonl")}
    train.main(args(shards, tmp_path, max_iters=2, init_from="resume"))
    assert "at max_iters=2 already: nothing to train" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="at iteration 2 already, past this run's max_iters=1"):
        train.main(args(shards, tmp_path, max_iters=1, init_from="resume"))
    assert {f: (tmp_path / f).read_bytes() for f in files} == files
    # samples a run was stopped before writing are written on resume, and nothing else changes
    train.main(args(shards, tmp_path, max_iters=2, init_from="resume", sample_prompts=("a red circle",)))
    assert (tmp_path / "samples" / "a_red_circle.png").is_file()
    assert {f: (tmp_path / f).read_bytes() for f in files} == files


def test_data_of_another_geometry_and_a_bad_dtype_are_clear_errors(shards, tmp_path):
    with pytest.raises(SystemExit, match="holds 32x32 clips of 9 frames at 8 fps, but this run asks "
                                         "for 64x64, 9 frames at 8 fps: give another --data_dir"):
        train.main(args(shards, tmp_path / "a", height=64, width=64))
    with pytest.raises(SystemExit, match="multiple of 4"):  # new shapes shards at a bad resolution
        train.main(args(shards, tmp_path / "b", data_dir=str(tmp_path / "new"), height=30))
    with pytest.raises(SystemExit, match="dtype must be 'float32' or 'bfloat16'"):
        train.main(args(shards, tmp_path / "c", dtype="float16"))


def test_an_unknown_optimizer_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="optimizer must be 'adamw' or 'muon', got 'sgd'"):
        train.main(["--optimizer=sgd", f"--out_dir={tmp_path}"])
    assert not tmp_path.joinpath("log.jsonl").exists()


@pytest.mark.parametrize("bad,message", [
    ("--init_from=resumee", "init_from must be one of 'scratch', 'resume', got 'resumee'"),
    ("--init_from=resume", "no checkpoint at .*ckpt.pt to resume: point --out_dir at the run"),
    ("--model_size=huge", "model_size must be one of 'tiny', .*got 'huge'"),
    ("--mask_kind=tubes", "mask_kind must be one of 'tube', 'random', 'diffusion_forcing', got 'tubes'"),
    ("--dataset=videos", "dataset must be one of 'shapes', 'folder'"),
    ("--prompt_template=long", "prompt_template must be one of .*'official'"),
    ("--rope_kind=3d", "unknown rope kind '3d'"),
    ("--attn_impl=dense", "attn_impl must be 'sdpa', 'flex' or 'frames'"),
    ("--n_head=3", "n_embd \\(128\\) must be divisible by n_head \\(3\\)"),
    ("--n_head=8", "mmrope allocates frequencies in blocks of 16")])
def test_bad_settings_stop_before_the_data_is_prepared(bad, message, tmp_path, monkeypatch):
    """A misspelt choice, a model that cannot be built or a resume without a checkpoint must not
    first spend minutes training a tokenizer and encoding shards (data_dir has none here)."""
    import data.prepare
    monkeypatch.setattr(data.prepare, "prepare_shapes", lambda **kw: pytest.fail("data prepared first"))
    with pytest.raises(SystemExit, match=message):
        train.main([*bad.split(), f"--out_dir={tmp_path / 'run'}", f"--data_dir={tmp_path / 'no_shards'}"])


def test_empty_data_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="prepare"):
        train.main(["--dataset=folder", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'out'}"])


@pytest.mark.parametrize("preset", ["shapes_tiny", "shapes_tiny_t2", "shapes_tiny_long", "shapes_gpu",
                                    "lumos_1b", "lumos_3b"])
def test_presets_are_valid_configs_with_valid_models(preset):
    from model import PRESETS, GPTConfig
    cfg = configure(train.DEFAULTS, [f"config/{preset}.py"])
    train.check_config(cfg)  # every choice known, the model buildable (no SystemExit)
    assert GPTConfig(**PRESETS[cfg["model_size"]]).head_dim % 32 == 0  # mmrope's blocks of 16
    changed = {k for k in cfg if cfg[k] != train.DEFAULTS[k]}
    if preset == "shapes_tiny":  # the preset spells out the defaults
        assert cfg == train.DEFAULTS
    if preset in ("shapes_tiny_t2", "shapes_tiny_long"):  # measured with 1000 codes and bytes: pinned
        assert cfg["text_vocab"] == "bytes" and cfg["text_loss"] == 1.0
        from data.prepare import tokenizer_config
        tok = tokenizer_config(cfg["tokenizer_path"], cfg["height"], cfg["width"], cfg["frames"], "cpu",
                               cfg["tokenizer_args"])
        assert tok["levels"] == (8, 5, 5, 5) and cfg["tokenizer_path"].startswith(cfg["out_dir"] + "/")
    if preset == "shapes_tiny_t2":  # the defaults but for its files and its tokenizer's compression
        assert changed == {"out_dir", "data_dir", "tokenizer_path", "tokenizer_args", "text_vocab",
                           "text_loss"}
        assert tok["compression"] == (2, 4, 4)
    if preset == "shapes_tiny_long":  # the defaults but for its steps, files and tokenizer's codes
        assert changed == {"out_dir", "data_dir", "tokenizer_path", "tokenizer_args", "max_iters",
                           "eval_interval", "text_vocab", "text_loss"}
        assert cfg["max_iters"] == 6000 and tok["compression"] == (4, 4, 4)


def test_validation_batches_do_not_depend_on_the_seed(shards):
    """Runs with different seeds are scored on the same validation clips and masks (their own
    training batches differ), so validation losses compare across seeds."""
    cfg = dict(train.DEFAULTS, data_dir=str(shards / "shards"), batch_size=4, image_ratio=0.5)
    def batches(split, seed):
        b = train.Batches(dict(cfg, seed=seed), split, 0)
        return [b.get(0, k) for k in range(4)]
    for split, same in (("val", True), ("train", False)):
        a, b = batches(split, 0), batches(split, 1337)
        equal = all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))
        assert equal == same, split


def test_image_iters_trains_on_images_first_then_as_before(shards, tmp_path):
    """The paper's stage 1 (--image_iters=N): the first N training steps draw images alone, even
    at image_ratio 0; from step N on, the batches of a run without it, draw for draw. Validation
    batches do not change. Without image shards it stops with one line."""
    cfg = dict(train.DEFAULTS, data_dir=str(shards / "shards"), batch_size=4, image_ratio=0.0,
               image_iters=3)
    staged, plain = train.Batches(cfg, "train", 0), train.Batches(dict(cfg, image_iters=0), "train", 0)
    same = lambda x, y: x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    rank1 = train.Batches(dict(cfg, gradient_accumulation_steps=2), "train", 1)
    for step in range(3):  # every micro-step on every rank: one latent frame, images
        assert all(int(b["frame"].max()) == 0 for b in (staged.get(step), staged.get(step, 1),
                                                         rank1.get(step, 0), rank1.get(step, 1)))
        assert int(plain.get(step)["frame"].max()) > 0    # image_ratio 0: videos
    assert all(same(staged.get(step, k), plain.get(step, k)) for step in (3, 4, 9) for k in (0, 1))
    val = train.Batches(cfg, "val", 0, words=staged.words)
    val_plain = train.Batches(dict(cfg, image_iters=0), "val", 0, words=staged.words)
    assert all(same(val.get(0, k), val_plain.get(0, k)) for k in range(3))
    videos_only = tmp_path / "videos_only"
    videos_only.mkdir()
    for f in (shards / "shards").iterdir():
        if "image" not in f.name:
            shutil.copy(f, videos_only / f.name)
    meta = json.loads((videos_only / "meta.json").read_text())  # a folder of videos alone
    meta["counts"] = {split: dict(n, image=0) for split, n in meta["counts"].items()}
    (videos_only / "meta.json").write_text(json.dumps(meta))
    train.Batches(dict(cfg, data_dir=str(videos_only), image_iters=0), "train", 0)  # fine without
    with pytest.raises(SystemExit, match="image_iters=3 trains on images first, but .* holds no images"):
        train.Batches(dict(cfg, data_dir=str(videos_only)), "train", 0)


def test_validation_without_the_prompt_keeps_clips_and_masks(shards):
    """evaluate(text=False) scores the same clips and masks with every prompt dropped, so the
    gap to the ordinary validation loss measures how much the model uses the prompt."""
    from tokenizer import TEXT_FRAME
    cfg = dict(train.DEFAULTS, data_dir=str(shards / "shards"), batch_size=4, image_ratio=0.5)
    val = train.Batches(cfg, "val", 0)
    for k in range(4):
        cond, uncond = val.get(0, k), val.get(0, k, text=False)
        n_vis = int((cond["frame"][0] >= 0).sum())  # visual slots: the same count in every row
        for key in ("targets", "loss_mask", "frame", "row", "col"):
            assert torch.equal(cond[key][:, -n_vis:], uncond[key][:, -n_vis:]), key
        assert (cond["frame"] == TEXT_FRAME).any(1).sum() >= 3  # most rows keep their prompt
        assert not (uncond["frame"] == TEXT_FRAME).any()


@pytest.mark.parametrize("kind", ["tube", "random", "diffusion_forcing"])
def test_training_batches_hide_exactly_the_tokens_the_loss_scores(shards, kind):
    """The input holds MASK exactly where the loss is taken, only on visual tokens, and the
    clean codes everywhere else; the targets are clean. Tube masks hide the same spots in every
    frame, at least the floor's share of each frame; the other kinds do not line up in time."""
    from tokenizer import MASK
    cfg = dict(train.DEFAULTS, data_dir=str(shards / "shards"), batch_size=8, image_ratio=0.0,
               mask_kind=kind)
    data = train.Batches(cfg, "train", 0)
    _, F, h, w = data.kinds["video"][0].shape
    lined_up = []
    for step in range(4):
        b = data.get(step)
        hidden = b["loss_mask"]
        assert torch.equal(b["idx"] == MASK, hidden)
        assert torch.equal(b["idx"][~hidden], b["targets"][~hidden])
        assert not (b["targets"] == MASK).any() and (b["frame"][hidden] >= 0).all()
        per_frame = hidden[:, -F * h * w:].view(-1, F, h * w)
        lined_up += (per_frame == per_frame[:, :1]).all(2).all(1).tolist()
        if kind == "tube":
            assert (per_frame[:, 0].sum(1) >= round(cfg["mask_floor"] * h * w)).all()
    assert all(lined_up) if kind == "tube" else not any(lined_up)


def test_text_dropout_drops_the_configured_share_of_prompts(shards):
    """Classifier-free guidance's training half: text_drop of the rows start at the video."""
    from tokenizer import TEXT_FRAME
    for split, p in (("train", 0.0), ("train", 0.5), ("val", 0.5)):  # validation scores the objective
        cfg = dict(train.DEFAULTS, data_dir=str(shards / "shards"), batch_size=16, text_drop=p)
        data = train.Batches(cfg, split, 0)
        kept = torch.cat([(data.get(0, k)["frame"] == TEXT_FRAME).any(1) for k in range(20)])
        dropped = 1 - kept.float().mean().item()
        assert dropped == 0.0 if p == 0 else 0.4 < dropped < 0.6


def test_the_loss_is_one_mean_over_the_masked_tokens_of_the_global_batch(shards, tmp_path):
    """AR-DF (sec. 3.3): the loss averages every masked token of the global batch, not the
    micro-batches' own means. At seed 1, step 0 is an image micro-batch (about 200 masked
    tokens) and a video one (about 600): the gradient of the first step (AdamW's first moment,
    unclipped) must be that of sum(loss_sum) / sum(count); the mean of the two means differs."""
    argv = args(shards, tmp_path, seed=1, gradient_accumulation_steps=2, max_iters=1, eval_interval=100,
                optimizer="adamw", grad_clip=0.0)
    cfg = configure(train.DEFAULTS, argv)
    data = train.Batches(cfg, "train", 0)
    micro = [data.get(0, m) for m in (0, 1)]
    assert sorted(int(b["frame"].max()) for b in micro) == [0, 2]

    def gradient(objective):
        torch.manual_seed(cfg["seed"])  # train.main's initialisation
        model = GPT(train.model_config(cfg, data.meta))
        outs = [model(b["idx"], b["frame"], b["row"], b["col"], targets=b["targets"],
                      loss_mask=b["loss_mask"]) for b in micro]
        objective(outs).backward()
        ps = list(model.parameters())  # in the optimiser's order: matrices, then the rest
        ps = [p for p in ps if p.dim() >= 2] + [p for p in ps if p.dim() < 2]
        return torch.cat([p.grad.flatten() for p in ps])

    want = gradient(lambda outs: sum(o["loss_sum"] for o in outs) / sum(o["count"] for o in outs))
    other = gradient(lambda outs: sum(o["loss_sum"] / o["count"] for o in outs) / len(outs))
    assert (want - other).norm() > 0.02 * want.norm()  # 3.7%: the two are told apart
    train.main(argv)
    got = first_step_gradient(tmp_path)
    assert (got - want).norm() < 1e-4 * want.norm()
    # the log of that step: the same mean, and each latent frame's sum over its own count
    torch.manual_seed(cfg["seed"])
    model = GPT(train.model_config(cfg, data.meta))
    with torch.no_grad():
        outs = [model(b["idx"], b["frame"], b["row"], b["col"], targets=b["targets"],
                      loss_mask=b["loss_mask"]) for b in micro]
    fl, fc = torch.zeros(3), torch.zeros(3)
    for o in outs:
        fl[:len(o["frame_count"])] += o["frame_loss_sum"].float()
        fc[:len(o["frame_count"])] += o["frame_count"].float()
    rec = train_log(tmp_path)[1]
    assert rec["loss"] == pytest.approx((fl.sum() / fc.sum()).item(), rel=1e-5)
    assert rec["frame_loss"] == pytest.approx((fl / fc).tolist(), rel=1e-5)


def test_resume_with_another_text_loss_setting_is_a_clear_error(shards, tmp_path):
    """A run trained with the text loss cannot silently resume into one without it (the default,
    the paper's recipe), nor the other way: the error names the setting to use."""
    train.main(args(shards, tmp_path, max_iters=2, text_loss=1.0))
    with pytest.raises(SystemExit, match="with the text loss: resume it with --text_loss=1.0"):
        train.main(args(shards, tmp_path, max_iters=3, init_from="resume"))
    train.main(args(shards, tmp_path, max_iters=3, init_from="resume", text_loss=1.0))
    assert sorted(train_losses(tmp_path)) == [1, 2, 3]


def test_the_text_vocabulary_is_learned_from_training_captions_and_kept_in_the_checkpoint(shards, tmp_path):
    """text_vocab='words': the train split's frequent words become tokens, validation reads its
    prompts with the same words, the checkpoint keeps them for sampling, and a resume on another
    vocabulary is refused; text_vocab='bytes' is the plain byte-level prompt."""
    cfg = train.configure(train.DEFAULTS, args(shards, tmp_path))
    tr = train.Batches(cfg, "train", 0)
    val = train.Batches(cfg, "val", 0, words=tr.words)
    assert " red" in tr.words and " circle" in tr.words
    by_bytes = train.Batches(dict(cfg, text_vocab="bytes"), "train", 0)
    assert by_bytes.words == ()
    for kind in tr.kinds:  # the same captions in fewer tokens
        assert sum(map(len, tr.kinds[kind][1])) < 0.6 * sum(map(len, by_bytes.kinds[kind][1]))
        assert max(i for ids in val.kinds[kind][1] for i in ids[1:-1]) >= N_BYTES
    train.main(args(shards, tmp_path, max_iters=2))
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["meta"]["words"] == list(tr.words)
    with pytest.raises(SystemExit, match="another text vocabulary.*--text_vocab"):
        train.main(args(shards, tmp_path, max_iters=3, init_from="resume", text_vocab="bytes"))
    with pytest.raises(SystemExit, match="text_vocab must be"):
        train.main(args(shards, tmp_path / "x", text_vocab="bpe"))


def test_resume_on_another_tokenizers_codes_is_a_clear_error(shards, tmp_path):
    """A checkpoint continues only on codes of the tokenizer it was trained on: the same shards
    re-encoded by another tokenizer (here, their meta says so) are refused, not trained on."""
    train.main(args(shards, tmp_path / "run", max_iters=2))
    other = tmp_path / "other"
    shutil.copytree(shards / "shards", other)
    meta = json.loads((other / "meta.json").read_text())
    meta["tokenizer_fingerprint"] = "0" * len(meta["tokenizer_fingerprint"])
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="another tokenizer.*--data_dir="):
        train.main(args(shards, tmp_path / "run", max_iters=3, init_from="resume", data_dir=str(other)))
    train.main(args(shards, tmp_path / "run", max_iters=3, init_from="resume"))
    assert sorted(train_losses(tmp_path / "run")) == [1, 2, 3]


# -----------------------------------------------------------------------------
# the schedule, clipping, evaluation, best checkpoint and settings across a resume

def test_lr_schedule_warmup_cosine_and_floor():
    cfg = dict(train.DEFAULTS, learning_rate=1.0, min_lr=0.1, warmup_iters=4, lr_decay_iters=14,
               max_iters=100)
    lrs = [train.lr_at(i, cfg) for i in range(20)]
    assert lrs[:4] == pytest.approx([1 / 4, 2 / 4, 3 / 4, 1.0])  # linear, never 0, up to the peak
    assert lrs[4] == pytest.approx(1.0)  # where the cosine starts
    assert lrs[9] == pytest.approx(0.1 + 0.5 * 0.9)  # half-way: the cosine's midpoint
    assert lrs[6] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.2)) * 0.9)  # cosine, not linear
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[14:] == pytest.approx([0.1] * 6)  # min_lr from lr_decay_iters on
    assert train.lr_at(99, dict(cfg, lr_decay_iters=0)) < train.lr_at(50, dict(cfg, lr_decay_iters=0))


def test_every_rank_and_micro_step_draws_its_own_batch(shards):
    """The global micro-batch index is rank * accumulation + micro: rank 1's micro-step 0 is
    not rank 0's micro-step 1 (duplicated data), and 2 ranks x 2 micro-steps draw what
    1 rank x 4 micro-steps draws."""
    cfg = dict(train.DEFAULTS, data_dir=str(shards / "shards"), batch_size=4, image_ratio=0.5)
    def get(rank, accum, micro):
        return train.Batches(dict(cfg, gradient_accumulation_steps=accum), "train", rank).get(3, micro)
    same = lambda x, y: x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    for rank in (0, 1):
        for m in (0, 1):
            assert same(get(rank, 2, m), get(0, 4, 2 * rank + m))
    assert not same(get(1, 2, 0), get(0, 2, 1))


def test_gradient_clipping_bounds_the_step_gradient(shards, tmp_path):
    """grad_clip: the gradient the optimiser sees has norm grad_clip (AdamW's first step hides
    a rescaled gradient, its first moment does not); the log keeps the norm before clipping."""
    train.main(args(shards, tmp_path, max_iters=1, eval_interval=100, optimizer="adamw",
                    grad_clip=0.01, warmup_iters=0))
    g = first_step_gradient(tmp_path)
    assert g.norm().item() == pytest.approx(0.01, rel=1e-3)
    with open(tmp_path / "log.jsonl") as f:
        rec = [r for r in map(json.loads, f) if "grad_norm" in r][0]
    assert rec["grad_norm"] > 0.01


def test_a_non_finite_gradient_norm_stops_the_run(shards, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(SystemExit, match="gradient norm nan at iter 0"):
        train.main(args(shards, tmp_path, max_iters=2, eval_interval=100))


def test_evaluate_pools_tokens_over_batches_overall_and_per_frame(shards):
    """evaluate(): the mean over every masked token of eval_iters fixed batches, overall and per
    latent frame (each frame's sum over its own count), and text=False scores prompt-less rows."""
    cfg = configure(train.DEFAULTS, args(shards, "unused", eval_iters=6, image_ratio=0.5))
    val = train.Batches(cfg, "val", 0)
    torch.manual_seed(0)
    model = GPT(train.model_config(cfg, val.meta)).eval()
    for text in (True, False):
        outs = []
        with torch.no_grad():
            for k in range(6):
                b = val.get(0, k, text=text)
                outs.append(model(b["idx"], b["frame"], b["row"], b["col"], targets=b["targets"],
                                  loss_mask=b["loss_mask"]))
        n_frames = max(len(o["frame_count"]) for o in outs)
        fl, fc = torch.zeros(n_frames), torch.zeros(n_frames)
        for o in outs:
            fl[:len(o["frame_count"])] += o["frame_loss_sum"].float()
            fc[:len(o["frame_count"])] += o["frame_count"].float()
        assert fc[0] > fc[1] > 0  # image batches fill frame 0 only: the frames' counts differ
        loss, per_frame = train.evaluate(model, val, cfg, "cpu", contextlib.nullcontext(), text=text)
        want = sum(o["loss_sum"].item() for o in outs) / sum(o["count"].item() for o in outs)
        assert loss == pytest.approx(want, rel=1e-5)
        assert per_frame == pytest.approx((fl / fc).tolist(), rel=1e-5)
        if text:
            with_text = loss
    assert loss != with_text


def test_the_log_scores_validation_without_the_prompt(shards, tmp_path):
    """The logged val_loss_no_text is evaluate(text=False) of the checkpointed model."""
    argv = args(shards, tmp_path, max_iters=2, eval_interval=2, eval_iters=2)
    train.main(argv)
    cfg = configure(train.DEFAULTS, argv)
    ckpt = train.load_checkpoint(str(tmp_path / "ckpt.pt"))
    model = train.model_from_checkpoint(ckpt, "ckpt.pt")
    val = train.Batches(cfg, "val", 0, words=ckpt["meta"]["words"])
    with open(tmp_path / "log.jsonl") as f:
        rec = [r for r in map(json.loads, f) if "val_loss" in r][-1]
    for text, key in ((True, "val_loss"), (False, "val_loss_no_text")):
        got, _ = train.evaluate(model, val, cfg, "cpu", contextlib.nullcontext(), text=text)
        assert rec[key] == pytest.approx(got, rel=1e-5), key
    assert rec["val_loss"] != rec["val_loss_no_text"]


def test_resume_keeps_the_best_validation_loss(shards, tmp_path, monkeypatch):
    """best.pt is the best of the whole run, resumes included: a worse validation after a resume
    leaves best.pt (and best_val_loss) as they were."""
    scores = iter([1.0, 1.0] + [2.0] * 4)  # (with, without the prompt) per evaluation: 2, then 2 and 4
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: (next(scores), [0.0]))
    train.main(args(shards, tmp_path, max_iters=2, eval_interval=2))
    train.main(args(shards, tmp_path, max_iters=4, eval_interval=2, init_from="resume"))
    last = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert last["iter_num"] == 4 and last["best_val_loss"] == 1.0
    assert best["iter_num"] == 2 and best["val_loss"] == 1.0


def test_step_i_uses_the_learning_rate_of_iteration_i(shards, tmp_path):
    train.main(args(shards, tmp_path, max_iters=3, eval_interval=100, warmup_iters=3,
                    learning_rate=0.003))
    with open(tmp_path / "log.jsonl") as f:
        lrs = {r["iter"]: r["lr"] for r in map(json.loads, f) if "lr" in r}
    assert lrs == pytest.approx({1: 0.001, 2: 0.002, 3: 0.003})


def test_resume_takes_this_runs_weight_decay(shards, tmp_path):
    train.main(args(shards, tmp_path, max_iters=2, optimizer="adamw", weight_decay=0.1))
    train.main(args(shards, tmp_path, max_iters=3, optimizer="adamw", weight_decay=0.0,
                    init_from="resume"))
    groups = torch.load(tmp_path / "ckpt.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.0]


def test_configure_coerces_types_and_applies_sources_in_order(tmp_path):
    defaults = dict(lr=0.5, names=("a",), batch_size=1, out_dir="out")
    got = configure(defaults, ["--lr=1", "--names=['x', 'y']"])
    assert type(got["lr"]) is float and type(got["names"]) is tuple and got["names"] == ("x", "y")
    one, two = tmp_path / "one.py", tmp_path / "two.py"
    one.write_text("_base = 8\nbatch_size = _base * 2\nout_dir = 'one'\n")  # _helpers are not settings
    two.write_text("batch_size = 32\n")
    assert configure(defaults, [str(one)])["batch_size"] == 16
    # defaults < presets < --key=value, each in the order given
    assert configure(defaults, [str(one), str(two)])["batch_size"] == 32
    assert configure(defaults, [str(two), str(one)])["batch_size"] == 16
    assert configure(defaults, [str(one), "--batch_size=4"])["batch_size"] == 4
    assert configure(defaults, ["--batch_size=4", "--batch_size=5"])["batch_size"] == 5
    assert configure(defaults, [str(one), "--out_dir=z"])["out_dir"] == "z"


def test_only_a_better_validation_saves_when_always_save_checkpoint_is_off(shards, tmp_path, monkeypatch):
    """always_save_checkpoint=False: ckpt.pt (and best.pt) are written at an evaluation only when
    its loss is the best so far; a worse one leaves both as they were."""
    scores = iter([2.0, 2.0, 1.0, 1.0, 3.0, 3.0])  # (with, without the prompt) per evaluation
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: (next(scores), [0.0]))
    train.main(args(shards, tmp_path, max_iters=6, eval_interval=2, always_save_checkpoint=False))
    last = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert (last["iter_num"], last["val_loss"]) == (4, 1.0)
    assert (best["iter_num"], best["val_loss"]) == (4, 1.0)


def test_resume_restores_the_global_rngs(shards, tmp_path):
    """A resumed run leaves torch's and numpy's global RNGs where the straight run leaves them
    (what the rest of a run draws, such as the samples at the end, continues as if never stopped)."""
    import numpy as np
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    np.random.seed(0)
    train.main(args(shards, straight, max_iters=4, eval_interval=2))
    want = torch.get_rng_state(), np.random.get_state()[1].copy()
    np.random.seed(0)
    train.main(args(shards, resumed, max_iters=2, lr_decay_iters=4, eval_interval=2))
    np.random.seed(1)  # another process: other global states until the checkpoint's are loaded
    train.main(args(shards, resumed, max_iters=4, eval_interval=2, init_from="resume"))
    assert torch.equal(torch.get_rng_state(), want[0])
    assert (np.random.get_state()[1] == want[1]).all()


def test_step_flops_is_the_models_count_summed_over_the_batch():
    """train.step_flops (the MFU's numerator) is model.flops_per_sequence summed over the rows,
    each with its own masked rows: exact for rows of one layout, within 3% across prompt lengths.
    Two models of other depths in one process (ablate.py, the tests) each get their own count."""
    from model import GPTConfig
    from tokenizer import build_sequence, collate
    torch.manual_seed(0)
    clip = torch.zeros(2, 2, 3, dtype=torch.long)
    for n_layer in (1, 3):
        model = GPT(GPTConfig(n_layer=n_layer, n_head=2, n_kv_head=1, n_embd=64, ffn_hidden=128,
                              n_visual=50))
        for prompts in ([[1] * 5] * 3, [[1] * 5, [], [1] * 9]):
            frame = collate([build_sequence(p, clip, 10) for p in prompts])["frame"]
            n_masked = [2, 3, 7]
            want = sum(model.flops_per_sequence(f, n) for f, n in zip(frame, n_masked))
            got = train.step_flops(model, frame, sum(n_masked))
            assert got == pytest.approx(want, rel=1e-12 if prompts[1] else 0.03)


def test_a_non_finite_loss_stops_the_run_before_the_step(shards, tmp_path, monkeypatch):
    """A non-finite loss stops the run even when the gradient norm is finite, before any step."""
    real = train.accumulate_gradients

    def nan_loss(*a, **k):
        stats, count, text_count = real(*a, **k)
        stats[0] = float("inf")
        return stats, count, text_count
    monkeypatch.setattr(train, "accumulate_gradients", nan_loss)
    with pytest.raises(SystemExit, match="error: loss inf, gradient norm [0-9.]+ at iter 0"):
        train.main(args(shards, tmp_path, max_iters=2, eval_interval=100))


def test_save_atomic_replaces_whole_files_or_none(tmp_path, monkeypatch):
    """save_atomic: a save leaves the new file alone in the folder; a save that fails part-way
    leaves the old file whole (never half a new one in its place)."""
    from configurator import save_atomic
    path = str(tmp_path / "ckpt.pt")
    save_atomic({"iter": 1}, path)
    save_atomic({"iter": 2}, path)
    assert os.listdir(tmp_path) == ["ckpt.pt"] and torch.load(path)["iter"] == 2

    def crash(obj, f):
        (open(f, "wb") if isinstance(f, str) else f).write(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"iter": 3}, path)
    monkeypatch.undo()
    assert torch.load(path)["iter"] == 2


def test_a_preset_with_an_unknown_key_and_a_flag_without_a_value_are_refused(tmp_path):
    defaults = dict(batch_size=1, out_dir="out")
    preset = tmp_path / "typo.py"
    preset.write_text("batchsize = 16\n")
    with pytest.raises(SystemExit, match="unknown config key 'batchsize' \\(from .*typo.py\\)"):
        configure(defaults, [str(preset)])
    with pytest.raises(SystemExit, match="expected --key=value, got '--batch_size'"):
        configure(defaults, ["--batch_size"])
