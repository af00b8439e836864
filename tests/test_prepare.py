"""Token shards: what goes in (shapes samples, a folder of captioned images and videos) comes out
of load_shards as the tokenizer's codes with its records; bad folders fail with a clear message."""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from data.shapes import make_sample
from data.prepare import load_meta, load_shards, prepare_folder, prepare_shapes, read_image, read_video
from tokenizer import TokenizerConfig, VideoTokenizer, save_tokenizer


@pytest.fixture
def tokenizer_path(tmp_path):
    """A tiny untrained tokenizer (4x4x4 compression), saved where prepare can load it."""
    torch.manual_seed(0)
    path = str(tmp_path / "tok.pt")
    save_tokenizer(VideoTokenizer(TokenizerConfig(channels=(4, 8))), path)
    return path


def options(tmp_path, tokenizer_path, **extra):
    return dict(out=str(tmp_path / "shards"), tokenizer_path=tokenizer_path, height=16, width=16,
                frames=5, fps=4, val_fraction=0.0, **extra)


def write_images(folder, names, size=(24, 20)):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)


def test_shapes_shards(tmp_path, tokenizer_path):
    opts = options(tmp_path, tokenizer_path)
    del opts["val_fraction"]
    meta = prepare_shapes(**opts, n_train_video=3, n_train_image=2, n_val_video=1, n_val_image=1)
    assert meta == load_meta(opts["out"])
    assert meta["latent_shape"] == {"video": [2, 4, 4], "image": [1, 4, 4]}
    assert meta["codebook_size"] == 125 and meta["dtype"] == "uint16"
    from tokenizer import load_tokenizer
    assert meta["tokenizer_fingerprint"] == load_tokenizer(tokenizer_path).fingerprint()  # which codes
    codes, records = load_shards(opts["out"], "train", "video")
    assert codes.shape == (3, 2, 4, 4) and len(records) == 3
    assert records[2]["seed"] == 2
    assert records[2]["caption"] == make_sample(2, "train", 16, 16, 5, "video")["caption"]
    assert load_shards(opts["out"], "val", "image")[0].shape == (1, 1, 4, 4)


def test_every_shard_entry_is_the_tokenizer_codes_of_its_records_sample(tmp_path):
    """Entry i of each shard is the tokenizer's codes of the sample its record i names (that split's
    seed i: val shards hold val samples), in order across batches, over the whole code range: a
    codebook of 8**6 = 262144 codes, stored as uint32."""
    from tokenizer import load_tokenizer
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(channels=(4, 8), levels=(8,) * 6))
    with torch.no_grad():  # a gain where codes vary with the content (see conftest.shards)
        for p in tok.parameters():
            p.normal_(0, 1.5 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1)
    save_tokenizer(tok, str(tmp_path / "big.pt"))
    out = str(tmp_path / "shards")
    meta = prepare_shapes(out=out, tokenizer_path=str(tmp_path / "big.pt"), height=16, width=16,
                          frames=5, n_train_video=3, n_train_image=3, n_val_video=3, n_val_image=3,
                          batch_size=2)
    assert meta["codebook_size"] == 262144 and meta["dtype"] == "uint32"
    tok, top = load_tokenizer(str(tmp_path / "big.pt")), 0
    for split in ("train", "val"):
        for kind in ("video", "image"):
            codes, records = load_shards(out, split, kind)
            assert [r["seed"] for r in records] == [0, 1, 2]
            for c, r in zip(codes, records):
                sample = make_sample(r["seed"], split, 16, 16, 5, kind)
                assert r["caption"] == sample["caption"]
                assert np.array_equal(c, tok.encode(sample["video"]).numpy())
                top = max(top, int(c.max()))
    assert top >= 65536  # a meaningful test: codes past uint16's range


