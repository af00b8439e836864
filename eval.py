"""ShapesBench: score generated shapes clips with an analytic detector (no learned weights).

The detector (README, "ShapesBench"): each pixel takes the nearest palette colour when close enough, else
background; objects are 4-connected components of one colour above a minimum area; shape comes from
how much of its bounding box a component fills (and, for the upward triangle, from most of its area
lying in the lower half), and a shape must be left-right symmetric; position from the centroid;
motion from the centroid track over frames. Each prompt's check says whether the clip does what
its caption asks; score_all averages them per category, and calibrate() shows that ground truth
passes while random clips fail.

    python eval.py --out_dir=out                      # ShapesBench on the model in out/
    python eval.py --calibrate=True --tokenizer_path=out/tokenizer.pt   # the benchmark's own check
"""
import textwrap
from collections import Counter

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from data.shapes import BACKGROUND, CATEGORIES, DIRECTIONS, PALETTE, benchmark_prompts
from sample import CFG_SCALE, HISTORY_RATIO, STEPS, TEMPERATURE, TOKEN_TEMPERATURE

COLOUR_NAMES = tuple(PALETTE)
_BG = np.array(BACKGROUND, np.float32)
_TOWARDS = np.array([PALETTE[c] for c in COLOUR_NAMES], np.float32) - _BG  # (7, 3)
COLOUR_TOL = 60.0   # RGB distance from the colour/background mix; palette colours are >= 255 apart
MIN_AREA = 0.0125   # of the canvas; the smallest object (a triangle) covers about 0.03
SQUARE_FILL, CIRCLE_FILL = 0.9, 0.66  # fill of the bounding box: square 1.0, circle 0.79, triangle 0.5
TRIANGLE_TOP = 0.4  # share of the area in the upper half: 0.25 for the (upward) triangle, 0.5 otherwise
TRIANGLE_FILL = 0.4  # least fill of a triangle (0.5 drawn, 0.48 to 0.87 through the tokenizer)
SIDE_TOL = 0.15     # every shape is left-right symmetric: its left half holds 0.5 +- this of its area
MOVE_MIN = 0.15     # of the canvas side: a moving object must travel at least this far (data: 0.3-0.5)
DRIFT_MAX = 0.08    # of the canvas side: most a "still" object, or a mover across its axis, may drift
STEP_TOL = 0.05     # of the canvas side: most a per-frame step may differ from the mean step (smoothness)
RELATION_MIN = 0.08  # of the canvas side: centroids must differ this much along a relation's axis
PLACE_TOL = 0.1     # of the canvas side: i2v frame 0 objects must sit this close to the given image's
DETECTOR = 2  # raised whenever a detector change moves scores; scores cached by ablate.py carry it

DEFAULTS = dict(  # python eval.py --key=value; python eval.py --help lists them
    out_dir="out",                  # the training run to score: out_dir/ckpt, its tokenizer
    ckpt="ckpt.pt",
    calibrate=False,                # score ground truth, blurs, noise and random codes instead
    tokenizer_path="",              # --calibrate: add its round trip; else: where the model's moved
    height=32, width=32, frames=9,  # the clips of --calibrate (a model's own come from its data)
    n_per_category=30,              # prompts per category (11 categories)
    batch_size=32,                  # prompts generated at once
    steps=STEPS, cfg=CFG_SCALE, history_ratio=HISTORY_RATIO,  # sampling, as in sample.py (its --help)
    temperature=TEMPERATURE, token_temperature=TOKEN_TEMPERATURE,  # sampling, as in sample.py
    seed=0,
    name="",                        # the table's column name; empty: out_dir/ckpt
    device="cuda" if torch.cuda.is_available() else "cpu",
)


def colour_labels(video):
    """Palette index of every pixel, -1 for background: (T, H, W).

    A pixel takes the palette colour it is nearest to as a mix with the background, when it is at
    least half that colour: a blurred edge then keeps the pixels inside the true outline, and a
    dimmed or slightly off colour still counts."""
    x = np.asarray(video, np.float32) - _BG                                # (T, H, W, 3)
    share = x @ _TOWARDS.T / (_TOWARDS ** 2).sum(1)                         # (T, H, W, 7)
    mix = np.clip(share, 0, 1)[..., None] * _TOWARDS                       # (T, H, W, 7, 3)
    dist = np.where(share >= 0.5, np.linalg.norm(x[..., None, :] - mix, axis=-1), np.inf)
    return np.where(dist.min(-1) < COLOUR_TOL, dist.argmin(-1), -1)


