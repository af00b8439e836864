"""
The paper's three studies in miniature, with the same budget per arm and several seeds:

    python ablate.py --study=rope      # 1d vs mrope vs mmrope without scaling vs mmrope
    python ablate.py --study=mask      # random vs diffusion-forcing vs tube training masks
    python ablate.py --study=history   # inference history-mask ratio on one trained model
    python ablate.py --study=history --model_dir=out_long   # ... on a model you already trained
    python ablate.py --study=rope &    # a study in parallel lanes: the same command twice (or once
    python ablate.py --study=rope      # per core or GPU) shares the runs; the last lane to finish
                                       # writes the whole table
    python ablate.py --study=rope --arms=1d,mrope           # only some arms

Each arm and seed trains into out_dir/<study>/<arm>_s<seed> (train.py) and is scored with
ShapesBench (eval.py). Finished runs are skipped, so an interrupted study continues where it
stopped. Writes out_dir/<study>.md (<study>_<arms>.md with --arms, history_<folder>.md with
--model_dir; mean and spread over seeds) and, with matplotlib (pip install matplotlib), a PNG.
"""
import contextlib
import json
import os

try:
    import fcntl  # run-directory claims between lanes
except ImportError:  # Windows
    fcntl = None

import numpy as np

import eval as shapesbench
import train
from configurator import AT_LEAST_1, check_ranges, configure, print_config, run, writable_dir
from sample import CFG_SCALE, HISTORY_RATIO, STEPS, TEMPERATURE, TOKEN_TEMPERATURE, load_model

STUDIES = {
    "rope": {  # sec. 3.2: distribution primary, scaling complementary, both beat 1D
        "1d": dict(rope_kind="1d"),
        "mrope": dict(rope_kind="mrope", rope_scaling=False),
        "mmrope_noscale": dict(rope_kind="mmrope", rope_scaling=False),
        "mmrope": dict(rope_kind="mmrope", rope_scaling=True),
    },
    "mask": {  # sec. 3.3: tube masks best on video consistency and quality
        "random": dict(mask_kind="random"),
        "diffusion_forcing": dict(mask_kind="diffusion_forcing"),
        "tube": dict(mask_kind="tube"),
    },
}
HISTORY_RATIOS = (0.0, 0.3, 0.5, 0.7, 0.9)

DEFAULTS = dict(  # python ablate.py --key=value; python ablate.py --help lists them
    study="rope",                   # 'rope' | 'mask' (training studies) | 'history' (one model)
    out_dir="out_ablate",           # runs in out_dir/<study>/<arm>_s<seed>, the table in out_dir/<study>.md
    seeds=3,                        # training seeds per arm (history: sampling seeds)
    max_iters=train.max_iters,      # training steps per run
    eval_interval=250,              # validation loss curve, every this many steps
    n_per_category=10,              # ShapesBench prompts per category (eval.py's 30, cut to keep studies short)
    cfg=CFG_SCALE, steps=STEPS,     # sampling, as in sample.py (its --help)
    temperature=TEMPERATURE, token_temperature=TOKEN_TEMPERATURE,  # sampling, as in sample.py
    train_args="",                  # more train.py settings for every run ("--batch_size=32 --device=cuda")
    model_dir="",                   # history study: a model you already trained (else one is trained)
    tokenizer_path="",              # where the runs' video tokenizer is, if moved since (eval.py's)
    arms="",                        # only these arms, comma-separated (rope: 1d,mrope,mmrope_noscale,mmrope)
)
VIDEO_CATEGORIES = ("motion", "consistency", "smoothness", "i2v")


def run_dir(cfg, arm, seed):
    return os.path.join(cfg["out_dir"], cfg["study"], f"{arm}_s{seed}")


def train_arm(cfg, arm, overrides, seed):
    """Train one arm and seed unless its checkpoint is complete; returns its run directory."""
    out = run_dir(cfg, arm, seed)
    done = os.path.join(out, "done.json")
    if os.path.isfile(done):  # trained before: only if with this command's settings
        with open(done) as f:
            check_reusable(out, json.load(f), cfg)
        return out
    resume = os.path.isfile(os.path.join(out, "ckpt.pt"))  # interrupted mid-run: continue it
    if not resume and os.path.isfile(os.path.join(out, "log.jsonl")):  # stopped before its first
        os.remove(os.path.join(out, "log.jsonl"))                      # checkpoint: start it again
    args = dict(overrides, out_dir=out, seed=seed, max_iters=cfg["max_iters"],
                eval_interval=cfg["eval_interval"], sample_prompts=(),
                init_from="resume" if resume else "scratch")
    train.main([f"--{k}={v!r}" if isinstance(v, (str, tuple)) else f"--{k}={v}" for k, v in args.items()]
               + cfg_extra(cfg))
    with open(done, "w") as f:
        json.dump(dict(args, train_args=cfg["train_args"], train_config=train_config(cfg)), f)
    return out