def test_a_missing_tokenizer_is_trained_with_tokenizer_args(tmp_path, tokenizer_path, monkeypatch):
    """config/shapes_gpu.py's one command: no tokenizer yet, so prepare trains one at the data's
    geometry with the preset's tokenizer.py overrides."""
    import shutil
    from data import prepare
    seen = {}
    def train_tokenizer(cfg, path):  # stands in for the real training: records, then saves one
        seen.update(cfg)
        (tmp_path / "new").mkdir(exist_ok=True)  # made, and checked, before the training
        shutil.copy(tokenizer_path, path)
    monkeypatch.setattr(prepare, "train_tokenizer", train_tokenizer)
    new = str(tmp_path / "new" / "tok.pt")
    with pytest.raises(SystemExit, match="in tokenizer_args='--max_iter=3': unknown config key 'max_iter'"):
        prepare.get_tokenizer(new, 16, 16, 5, "cpu", "--max_iter=3")
    with pytest.raises(SystemExit, match="in tokenizer_args='--batch_size=0': --batch_size=0 is out of range"):
        prepare.get_tokenizer(new, 16, 16, 5, "cpu", "--batch_size=0")
    prepare.get_tokenizer(new, 16, 16, 5, "cpu", '--compression="(4,8,8)" --levels="(8,8,8,5,5,5)" --norm=group')
    assert (seen["height"], seen["width"], seen["frames"], seen["out_dir"]) == (16, 16, 5, str(tmp_path / "new"))
    assert (seen["compression"], seen["levels"], seen["norm"]) == ((4, 8, 8), (8, 8, 8, 5, 5, 5), "group")


def test_folder_of_pngs_with_csv_captions(tmp_path, tokenizer_path, capsys):
    folder = tmp_path / "imgs"
    write_images(folder, ["a.png", "b.png", "c.png"])
    (folder / "captions.csv").write_text("\ufefffile,caption\na.png,a red thing\nb.png,\"b, blue\"\n"
                                         "c.png,c\ngone.png,a caption without its file\n",  # a BOM, as
                                         encoding="utf-8")                               # spreadsheets write

    opts = options(tmp_path, tokenizer_path)
    meta = prepare_folder(str(folder), **opts)
    assert "names 1 file(s) not in" in capsys.readouterr().out  # said, not skipped in silence
    assert meta["counts"]["train"] == {"video": 0, "image": 3}
    codes, records = load_shards(opts["out"], "train", "image")
    assert [r["caption"] for r in records] == ["a red thing", "b, blue", "c"]
    # the shards hold exactly the tokenizer's codes of the resized, center-cropped image
    from tokenizer import load_tokenizer
    expected = load_tokenizer(tokenizer_path).encode(read_image(str(folder / "b.png"), 16, 16))
    assert np.array_equal(codes[1], expected.numpy())


def test_a_small_folder_still_gets_a_validation_clip(tmp_path, tokenizer_path):
    folder = tmp_path / "imgs"
    write_images(folder, ["a.png", "b.png", "c.png"])
    (folder / "captions.csv").write_text("file,caption\na.png,a\nb.png,b\nc.png,c\n")
    meta = prepare_folder(str(folder), **dict(options(tmp_path, tokenizer_path), val_fraction=0.05))
    assert meta["counts"]["val"]["image"] == 1 and meta["counts"]["train"]["image"] == 2


def test_a_one_file_folder_keeps_its_file_for_training(tmp_path, tokenizer_path):
    """The lowest-hash fallback fills val only when there is more than one file: a folder's only
    file is not taken away from training."""
    folder = tmp_path / "one"
    write_images(folder, ["only3.png"])  # its name hash (9395 of 10000) is not in val at 5%
    (folder / "captions.csv").write_text("file,caption\nonly3.png,x\n")
    meta = prepare_folder(str(folder), **dict(options(tmp_path, tokenizer_path), val_fraction=0.05))
    assert meta["counts"]["train"]["image"] == 1 and meta["counts"]["val"]["image"] == 0


def test_the_folder_split_is_the_same_in_every_run(tmp_path, tokenizer_path):
    """Files go to val by a stable hash of their name (crc32), not Python's hash(), which changes
    from one process to the next: the same folder always holds out the same files. Pinned here:
    these 12 names at val_fraction=0.3."""
    folder = tmp_path / "imgs"
    names = [f"img{i:02d}.png" for i in range(12)]
    write_images(folder, names, size=(16, 16))
    (folder / "captions.csv").write_text("file,caption\n" + "".join(f"{n},x\n" for n in names))
    opts = dict(options(tmp_path, tokenizer_path), val_fraction=0.3)
    prepare_folder(str(folder), **opts)
    val = [r["file"] for r in load_shards(opts["out"], "val", "image")[1]]
    assert val == ["img00.png", "img02.png", "img08.png", "img09.png", "img10.png"]