def label_components(labels):
    """4-connected components of equal labels within each frame: (T, H, W) of each pixel's component
    id (the flat index of its first pixel), -1 on background."""
    comp = np.where(labels >= 0, np.arange(labels.size).reshape(labels.shape), -1)
    while True:
        new = comp.copy()
        for axis in (1, 2):  # spread the smallest id to equal-coloured neighbours along y, then x
            a = tuple(slice(1, None) if d == axis else slice(None) for d in range(3))
            b = tuple(slice(None, -1) if d == axis else slice(None) for d in range(3))
            joined = (labels[a] == labels[b]) & (labels[a] >= 0)
            new[a] = np.where(joined, np.minimum(new[a], comp[b]), new[a])
            new[b] = np.where(joined, np.minimum(new[b], comp[a]), new[b])
        # jump to the id my id points at: long chains collapse in a few rounds instead of one per pixel
        new = np.where(new >= 0, new.ravel()[new], -1)
        if np.array_equal(new, comp):
            return comp
        comp = new


def classify_shape(fill, top_share, left_share=0.5):
    """Shape name from the fraction of its bounding box a component fills and the shares of its area
    in the upper and left halves of the box (the triangle points up; those shares survive blur
    better). "unknown" for anything else (a ring, an L, a speckled or lopsided blob): it matches no
    prompt."""
    if abs(left_share - 0.5) > SIDE_TOL:
        return "unknown"
    if top_share < TRIANGLE_TOP:
        return "triangle" if fill >= TRIANGLE_FILL else "unknown"
    return "square" if fill >= SQUARE_FILL else "circle" if fill >= CIRCLE_FILL else "unknown"


def detect_objects(video):
    """Objects in each frame of a uint8 (T, H, W, 3) clip: a list over frames of lists of
    dict(colour, shape, area, centroid=(x, y), bbox=(x0, y0, x1, y1)), largest first."""
    video = np.asarray(video)
    labels = colour_labels(video)
    comp = label_components(labels)
    frames = [[] for _ in range(video.shape[0])]
    ids, areas = np.unique(comp[comp >= 0], return_counts=True)
    for id_, area in zip(ids, areas):
        if area < MIN_AREA * video.shape[1] * video.shape[2]:
            continue
        t, ys, xs = np.nonzero(comp == id_)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        fill = area / ((x1 - x0) * (y1 - y0))
        rows = (ys + 0.5 - y0) / (y1 - y0)  # pixel centres in [0, 1] down the box; a middle row splits
        cols = (xs + 0.5 - x0) / (x1 - x0)
        top_share = ((rows < 0.5).sum() + 0.5 * (rows == 0.5).sum()) / area
        left_share = ((cols < 0.5).sum() + 0.5 * (cols == 0.5).sum()) / area
        frames[t[0]].append(dict(
            colour=COLOUR_NAMES[labels.flat[id_]], shape=classify_shape(fill, top_share, left_share),
            area=int(area), centroid=(xs.mean() + 0.5, ys.mean() + 0.5), bbox=(x0, y0, x1, y1)))
    return [sorted(objs, key=lambda o: -o["area"]) for objs in frames]


def _find(objects, colour, shape=None):
    """The largest object of that colour (and shape), or None."""
    return next((o for o in objects if o["colour"] == colour and shape in (None, o["shape"])), None)


def _track(frames, colour):
    """(T, 2) centroids of the largest object of `colour` per frame, NaN where it is missing."""
    return np.array([(_find(f, colour) or {"centroid": (np.nan, np.nan)})["centroid"] for f in frames])


def _moves_as_asked(track, motion, attrs):
    """Whether a centroid track goes in the asked direction far enough, or stays put for "still"."""
    shift = (track[-1] - track[0]) / (attrs["width"], attrs["height"])  # in canvas sides
    if motion == "still":
        return bool(np.abs(shift).max() < DRIFT_MAX)
    along = np.array(DIRECTIONS[motion])
    return bool(shift @ along > MOVE_MIN and abs(shift @ along[::-1]) < DRIFT_MAX)  # NaN compares False


def _single_object(frames, attrs):
    """Exactly one object, of the asked colour and shape."""
    want, got = attrs["objects"][0], frames[0]
    return len(got) == 1 and (got[0]["colour"], got[0]["shape"]) == (want["colour"], want["shape"])


def _two_objects(frames, attrs):
    """Both asked shapes present; whether the colours sit on the right shapes is colour_attribution."""
    return Counter(o["shape"] for o in attrs["objects"]) <= Counter(o["shape"] for o in frames[0])