# Older done.json files kept less than the whole train.py config: a key they lack had the default
# of their date. AdamW until 2026-11-30 ("optimizer" kept since), learning rate 5e-3 to 5e-4
# until commit 0dee2ba that day, the text loss on until 2026-12-01.
OLD_RECIPE = dict(optimizer="adamw", learning_rate=5e-3, min_lr=5e-4, text_loss=1.0)
# Settings train.py gained later, at the value every run before them had: byte-level prompts.
ADDED_SINCE = dict(text_vocab="bytes")
# Settings that say where and how fast a run went, not what it learned: a run trained on a GPU is
# reused by the same command on a CPU.
WHERE_IT_RAN = ("device", "dtype", "compile", "attn_impl", "grad_checkpoint", "loss_chunk",
                "log_interval", "always_save_checkpoint", "wandb_log", "wandb_project")


def train_config(cfg):
    """The train.py settings under this command's --train_args (before each arm's own)."""
    return configure(train.DEFAULTS, cfg_extra(cfg))


def check_reusable(out, before, cfg):
    """Stop unless the finished run in `out`, whose done.json holds `before`, was trained with
    the settings this command would train it with (compared resolved, not as typed). A setting
    added to train.py since counts at its value in ADDED_SINCE, or else at its default."""
    base = {**train.DEFAULTS, **ADDED_SINCE}
    if "train_config" in before:
        was = dict(base, **before["train_config"])
    else:
        then = dict(base, **{k: before.get(k, v) for k, v in OLD_RECIPE.items()})
        was = configure(then, before.get("train_args", "").split())
    as_json = lambda d: json.loads(json.dumps(d))  # tuples read back from JSON as lists
    was = as_json(dict(was, max_iters=before["max_iters"], eval_interval=before["eval_interval"]))
    now = as_json(dict(train_config(cfg), max_iters=cfg["max_iters"], eval_interval=cfg["eval_interval"]))
    diff = [k for k in now if k not in WHERE_IT_RAN and was.get(k) != now[k]]
    if diff:
        restore = " ".join(f"--{k}={was[k]}" for k in diff if k not in ("max_iters", "eval_interval"))
        raise SystemExit(f"error: {out} was trained with {', '.join(f'{k}={was.get(k)!r}' for k in diff)}"
                         f"; this command asks for {', '.join(f'{k}={now[k]!r}' for k in diff)}. "
                         f"Give another --out_dir, or the run's settings"
                         + (f" (--train_args='{restore}')" if restore else ""))


def cfg_extra(cfg):
    """Extra train.py overrides given as --train_args='--key=value --key=value'."""
    return cfg["train_args"].split() if cfg["train_args"] else []


def check_train_args(cfg):
    """--train_args may not set what the study itself sets per run: its arms' settings, the seed,
    the run's folder and length (each arm would silently train the same model)."""
    owned = {"seed", "out_dir", "max_iters", "eval_interval", "init_from", "sample_prompts"}
    owned |= {k for arm in STUDIES.get(cfg["study"], {}).values() for k in arm}
    given = {a.split("=")[0].lstrip("-") for a in cfg_extra(cfg) if a.startswith("--")}
    clash = sorted(given & owned)
    if clash:
        raise SystemExit(f"error: --train_args sets {', '.join(clash)}, which ablate.py sets for each run "
                         f"(the arms, --seeds, --out_dir, --max_iters, --eval_interval): drop "
                         f"{'it' if len(clash) == 1 else 'them'} from --train_args")


def val_curve(out):
    """[(iter, val_loss, per-frame val loss)] from a run's log."""
    with open(os.path.join(out, "log.jsonl")) as f:  # a resumed run may log an iteration twice
        evals = {r["iter"]: (r["iter"], r["val_loss"], r["val_frame_loss"])
                 for r in map(json.loads, f) if "val_loss" in r}
    return [evals[k] for k in sorted(evals)]


def token_suffix(cfg):
    """File-name part for the token temperature; empty at 1.0, so earlier runs' scores still count."""
    return "" if cfg["token_temperature"] == 1.0 else f"_tt{cfg['token_temperature']}"


