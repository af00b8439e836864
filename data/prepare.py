"""
Encode a dataset into token shards once: the video tokenizer is frozen while the LM trains
(as in the paper), so training reads codes instead of running the tokenizer every step.

    python data/prepare.py                                      # built-in shapes data
    python data/prepare.py --folder=path/to/clips --out=data/shards/mine --fps=8

Shards, one pair per split ("train", "val") and kind ("video", "image"):
    {out}/{split}_{kind}.bin    codes as a raw np.uint16 array [n, F, h, w] (np.uint32 when the
                                codebook has more than 65536 codes)
    {out}/{split}_{kind}.jsonl  one JSON record per sample: caption, attrs, seed (shapes) or file
    {out}/meta.json             height, width, frames, fps, latent_shape per kind, compression,
                                levels, codebook_size, tokenizer, counts, dtype; written last, so
                                a folder with meta.json is complete
For --folder, captions come from captions.jsonl ({"file": ..., "caption": ...} per line) or
captions.csv (header file,caption). Videos are read with PyAV (pip install av), images with pillow.
"""
import csv
import json
import os
import shlex
import shutil
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python data/prepare.py` runs with data/ as the import root
    sys.path.insert(0, ROOT)

from configurator import AT_LEAST_0, AT_LEAST_1, FRACTION, check_ranges, configure, writable_dir  # noqa: E402
from tokenizer import TRAIN_DEFAULTS, check_train_config, load_tokenizer, train_tokenizer  # noqa: E402

DEFAULTS = dict(
    out="data/shards/shapes",         # where the shards go
    tokenizer_path="out/tokenizer.pt",  # trained first (python tokenizer.py defaults) if missing
    tokenizer_args="",                # ... with these tokenizer.py overrides ("--compression=(4,8,8) ...")
    folder="",                        # a folder of captioned videos/images; empty: shapes data
    height=32, width=32, frames=9, fps=8,
    n_train_video=4000, n_train_image=4000, n_val_video=256, n_val_image=256,  # shapes only
    val_fraction=0.05,                # folder only: share of files (by name hash) held out for val
    batch_size=64, device="cpu",
)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")


def _no_shards(out):
    media = os.path.isdir(out) and any(f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS) for f in os.listdir(out))
    if media:  # the raw clips, not their shards
        shards = out.rstrip("/\\") + "_shards"
        return FileNotFoundError(f"{out!r} holds images or videos, not token shards: encode them with "
                                 f"`python data/prepare.py --folder={out} --out={shards}`, then train "
                                 f"with --data_dir={shards}")
    return FileNotFoundError(f"no token shards in {out!r}: run `python data/prepare.py` "
                             f"(with --out={out} or --folder=... as needed)")


def _damaged(out, what):
    return ValueError(f"the token shards in {out!r} are damaged ({what}): delete the folder and prepare "
                      f"them again with the command that made them (python data/prepare.py --out={out} "
                      f"with the same --folder, --height, --width, --frames and --fps); shapes shards "
                      f"that train.py made, it makes again once the folder is deleted")


def load_meta(out):
    """The meta.json of a shard folder, as a dict."""
    path = os.path.join(out, "meta.json")
    if not os.path.isfile(path):
        raise _no_shards(out)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise _damaged(out, f"meta.json: {e}") from None


def load_shards(out, split, kind):
    """(codes, records) of one split and kind: a read-only memmap [n, F, h, w] and a list of dicts."""
    meta = load_meta(out)
    n, shape = meta["counts"][split][kind], tuple(meta["latent_shape"][kind])
    try:
        with open(os.path.join(out, f"{split}_{kind}.jsonl")) as f:
            records = [json.loads(line) for line in f]
        if len(records) != n:
            raise ValueError(f"{n} records expected, {len(records)} found")
        if n == 0:  # np.memmap cannot map an empty file
            return np.zeros((0, *shape), meta["dtype"]), records
        codes = np.memmap(os.path.join(out, f"{split}_{kind}.bin"), dtype=meta["dtype"], mode="r",
                          shape=(n, *shape))
    except FileNotFoundError as e:
        if n == 0:  # no shards of this kind at all: the caller decides
            raise
        raise _damaged(out, f"{split}_{kind}: {e.strerror}: {e.filename}") from None
    except (OSError, ValueError) as e:  # a truncated .bin ("mmap length is greater than file size")
        raise _damaged(out, f"{split}_{kind}: {e}") from None
    return codes, records


SHARD_FILES = {f"{split}_{kind}.{ext}" for split in ("train", "val") for kind in ("video", "image")
               for ext in ("bin", "jsonl")}


def check_out(out):
    """Shards are never written over: a folder that holds complete shards (meta.json) or files that
    are not shards stops the run. An unfinished earlier attempt (shards, no meta.json) is replaced.
    The folder above must take files (the shards are written beside, then renamed)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out={out} is a file, not a folder: give another --out")
    writable_dir(os.path.dirname(os.path.abspath(out)), "out", error=FileExistsError)
    held = set(os.listdir(out)) if os.path.isdir(out) else set()
    if "meta.json" in held or held - SHARD_FILES:
        what = "token shards" if "meta.json" in held else "other files"
        raise FileExistsError(f"{out!r} already holds {what}: give another --out, or delete that "
                              f"folder first")


def partial_dir(out):
    """Where ShardWriter writes the shards for `out` until they are complete."""
    return out.rstrip("/\\") + ".partial"


class ShardWriter:
    """Buffers (clip, record) pairs per (split, kind), encodes them in batches, appends to disk.
    Writes into out + '.partial' and renames it to out at close(): an interrupted run leaves no
    folder that looks finished, and never touches one that is."""

    def __init__(self, out, tokenizer, batch_size):
        self.final, out = out, partial_dir(out)  # callers check_out(out) first
        shutil.rmtree(out, ignore_errors=True)  # ours: an earlier interrupted attempt
        os.makedirs(out)
        self.out, self.tokenizer, self.batch_size = out, tokenizer, batch_size
        self.dtype = np.uint16 if tokenizer.codebook_size <= 65536 else np.uint32
        self.buffers, self.files, self.counts = {}, {}, {}
        for split in ("train", "val"):
            for kind in ("video", "image"):
                self.buffers[split, kind] = []
                self.files[split, kind] = (open(os.path.join(out, f"{split}_{kind}.bin"), "wb"),
                                           open(os.path.join(out, f"{split}_{kind}.jsonl"), "w"))
                self.counts[split, kind] = 0

    def add(self, split, kind, clip, record):
        self.buffers[split, kind].append((clip, record))
        if len(self.buffers[split, kind]) == self.batch_size:
            self.flush(split, kind)

    def flush(self, split, kind):
        batch = self.buffers[split, kind]
        if not batch:
            return
        codes = self.tokenizer.encode(np.stack([clip for clip, _ in batch]))  # (B, F, h, w)
        bin_file, jsonl_file = self.files[split, kind]
        bin_file.write(codes.cpu().numpy().astype(self.dtype).tobytes())
        for _, record in batch:
            jsonl_file.write(json.dumps(record) + "\n")
        self.counts[split, kind] += len(batch)
        self.buffers[split, kind] = []

    def close(self, tokenizer_path, height, width, frames, fps, source):
        """Flush everything and write meta.json (last: it marks the shards complete)."""
        for key in self.buffers:
            self.flush(*key)
            for f in self.files[key]:
                f.close()
        s_t, s_h, s_w = self.tokenizer.compression
        meta = dict(source=source, height=height, width=width, frames=frames, fps=fps,
                    latent_shape=dict(video=[1 + (frames - 1) // s_t, height // s_h, width // s_w],
                                      image=[1, height // s_h, width // s_w]),
                    compression=list(self.tokenizer.compression),
                    levels=list(self.tokenizer.fsq.levels),
                    codebook_size=self.tokenizer.codebook_size, tokenizer=tokenizer_path,
                    tokenizer_fingerprint=self.tokenizer.fingerprint(),
                    counts={split: {kind: self.counts[split, kind] for kind in ("video", "image")}
                            for split in ("train", "val")},
                    dtype=np.dtype(self.dtype).name)
        with open(os.path.join(self.out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        check_out(self.final)  # still free: nothing appeared there meanwhile
        shutil.rmtree(self.final, ignore_errors=True)  # empty, or an unfinished attempt's shards
        os.replace(self.out, self.final)
        return meta


def tokenizer_config(tokenizer_path, height, width, frames, device, tokenizer_args=""):
    """The `python tokenizer.py` config that get_tokenizer trains with: the data's geometry and
    the overrides in tokenizer_args (e.g. "--compression=(4,8,8)"), checked."""
    base = dict(TRAIN_DEFAULTS, out_dir=os.path.dirname(tokenizer_path) or ".", height=height,
                width=width, frames=frames, device=device)
    try:
        cfg = configure(base, shlex.split(tokenizer_args))
        check_train_config(cfg)
    except SystemExit as e:
        raise SystemExit(f"error: in tokenizer_args={tokenizer_args!r}: "
                         + str(e).removeprefix("error: ")) from None
    return cfg


def get_tokenizer(tokenizer_path, height, width, frames, device, tokenizer_args=""):
    """The tokenizer at tokenizer_path, trained first (tokenizer_config) if missing."""
    if not os.path.exists(tokenizer_path):
        print(f"no tokenizer at {tokenizer_path}: training one (python tokenizer.py {tokenizer_args})")
        cfg = tokenizer_config(tokenizer_path, height, width, frames, device, tokenizer_args)
        writable_dir(cfg["out_dir"], "tokenizer_path", error=ValueError)  # before minutes of training
        train_tokenizer(cfg, path=tokenizer_path)
    try:
        return load_tokenizer(tokenizer_path, device)
    except RuntimeError as e:  # not a tokenizer: the callers' one-line errors take ValueError
        raise ValueError(str(e)) from None


def resolve(overrides):
    """DEFAULTS updated by keyword overrides; an unknown key is a TypeError, as for any function."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    cfg = dict(DEFAULTS, **overrides)
    check_ranges(cfg, [([k for k in DEFAULTS if k.startswith("n_")], AT_LEAST_0),
                       (("batch_size",), AT_LEAST_1), (("val_fraction",), FRACTION)], error=ValueError)
    return cfg


def prepare_shapes(**overrides):
    """Encode shapes samples (seeds 0..n-1 of each split) into shards; keyword arguments override
    DEFAULTS (out, tokenizer_path, height, width, frames, fps, n_train_video, ...). Returns meta."""
    from tqdm import tqdm
    from data.shapes import make_sample
    cfg = resolve(overrides)
    H, W, T = cfg["height"], cfg["width"], cfg["frames"]
    check_out(cfg["out"])  # before minutes of tokenizer training
    tokenizer = get_tokenizer(cfg["tokenizer_path"], H, W, T, cfg["device"], cfg["tokenizer_args"])
    tokenizer.check_geometry(T, H, W)
    writer = ShardWriter(cfg["out"], tokenizer, cfg["batch_size"])
    jobs = [(split, kind, cfg[f"n_{split}_{kind}"]) for split in ("train", "val")
            for kind in ("video", "image")]
    with tqdm(total=sum(n for *_, n in jobs), desc=f"encoding shapes -> {cfg['out']}") as bar:
        for split, kind, n in jobs:
            for seed in range(n):
                sample = make_sample(seed, split, H, W, T, kind)
                record = dict(caption=sample["caption"], attrs=sample["attrs"], seed=seed)
                writer.add(split, kind, sample["video"], record)
                bar.update()
    return writer.close(cfg["tokenizer_path"], H, W, T, cfg["fps"], source="shapes")


# -----------------------------------------------------------------------------
# Real data: a folder of captioned videos and images


def read_captions(folder):
    """{file name: caption} from captions.jsonl or captions.csv in `folder`."""
    jsonl, csv_path = os.path.join(folder, "captions.jsonl"), os.path.join(folder, "captions.csv")
    if os.path.isfile(jsonl):
        rows = []
        with open(jsonl) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{jsonl} line {n} is not JSON ({e}): write one "
                                     f'{{"file": "clip.mp4", "caption": "..."}} a line') from None
    elif os.path.isfile(csv_path):
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's BOM
            rows = list(csv.DictReader(f))
    else:
        raise FileNotFoundError(f"no captions.jsonl or captions.csv in {folder!r}: add one with a "
                                f'line per file, {{"file": "clip.mp4", "caption": "..."}} or a '
                                f"csv with header file,caption")
    for n, row in enumerate(rows, 1):  # a row without a file or a caption: a silent wrong sample
        if not isinstance(row, dict) or not isinstance(row.get("file"), str) \
                or not isinstance(row.get("caption"), str):
            raise ValueError(f"captions in {folder!r}, entry {n}: need the fields 'file' and "
                             f"'caption' as text, got {row!r}")
    return {row["file"]: row["caption"] for row in rows}


def resize_crop(image, height, width):
    """PIL image -> uint8 [height, width, 3]: scaled to cover the target, then center-cropped."""
    from PIL import Image
    image = image.convert("RGB")
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def read_image(path, height, width):
    """An image file as a 1-frame clip [1, H, W, 3]."""
    from PIL import Image
    with Image.open(path) as image:
        return resize_crop(image, height, width)[None]


def read_video(path, height, width, frames, fps):
    """`frames` frames sampled at `fps` from the start of a video file -> [frames, H, W, 3]."""
    try:
        import av
    except ImportError:
        raise ImportError("reading videos needs PyAV: pip install av") from None
    wanted = [i / fps for i in range(frames)]
    times, images, t0 = [], [], None
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or fps)
        for i, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else i / rate
            t0 = t if t0 is None else t0
            times.append(t - t0)  # clip time starts at the first frame (a stream may start later than 0)
            images.append(frame.to_image())
            if times[-1] >= wanted[-1]:
                break
    if not times or times[-1] + 1 / rate < wanted[-1]:
        raise ValueError(f"too short: {len(times)} frames, need {(frames - 1) / fps:.2f} s "
                         f"at fps={fps}")
    # for each wanted time, the nearest decoded frame
    pick = [int(np.argmin([abs(t - w) for t in times])) for w in wanted]
    return np.stack([resize_crop(images[j], height, width) for j in pick])


def prepare_folder(folder, **overrides):
    """Encode a folder of captioned videos and images into shards (same format as shapes);
    unreadable or uncaptioned files are reported and skipped. Returns meta."""
    from tqdm import tqdm
    cfg = resolve(dict(overrides, folder=folder))
    H, W, T = cfg["height"], cfg["width"], cfg["frames"]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no folder {folder!r}")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS))
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTS)}) or videos "
                         f"({', '.join(VIDEO_EXTS)}) in {folder!r}")
    captions = read_captions(folder)
    if not set(files) & set(captions):  # before a tokenizer is trained or a shard written
        raise ValueError(f"none of the {len(files)} files in {folder!r} has a caption (the captions "
                         f"file names e.g. {sorted(captions)[:3]}, the folder holds e.g. {files[:3]})")
    missing = sorted(set(captions) - set(files))
    if missing:  # a caption for a file that is not there (renamed, or of another type): say so
        print(f"warning: the captions file names {len(missing)} file(s) not in {folder!r} as images or "
              f"videos, e.g. {missing[:3]}; they are skipped")
    # a stable hash of the name, so the split doesn't change when files are added; when no name
    # falls in val (a small folder), the lowest hash goes there, so training has validation clips
    hashes = {name: zlib.crc32(name.encode()) % 10_000 for name in files if name in captions}
    val = {name for name, h in hashes.items() if h < cfg["val_fraction"] * 10_000}
    if not val and cfg["val_fraction"] > 0 and len(hashes) > 1:
        val = {min(hashes, key=hashes.get)}
    if val == set(hashes) and len(hashes) > 1:  # before anything is written: no clip left to train on
        raise ValueError(f"--val_fraction={cfg['val_fraction']} puts all {len(hashes)} captioned files in "
                         f"validation, none in training: lower it (0.05 is usual)")
    check_out(cfg["out"])
    tokenizer = get_tokenizer(cfg["tokenizer_path"], H, W, T, cfg["device"], cfg["tokenizer_args"])
    tokenizer.check_geometry(T, H, W)
    writer = ShardWriter(cfg["out"], tokenizer, cfg["batch_size"])
    skipped = 0
    for name in tqdm(files, desc=f"encoding {folder} -> {cfg['out']}"):
        if name not in captions:
            tqdm.write(f"warning: skipping {name}: no caption for it in the captions file")
            skipped += 1
            continue
        path = os.path.join(folder, name)
        kind = "image" if name.lower().endswith(IMAGE_EXTS) else "video"
        try:
            clip = read_image(path, H, W) if kind == "image" else read_video(path, H, W, T,
                                                                             cfg["fps"])
        except ImportError:  # a missing dependency is not a bad file: stop and say what to install
            raise
        except Exception as e:  # one bad file must not stop the ingestion of the others
            tqdm.write(f"warning: skipping unreadable {name}: {type(e).__name__}: {e}")
            skipped += 1
            continue
        writer.add("val" if name in val else "train", kind, clip, dict(caption=captions[name], file=name))
    if skipped == len(files):  # meta.json is not written: the folder holds no usable shards
        raise ValueError(f"no file of {folder!r} could be read (each one's reason is above)")
    meta = writer.close(cfg["tokenizer_path"], H, W, T, cfg["fps"], source=os.path.abspath(folder))
    print(f"ingested {len(files) - skipped} of {len(files)} files ({skipped} skipped)")
    return meta


if __name__ == "__main__":
    from configurator import print_config
    config = configure(DEFAULTS)
    print("data preparation, resolved config:")
    print_config(config)
    options = {k: v for k, v in config.items() if k != "folder"}
    try:
        meta = (prepare_folder(config["folder"], **options) if config["folder"]
                else prepare_shapes(**options))
    except (ValueError, FileNotFoundError, FileExistsError) as e:  # bad geometry, no files, shards there
        raise SystemExit(f"error: {e}")
    except KeyboardInterrupt:
        raise SystemExit(f"\ninterrupted: nothing was written to {config['out']}; run the command "
                         f"again (it replaces the unfinished {partial_dir(config['out'])})")
    print(f"wrote {config['out']}: counts {meta['counts']}, latent shapes {meta['latent_shape']}, "
          f"codes as {meta['dtype']}")