def _counting(frames, attrs):
    """Exactly `count` objects of the asked colour and shape."""
    want = (attrs["objects"][0]["colour"], attrs["objects"][0]["shape"])
    return sum((o["colour"], o["shape"]) == want for o in frames[0]) == attrs["count"]


def _colours(frames, attrs):
    """The largest object has the asked colour."""
    return bool(frames[0]) and frames[0][0]["colour"] == attrs["objects"][0]["colour"]


def _position(frames, attrs):
    """Both objects present, their centroids clearly in the asked relation."""
    a, b = (_find(frames[0], o["colour"], o["shape"]) for o in attrs["objects"])
    if a is None or b is None:
        return False
    dx, dy = np.subtract(b["centroid"], a["centroid"]) / (attrs["width"], attrs["height"])
    along = {"left_of": dx, "right_of": -dx, "above": dy, "below": -dy}[attrs["relation"]]
    return bool(along > RELATION_MIN)


def _colour_attribution(frames, attrs):
    """Each asked colour on its asked shape (the prompts use two shapes, so a swap fails)."""
    return all(_find(frames[0], o["colour"], o["shape"]) for o in attrs["objects"])


def _motion(frames, attrs):
    """Every object moves as asked from the first frame to the last."""
    return all(_moves_as_asked(_track(frames, o["colour"]), o["motion"], attrs) for o in attrs["objects"])


def _object_sets(frames):
    """Each frame's objects as a sorted list of (colour, shape)."""
    return [sorted((o["colour"], o["shape"]) for o in f) for f in frames]


def _consistency(frames, attrs):
    """The same objects (colour and shape) in every frame, and at least one."""
    seen = _object_sets(frames)
    return bool(seen[0]) and all(s == seen[0] for s in seen)


def _smoothness(frames, attrs):
    """Every object is found in every frame and moves by nearly the same step each frame."""
    for o in attrs["objects"]:
        steps = np.diff(_track(frames, o["colour"]), axis=0) / (attrs["width"], attrs["height"])  # (T-1, 2)
        if not np.abs(steps - steps.mean(0)).max() < STEP_TOL:  # NaN (object lost) fails too
            return False
    return True


def _i2v(frames, attrs):
    """Frame 0 holds the given image's objects in their places, and they move as asked."""
    for o in attrs["objects"]:
        got = _find(frames[0], o["colour"], o["shape"])
        if got is None:
            return False
        off = np.subtract(got["centroid"], o["centroids"][0]) / (attrs["width"], attrs["height"])
        if np.abs(off).max() > PLACE_TOL:
            return False
    return _motion(frames, attrs)


_CHECKS = {"single_object": _single_object, "two_objects": _two_objects, "counting": _counting,
           "colours": _colours, "position": _position, "colour_attribution": _colour_attribution,
           "motion": _motion, "consistency": _consistency, "smoothness": _smoothness, "i2v": _i2v}


def score_video(video, prompt):
    """{prompt's category: passed} for one uint8 (T, H, W, 3) clip; images are clips with T = 1.
    held_out prompts are checked as the category in prompt["scored_as"]."""
    check = _CHECKS[prompt.get("scored_as", prompt["category"])]
    return {prompt["category"]: bool(check(detect_objects(video), prompt["attrs"]))}


def score_all(videos, prompts):
    """Accuracy in [0, 1] per category present, plus overall = mean of the categories."""
    passed = {}
    for video, prompt in tqdm(zip(videos, prompts), total=len(prompts), desc="scoring", leave=False):
        for category, ok in score_video(video, prompt).items():
            passed.setdefault(category, []).append(ok)
    scores = {c: float(np.mean(passed[c])) for c in CATEGORIES if c in passed}
    scores["overall"] = float(np.mean(list(scores.values())))
    return scores


OUTCOMES = ("passed", "no object", "more than one object", "wrong colour", "wrong shape")


def single_object_outcomes(videos, prompts):
    """How the single_object prompts pass or fail, as {outcome: count} over OUTCOMES: passed is
    the benchmark's own check, a failure counts under the first reason that applies, in order.
    Says whether a model misses the count, the colour or the shape."""
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for video, prompt in zip(videos, prompts):
        if prompt["category"] != "single_object":
            continue
        frames = detect_objects(video)
        want, got = prompt["attrs"]["objects"][0], frames[0]
        outcome = ("passed" if _single_object(frames, prompt["attrs"]) else "no object" if not got
                   else "more than one object" if len(got) > 1
                   else "wrong colour" if got[0]["colour"] != want["colour"] else "wrong shape")
        outcomes[outcome] += 1
    return outcomes