def bench(out, cfg, history_ratio=HISTORY_RATIO, seed=0):
    """ShapesBench scores of a trained run, cached in the run directory."""
    path = os.path.join(out, f"shapesbench_h{history_ratio}_s{seed}_cfg{cfg['cfg']}_steps{cfg['steps']}"
                             f"_t{cfg['temperature']}{token_suffix(cfg)}_n{cfg['n_per_category']}"
                             f"_d{shapesbench.DETECTOR}.json")
    trained = os.path.getmtime(os.path.join(out, "ckpt.pt"))
    if not os.path.isfile(path) or os.path.getmtime(path) < trained:  # none yet, or trained on since
        scores = shapesbench.main([f"--out_dir={out}", f"--n_per_category={cfg['n_per_category']}",
                                   f"--history_ratio={history_ratio}", f"--seed={seed}",
                                   f"--cfg={cfg['cfg']}", f"--steps={cfg['steps']}",
                                   f"--temperature={cfg['temperature']}",
                                   f"--token_temperature={cfg['token_temperature']}",
                                   f"--tokenizer_path={cfg['tokenizer_path']}"])
        with open(path, "w") as f:
            json.dump(scores, f)
    with open(path) as f:
        return json.load(f)


def final_val(out, mask_kind="", eval_iters=20):
    """Validation loss and per-frame losses of a run's final checkpoint on the fixed validation
    batches (train.VAL_SEED: the same clips and masks for every arm and seed), with the run's own
    kind of mask, or `mask_kind` for every arm. Cached in the run directory."""
    kind = mask_kind or "own"
    path = os.path.join(out, f"val_{kind}_{eval_iters}_fixed.json")
    if not os.path.isfile(path):
        model, ckpt = load_model(out)
        cfg = dict(ckpt["config"], eval_iters=eval_iters, device="cpu")
        if mask_kind:
            cfg["mask_kind"] = mask_kind
        loss, per_frame = train.evaluate(model, train.Batches(cfg, "val", 0), cfg, "cpu",
                                         contextlib.nullcontext())
        with open(path, "w") as f:
            json.dump(dict(loss=loss, per_frame=per_frame), f)
    with open(path) as f:
        return json.load(f)


def mean_spread(values):
    """'mean ± std' of the seeds' values; std with ddof=0, the spread of these seeds themselves."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def table(rows, columns):
    """Markdown table of {arm: {column: [values over seeds]}}: mean ± std."""
    lines = ["| arm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for arm, vals in rows.items():
        lines.append(f"| {arm} | " + " | ".join(mean_spread(vals[c]) for c in columns) + " |")
    return "\n".join(lines)


def chosen_arms(cfg):
    """The study's arms, or the subset named by --arms=a,b (one lane of a study run in parallel)."""
    arms = STUDIES[cfg["study"]]
    names = [a for a in cfg["arms"].split(",") if a] or list(arms)
    unknown = [a for a in names if a not in arms]
    if unknown:
        raise SystemExit(f"error: unknown arm(s) {', '.join(unknown)} for the {cfg['study']} study; "
                         f"its arms are {', '.join(arms)}")
    return {a: arms[a] for a in names}


def claim(out):
    """
    Claim a run directory for this process, so that several processes running the same study
    command share its runs (one lane per core or GPU): an exclusive lock on out/claim.lock, held
    until the returned file is closed. The system drops it when a process dies, so the runs of
    an interrupted lane are taken over. None while another process holds it. (Without fcntl,
    as on Windows, every claim succeeds: run one lane there.)
    """
    os.makedirs(out, exist_ok=True)
    lock = open(os.path.join(out, "claim.lock"), "a")
    if fcntl is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return None
    return lock


def claimed(out):
    """Whether another process holds the run directory's claim now."""
    lock = claim(out)
    if lock is None:
        return True
    lock.close()
    return False


def unfinished(cfg, runs):
    """The runs not yet trained and scored: no done.json yet, or still claimed (a lane releases
    its claim only after scoring)."""
    dirs = [run_dir(cfg, arm, seed) for arm, _, seed in runs]
    return [os.path.basename(d) for d in dirs
            if not os.path.isfile(os.path.join(d, "done.json")) or claimed(d)]


def training_study(cfg):
    """Train and score every arm and seed this process can claim; then, once every run is done
    (by this process or another lane), gather the table. None while other lanes are still busy."""
    runs = [(arm, overrides, seed) for arm, overrides in chosen_arms(cfg).items()
            for seed in range(cfg["seeds"])]
    for arm, overrides, seed in runs:
        out = run_dir(cfg, arm, seed)
        lock = claim(out)
        if lock is None:  # another lane is on it
            continue
        try:  # trained and scored under the claim, so no two lanes score the same run
            train_arm(cfg, arm, overrides, seed)
            bench(out, cfg)
            final_val(out)
            if cfg["study"] == "mask":
                final_val(out, "tube")
        finally:
            lock.close()
    busy = unfinished(cfg, runs)  # looked at now: lanes finish their runs while this one works
    if busy:
        print(f"{', '.join(busy)}: being trained or scored by another process. The last lane to "
              f"finish writes the whole table (or run this command again then).")
        return None
    rows, curves = {}, {}
    for arm, _, seed in runs:  # every run is done and scored: this only reads the cached results
        out = run_dir(cfg, arm, seed)
        scores, own = bench(out, cfg), final_val(out)
        r = rows.setdefault(arm, {})
        r.setdefault("val loss", []).append(own["loss"])
        for f, x in enumerate(own["per_frame"]):
            r.setdefault(f"val frame {f}", []).append(x)
        if cfg["study"] == "mask":  # the arms compared on the same validation masks
            r.setdefault("val loss, tube masks", []).append(final_val(out, "tube")["loss"])
        for c in ("overall",) + (VIDEO_CATEGORIES if cfg["study"] == "mask" else ()):
            r.setdefault(c, []).append(scores.get(c, float("nan")))
        curves.setdefault(arm, []).append(val_curve(out))
    columns = list(next(iter(rows.values())))
    return rows, columns, curves