def test_images_are_scaled_to_cover_then_center_cropped(tmp_path):
    """A 48x16 image of three bands, red | green | blue, read at 16x16 is the green middle band; its
    16x48 transpose gives the middle band too; twice the size, scaled down, the same."""
    bands = np.zeros((16, 48, 3), np.uint8)
    bands[:, :16], bands[:, 16:32], bands[:, 32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    for name, image in [("wide", bands), ("tall", bands.transpose(1, 0, 2)),
                        ("big", bands.repeat(2, 0).repeat(2, 1))]:
        Image.fromarray(image).save(tmp_path / f"{name}.png")
        clip = read_image(str(tmp_path / f"{name}.png"), 16, 16)
        assert clip.shape == (1, 16, 16, 3)
        assert (np.abs(clip[0, 2:-2, 2:-2].astype(int) - (0, 255, 0)) <= 8).all(), name


def write_mp4(path, frames=12, fps=8, start=0):
    """A 32x24 mp4 whose frame i is grey level 20 * i, its first frame shown at `start` frames."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = start + i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.mark.parametrize("start", [0, 16])
def test_video_frames_are_sampled_at_fps_from_the_first_frame(tmp_path, start):
    pytest.importorskip("av")
    write_mp4(tmp_path / "clip.mp4", start=start)  # frames at 8 fps; the second clip starts at 2 s
    clip = read_video(str(tmp_path / "clip.mp4"), 24, 32, 5, 4)  # 5 frames at 4 fps: every other one
    assert np.allclose(clip.mean((1, 2, 3)), [0, 40, 80, 120, 160], atol=6)


def test_video_and_unreadable_and_uncaptioned_files(tmp_path, tokenizer_path, capsys):
    pytest.importorskip("av")
    folder = tmp_path / "mixed"
    write_images(folder, ["still.png", "nocaption.png"])
    (folder / "broken.png").write_bytes(b"this is not a png")
    write_mp4(folder / "clip.mp4")  # 12 frames at 8 fps = 1.5 s
    rows = [{"file": f, "caption": f"caption of {f}"} for f in ("still.png", "broken.png", "clip.mp4")]
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    opts = options(tmp_path, tokenizer_path)
    meta = prepare_folder(str(folder), **opts)
    out = capsys.readouterr()
    assert "broken.png" in out.err + out.out and "nocaption.png" in out.err + out.out
    assert meta["counts"]["train"] == {"video": 1, "image": 1}
    codes, records = load_shards(opts["out"], "train", "video")
    assert codes.shape == (1, 2, 4, 4) and records[0]["file"] == "clip.mp4"


def test_shards_are_never_written_over(tmp_path, tokenizer_path, monkeypatch):
    """A folder of finished shards, or of other files, stops the run before anything is written;
    an interrupted run leaves no folder that looks finished, and the next run completes it."""
    from data import prepare
    opts = dict(options(tmp_path, tokenizer_path), n_train_video=3, n_train_image=2, n_val_video=1,
                n_val_image=1)
    del opts["val_fraction"]
    out = tmp_path / "shards"
    calls = []
    def interrupted(self, split, kind):
        calls.append(1)
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(prepare.ShardWriter, "flush", interrupted)
        with pytest.raises(KeyboardInterrupt):
            prepare_shapes(**opts)
    assert calls and not out.exists()  # only out.partial: nothing that load_meta would take
    prepare_shapes(**opts)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    with pytest.raises(FileExistsError, match="already holds token shards: give another --out"):
        prepare_shapes(**opts)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds other files"):
        prepare_shapes(**dict(opts, out=str(other)))
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="notes.txt is a file, not a folder"):
        prepare_shapes(**dict(opts, out=str(other / "notes.txt" / "shards")))
    (tmp_path / "bad.pt").write_bytes(b"not a tokenizer")
    with pytest.raises(ValueError, match="bad.pt is not a video tokenizer"):
        prepare_shapes(**dict(opts, out=str(tmp_path / "new"), tokenizer_path=str(tmp_path / "bad.pt")))


def test_damaged_shards_say_to_prepare_again(tmp_path, tokenizer_path):
    opts = options(tmp_path, tokenizer_path)
    del opts["val_fraction"]
    prepare_shapes(**opts, n_train_video=3, n_train_image=2, n_val_video=1, n_val_image=1)
    out = tmp_path / "shards"
    (out / "train_video.bin").write_bytes((out / "train_video.bin").read_bytes()[:10])  # cut short
    with pytest.raises(ValueError, match="damaged \\(train_video.*prepare them again"):
        load_shards(str(out), "train", "video")
    (out / "train_video.bin").unlink()  # gone, while meta.json counts 3 videos
    with pytest.raises(ValueError, match="damaged \\(train_video.*No such file"):
        load_shards(str(out), "train", "video")
    (out / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged \\(meta.json"):
        load_meta(str(out))


def test_bad_folders_fail_clearly(tmp_path, tokenizer_path):
    opts = options(tmp_path, tokenizer_path)
    with pytest.raises(ValueError, match="--n_train_video=-1 is out of range: use 0 or more"):
        prepare_shapes(**dict(opts, val_fraction=0.05, n_train_video=-1))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        prepare_folder(str(empty), **opts)
    write_images(tmp_path / "nocaps", ["a.png"])
    with pytest.raises(FileNotFoundError, match="captions.jsonl or captions.csv"):
        prepare_folder(str(tmp_path / "nocaps"), **opts)
    with pytest.raises(FileNotFoundError, match="python data/prepare.py"):
        load_shards(str(empty), "train", "video")
    raw = str(tmp_path / "nocaps")  # the clips themselves, given as shards
    with pytest.raises(FileNotFoundError, match=re.escape(f"holds images or videos, not token shards: encode "
                                                          f"them with `python data/prepare.py --folder={raw} "
                                                          f"--out={raw}_shards`")):
        load_shards(raw, "train", "video")
    folder = tmp_path / "captioned"
    write_images(folder, ["a.png", "b.png"])
    (folder / "captions.jsonl").write_text('{"file": "a.png", "caption": "red"}\nnot json\n')
    with pytest.raises(ValueError, match="captions.jsonl line 2 is not JSON"):
        prepare_folder(str(folder), **opts)
    (folder / "captions.jsonl").unlink()
    (folder / "captions.csv").write_text("file,caption\na.png\nb.png,green\n")  # a.png's caption missing
    with pytest.raises(ValueError, match="entry 1: need the fields 'file' and 'caption' as text"):
        prepare_folder(str(folder), **opts)
    (folder / "captions.csv").write_text("file,caption\na.png,red\nb.png,blue\n")
    with pytest.raises(ValueError, match="puts all 2 captioned files in validation, none in training"):
        prepare_folder(str(folder), **dict(opts, val_fraction=1.0))
    assert not list(tmp_path.glob("shards*"))  # stopped before writing
    (folder / "captions.csv").write_text("file,caption\nc.png,red\n")  # names no file of the folder
    with pytest.raises(ValueError, match="none of the 2 files .* has a caption"):
        prepare_folder(str(folder), **opts)
    (folder / "captions.csv").write_text("file,caption\na.png,red\n")
    (folder / "a.png").write_bytes(b"not a png")  # every captioned file unreadable: no meta.json
    with pytest.raises(ValueError, match="no file of .* could be read"):
        prepare_folder(str(folder), **opts)
    assert not (tmp_path / "shards" / "meta.json").exists()


@pytest.mark.parametrize("bad, message", [(dict(frames=6), "1 \\+ k\\*4 .*: use --frames=5 or 9"),
                                          (dict(height=18), "multiple of 4 .*--height=20")])
def test_bad_geometry_is_a_value_error(tmp_path, tokenizer_path, bad, message):
    folder = tmp_path / "imgs"
    write_images(folder, ["a.png"])
    (folder / "captions.csv").write_text("file,caption\na.png,x\n")
    with pytest.raises(ValueError, match=message):
        prepare_folder(str(folder), **dict(options(tmp_path, tokenizer_path), **bad))