def consistency_breaks(videos, prompts):
    """Where the consistency prompts' clips first change: {frame t: count} for the first frame
    whose objects (colour and shape) differ from frame 0's, plus "no object" (frame 0 is empty)
    and "never" (the check passes). Says whether shapes change between latent frames (at the
    tokenizer's frame boundaries, 1 + k * s_t) or within one."""
    breaks = Counter()
    for video, prompt in zip(videos, prompts):
        if prompt["category"] != "consistency":
            continue
        seen = _object_sets(detect_objects(video))
        breaks["no object" if not seen[0] else
               next((t for t in range(1, len(seen)) if seen[t] != seen[0]), "never")] += 1
    frames = sorted(k for k in breaks if isinstance(k, int))
    return {k: breaks[k] for k in ("no object", *frames, "never") if k in breaks}


def format_breaks(breaks):
    """consistency_breaks as one line of text."""
    return "first frame whose objects differ from frame 0's: " + ", ".join(
        f"{k} {v}" if isinstance(k, str) else f"frame {k}: {v}" for k, v in breaks.items())


def single_object_area(videos, prompts):
    """Mean area in pixels of the largest object in frame 0 over the single_object prompts:
    (generated, ground truth). Guidance grows objects (README, "Guidance")."""
    got, truth = [], []
    for video, prompt in zip(videos, prompts):
        if prompt["category"] == "single_object":
            got.append(next(iter(detect_objects(video[:1])[0]), {"area": 0})["area"])
            truth.append(detect_objects(prompt["video"][:1])[0][0]["area"])
    return float(np.mean(got)), float(np.mean(truth))