def history_study(cfg):
    if cfg["model_dir"]:  # an already trained run (its ckpt.pt), e.g. a longer one than max_iters
        if os.path.isfile(cfg["model_dir"]):
            raise SystemExit(f"error: model_dir={cfg['model_dir']!r} is a file: give the training run's "
                             f"folder (the one that holds its ckpt.pt)")
        if not os.path.isfile(os.path.join(cfg["model_dir"], "ckpt.pt")):
            raise SystemExit(f"error: no ckpt.pt in model_dir={cfg['model_dir']!r}: train one first")
        out = cfg["model_dir"]
    else:
        out = train_arm(cfg, "tube", STUDIES["mask"]["tube"], 0)
    rows = {}
    for ratio in HISTORY_RATIOS:
        for seed in range(cfg["seeds"]):  # sampling seeds on one model
            scores = bench(out, cfg, history_ratio=ratio, seed=seed)
            r = rows.setdefault(f"history {ratio}", {})
            for c in ("overall",) + VIDEO_CATEGORIES:
                r.setdefault(c, []).append(scores.get(c, float("nan")))
    return rows, list(next(iter(rows.values()))), {}


def plot_curves(curves, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, runs in curves.items():
        iters = [it for it, _, _ in runs[0]]
        losses = np.array([[v for _, v, _ in run] for run in runs])
        ax.plot(iters, losses.mean(0), label=arm)
        ax.fill_between(iters, losses.min(0), losses.max(0), alpha=0.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


def main(argv=None):
    cfg = configure(DEFAULTS, argv)
    print_config(cfg)
    check_ranges(cfg, [(("seeds", "max_iters", "eval_interval", "n_per_category", "steps"), AT_LEAST_1)])
    if cfg["study"] not in (*STUDIES, "history"):
        raise SystemExit(f"error: unknown study {cfg['study']!r}; choose rope, mask or history")
    check_train_args(cfg)
    writable_dir(cfg["out_dir"], "out_dir")  # the table goes there: checked before hours of runs
    cfg["arms"] = ",".join(a.strip() for a in cfg["arms"].split(",") if a.strip())  # "1d, mrope" too
    if cfg["study"] == "history" and cfg["arms"]:
        raise SystemExit("error: the history study has no arms (it scores one model at each ratio); drop --arms")
    result = history_study(cfg) if cfg["study"] == "history" else training_study(cfg)
    if result is None:  # other lanes are still training: the last one to finish writes the table
        return None
    rows, columns, curves = result
    what = (f"model {cfg['model_dir']}, {cfg['seeds']} sampling seeds" if cfg["model_dir"]
            else f"{cfg['seeds']} seeds, {cfg['max_iters']} iterations per arm")
    md = (f"## {cfg['study']} study: {what}, ShapesBench cfg={cfg['cfg']} steps={cfg['steps']} "
          f"temperature={cfg['temperature']} token_temperature={cfg['token_temperature']} "
          f"n_per_category={cfg['n_per_category']}\n\n"
          + table(rows, columns) + "\n")
    if cfg["study"] == "mask":
        md += ("\n`val loss` and `val frame k`: each arm on its own kind of masks (the frame-wise "
               "imbalance); `val loss, tube masks`: every arm on the same tube-masked batches.\n")
    if cfg["study"] != "history":
        md += ("\nValidation losses: each run's final checkpoint on the same 20 validation batches "
               "(the same clips for every arm and seed).\n")
    name = cfg["study"] + (f"_{cfg['arms'].replace(',', '_')}" if cfg["arms"] else "")
    if cfg["model_dir"]:  # another model's history table is another file
        name += "_" + os.path.basename(os.path.normpath(cfg["model_dir"]))
    path = os.path.join(cfg["out_dir"], f"{name}.md")
    with open(path, "w") as f:
        f.write(md)
    print(md)
    print(f"wrote {path}")
    if curves:
        plot_curves(curves, os.path.join(cfg["out_dir"], f"{name}.png"))
    return rows


if __name__ == "__main__":
    run(main, "the same command continues the study (finished runs are kept, the interrupted one "
             "resumes from its last checkpoint)")