def format_table(results):
    """A text table of {run name: score_all(...)}, one column per run, one row per category."""
    names = list(results)
    rows = [c for c in (*CATEGORIES, "overall") if any(c in r for r in results.values())]
    widths = [max(14, len(n) + 2) for n in names]
    lines = [f"{'category':<20}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths))]
    for row in rows:
        cells = (f"{results[n][row]:.2f}" if row in results[n] else "-" for n in names)
        lines.append(f"{row:<20}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)


def _captioned(frame, text, scale):
    """One frame enlarged `scale` times, with its caption wrapped underneath: a PIL image."""
    image = Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
    lines = textwrap.wrap(text, max(8, image.width // 6))[:4]  # the default font is ~6 px per character
    cell = Image.new("RGB", (image.width, image.height + 11 * 4 + 4), BACKGROUND)
    cell.paste(image)
    ImageDraw.Draw(cell).multiline_text((2, image.height + 2), "\n".join(lines), fill=(220, 220, 220))
    return cell


def save_grid(videos, captions, path, scale=4, columns=8):
    """Write path.gif (an animated grid of the clips) and path.png (one row of frames per clip)."""
    path = str(path).removesuffix(".gif").removesuffix(".png")
    videos = [np.asarray(v) for v in videos]
    length = max(len(v) for v in videos)
    gif_frames = []
    for t in range(length):  # images (T = 1) hold still while the videos play
        cells = [_captioned(v[min(t, len(v) - 1)], c, scale) for v, c in zip(videos, captions)]
        gif_frames.append(_tile(cells, columns))
    gif_frames[0].save(path + ".gif", save_all=True, append_images=gif_frames[1:], duration=250, loop=0)
    strips = [_tile([_captioned(f, c if t == 0 else "", scale) for t, f in enumerate(v)], length)
              for v, c in zip(videos, captions)]
    _tile(strips, 1).save(path + ".png")


def _tile(images, columns):
    """PIL images on a grid, `columns` wide, in cells the size of the largest."""
    w, h = max(i.width for i in images), max(i.height for i in images)
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (w * min(columns, len(images)), h * rows), BACKGROUND)
    for k, image in enumerate(images):
        sheet.paste(image, (w * (k % columns), h * (k // columns)))
    return sheet


def _blurred(video, rng):
    """A stand-in for tokenizer round-trip error: binomial blur (sigma 1 px) and colour noise (sigma 8)."""
    kernel = np.array([1, 4, 6, 4, 1]) / 16
    x = np.pad(video.astype(np.float32), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    x = sum(k * x[:, i:i + video.shape[1]] for i, k in enumerate(kernel))
    x = sum(k * x[:, :, i:i + video.shape[2]] for i, k in enumerate(kernel))
    return np.clip(x + rng.normal(0, 8, x.shape), 0, 255).astype(np.uint8)


def _palette_blobs(video, rng):
    """Random 4x4-pixel blocks of palette colours (half background), independent per frame."""
    t, h, w, _ = video.shape
    colours = np.array([BACKGROUND] * len(PALETTE) + list(PALETTE.values()), np.uint8)
    blocks = colours[rng.integers(len(colours), size=(t, -(-h // 4), -(-w // 4)))]
    return blocks.repeat(4, axis=1).repeat(4, axis=2)[:, :h, :w]


def calibrate(height=32, width=32, frames=9, n_per_category=30, seed=0):
    """Score ground truth, mildly blurred ground truth and two kinds of random clips; returns the
    {run: scores} dict and prints the table. Ground truth must score ~1, random clips near 0."""
    rng = np.random.default_rng(seed)
    prompts = benchmark_prompts(height, width, frames, n_per_category)
    truth = [p["video"] for p in prompts]
    runs = {"ground truth": truth,
            "blurred truth": [_blurred(v, rng) for v in truth],
            "uniform noise": [rng.integers(0, 256, v.shape, dtype=np.uint8) for v in truth],
            "palette blobs": [_palette_blobs(v, rng) for v in truth]}
    results = {name: score_all(videos, prompts) for name, videos in runs.items()}
    print(f"ShapesBench calibration: {len(prompts)} prompts, {height}x{width}, {frames} frames")
    print(format_table(results))
    return results


def tokenizer_runs(prompts, tok, seed=0):
    """Calibration through the video tokenizer: ground truth encoded and decoded (the best a
    model on these codes can score), and random visual codes decoded (near chance)."""
    g = torch.Generator().manual_seed(seed)
    truth, noise = [], []
    for p in tqdm(prompts, desc="tokenizer round trip", leave=False):
        codes = tok.encode(p["video"])  # (F, h, w)
        truth.append(tok.decode(codes).cpu().numpy())
        noise.append(tok.decode(torch.randint(tok.codebook_size, codes.shape, generator=g)).cpu().numpy())
    return {"tokenizer round trip": truth, "random codes": noise}


def generate_for(prompts, model, tok, meta, train_cfg, cfg):
    """Generate one clip per benchmark prompt: videos at the data's frame count, images as one
    frame, i2v from the ground truth's first frame. Returns uint8 clips in prompt order."""
    from sample import generate
    from tokenizer import encode_text, format_prompt
    h, w = meta["latent_shape"]["video"][1:]
    s_t = meta["compression"][0]
    clips = [None] * len(prompts)
    groups = {}
    for i, p in enumerate(prompts):
        groups.setdefault((p["kind"], p["category"] == "i2v"), []).append(i)
    bar = tqdm(total=len(prompts), desc="generating")
    for (kind, i2v), idx in groups.items():
        frames = len(prompts[idx[0]]["video"])
        for start in range(0, len(idx), cfg["batch_size"]):
            chunk = idx[start:start + cfg["batch_size"]]
            ids = [encode_text(format_prompt(prompts[i]["caption"], meta["width"], meta["height"],
                                             frames, meta["fps"], train_cfg["prompt_template"]),
                               meta.get("words", []))
                   for i in chunk]
            first = tok.encode(np.stack([prompts[i]["video"][:1] for i in chunk]))[:, 0] if i2v else None
            codes = generate(model, ids, 1 + (frames - 1) // s_t, h, w, train_cfg["text_len"],
                             steps=cfg["steps"], cfg_scale=cfg["cfg"], temperature=cfg["temperature"],
                             token_temperature=cfg["token_temperature"],
                             history_ratio=cfg["history_ratio"], first_frame=first,
                             seed=cfg["seed"] + start, progress=False)
            for i, clip in zip(chunk, tok.decode(codes).cpu().numpy()):
                clips[i] = clip
            bar.update(len(chunk))
    bar.close()
    return clips


def main(argv=None):
    """python eval.py --out_dir=out: ShapesBench on the checkpoint in out_dir.
    python eval.py --calibrate=True: the benchmark on ground truth, the tokenizer round trip and
    random clips, to show what a perfect and a useless generator score.
    --tokenizer_path: the tokenizer to calibrate, or where the model's own has been moved."""
    import json
    import os
    from configurator import AT_LEAST_1, check_ranges, configure, print_config, writable_dir
    cfg = configure(DEFAULTS, argv)
    print_config(cfg)
    from sample import check_sampling_args, load_codes_tokenizer, load_model, settings_tag
    check_sampling_args(cfg)
    torch.set_flush_denormal(True)  # CPU: denormal floats are 10x slower and no more useful than 0
    from tokenizer import load_tokenizer
    if cfg["calibrate"]:
        check_ranges(cfg, [(("height", "width"), AT_LEAST_1), (("frames",), (lambda v: v >= 2, "at least 2: "
                           "the video categories follow objects over frames"))])
        try:  # a bad tokenizer path stops here, not after the ground-truth columns
            tok = load_tokenizer(cfg["tokenizer_path"], cfg["device"]) if cfg["tokenizer_path"] else None
        except (FileNotFoundError, RuntimeError) as e:
            raise SystemExit(f"error: {e}") from None
        try:
            results = calibrate(cfg["height"], cfg["width"], cfg["frames"], cfg["n_per_category"])
        except RuntimeError as e:  # data.shapes: the objects do not fit the canvas
            raise SystemExit(f"error: {e}: give a larger --height and --width (the data is drawn "
                             f"for 32x32 and up)") from None
        if tok is not None:
            prompts = benchmark_prompts(cfg["height"], cfg["width"], cfg["frames"], cfg["n_per_category"])
            for name, videos in tokenizer_runs(prompts, tok).items():
                results[name] = score_all(videos, prompts)
                print(f"{name}, consistency: " + format_breaks(consistency_breaks(videos, prompts)))
            print(format_table(results))
        return results
    model, ckpt = load_model(cfg["out_dir"], cfg["ckpt"], cfg["device"])
    meta, train_cfg = ckpt["meta"], ckpt["config"]
    tok = load_codes_tokenizer(meta, cfg["device"], cfg["tokenizer_path"])
    writable_dir(cfg["out_dir"], "out_dir")  # the scores go there: checked before minutes of sampling
    frames = 1 + (meta["latent_shape"]["video"][0] - 1) * meta["compression"][0]
    prompts = benchmark_prompts(meta["height"], meta["width"], frames, cfg["n_per_category"])
    clips = generate_for(prompts, model, tok, meta, train_cfg, cfg)
    name = cfg["name"] or f"{os.path.basename(os.path.normpath(cfg['out_dir']))}/{cfg['ckpt']}"
    scores = score_all(clips, prompts)
    print(f"ShapesBench: {len(prompts)} prompts, steps={cfg['steps']} cfg={cfg['cfg']} "
          f"temperature={cfg['temperature']} token_temperature={cfg['token_temperature']} "
          f"history_ratio={cfg['history_ratio']}")
    print(format_table({name: scores}))
    outcomes = single_object_outcomes(clips, prompts)
    print("single_object outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.items()))
    area, true_area = single_object_area(clips, prompts)
    print(f"single_object: the object covers {area:.0f} pixels on average (ground truth {true_area:.0f})")
    breaks = consistency_breaks(clips, prompts)
    print("consistency: " + format_breaks(breaks))
    # one file per checkpoint and sampling setting: another setting never overwrites a result
    tag = settings_tag(cfg, DEFAULTS, (("seed", "s"), ("cfg", "cfg"), ("steps", "steps"), ("temperature", "t"),
                                       ("token_temperature", "tt"), ("n_per_category", "n"),
                                       ("batch_size", "b")))  # chunks draw from seed + their start
    which = "" if cfg["ckpt"] == "ckpt.pt" else "_" + os.path.splitext(os.path.basename(cfg["ckpt"]))[0]
    stem = os.path.join(cfg["out_dir"], f"shapesbench{which}_h{cfg['history_ratio']}{tag}")
    with open(stem + ".json", "w") as f:
        json.dump(dict(scores=scores, single_object_outcomes=outcomes,
                       single_object_area=dict(generated=area, ground_truth=true_area),
                       consistency_breaks={str(k): v for k, v in breaks.items()},
                       config=cfg, detector=DETECTOR, checkpoint=os.path.join(cfg["out_dir"], cfg["ckpt"]),
                       iter_num=ckpt["iter_num"]), f, indent=2)
    by_category = {}
    for i, p in enumerate(prompts):
        by_category.setdefault(p["category"], []).append(i)
    shown = [i for indices in by_category.values() for i in indices[:2]]  # two of each category
    save_grid([clips[i] for i in shown], [prompts[i]["caption"] for i in shown], stem + "_grid")
    print(f"wrote {stem}.json and {stem}_grid.gif/png")
    return scores


if __name__ == "__main__":
    from configurator import run
    run(main)
