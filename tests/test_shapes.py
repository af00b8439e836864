"""Properties of the procedural shapes dataset: determinism, truthful captions, held-out splits."""
import json
import re

import numpy as np
import pytest

from data.shapes import (BACKGROUND, CATEGORIES, HELD_OUT_COLOUR_MOTION, HELD_OUT_SHAPE_COLOUR, LAYOUTS,
                         MOTIONS, NUMBERS, PALETTE, RELATIONS, SHAPES, ShapesDataset, benchmark_prompts,
                         draw_attrs, find_image, make_sample, render, split_seeds, write_image)

CANVASES = [dict(height=32, width=32, frames=9), dict(height=64, width=64, frames=17),
            dict(height=32, width=48, frames=2), dict(height=32, width=32, frames=1)]


def parse_caption(text):
    """(objects as (colour, shape, motion), relation, count) read back from a caption, independently of
    the generator's grammar code."""
    colour, shape = f"({'|'.join(PALETTE)})", f"({'|'.join(SHAPES)})"
    count = re.fullmatch(f"({'|'.join(NUMBERS.values())}) {colour} {shape}s", text)
    if count:
        n = {v: k for k, v in NUMBERS.items()}[count[1]]
        return [(count[2], count[3], "still")] * n, None, n
    phrase = f"a {colour} {shape}(?: moves ({'|'.join(MOTIONS[:4])})| (stays still))?"
    relation = re.fullmatch(f"{phrase} ({'|'.join(RELATIONS.values())}) {phrase}", text)
    if relation:
        g = relation.groups()
        name = {v: k for k, v in RELATIONS.items()}[g[4]]
        return [(g[0], g[1], "still"), (g[5], g[6], "still")], name, None
    objects = []
    for part in text.split(" and "):
        m = re.fullmatch(phrase, part)
        objects.append((m[1], m[2], m[3] or "still"))
    return objects, None, None


@pytest.mark.parametrize("kind", ["image", "video"])
def test_same_seed_same_sample_different_seed_different_sample(kind):
    a, b, c = make_sample(7, kind=kind), make_sample(7, kind=kind), make_sample(8, kind=kind)
    assert np.array_equal(a["video"], b["video"])
    assert (a["caption"], a["attrs"]) == (b["caption"], b["attrs"])
    assert not np.array_equal(a["video"], c["video"])
    assert not np.array_equal(a["video"], make_sample(7, "val", kind=kind)["video"])


def test_attrs_are_json_and_render_the_same_clip():
    sample = make_sample(3, kind="video", layout="pair")
    attrs = json.loads(json.dumps(sample["attrs"]))
    assert np.array_equal(render(attrs), sample["video"])


@pytest.mark.parametrize("kind", ["image", "video"])
def test_caption_says_what_the_attributes_hold(kind):
    for seed in range(200):
        sample = make_sample(seed, kind=kind)
        attrs = sample["attrs"]
        objects, relation, count = parse_caption(sample["caption"])
        assert objects == [(o["colour"], o["shape"], o["motion"]) for o in attrs["objects"]]
        assert (relation, count) == (attrs["relation"], attrs["count"])
        if kind == "video":  # a video's caption says every object's motion, "stays still" included
            assert all(" moves " in part or part.endswith(" stays still")
                       for part in sample["caption"].split(" and "))


@pytest.mark.parametrize("canvas", CANVASES, ids=lambda c: "{height}x{width}x{frames}".format(**c))
def test_objects_stay_inside_apart_and_visible_in_every_frame(canvas):
    height, width = canvas["height"], canvas["width"]
    for seed in range(40):
        for kind in ("image", "video"):
            sample = make_sample(seed, **canvas, kind=kind)
            objects = sample["attrs"]["objects"]
            for t in range(len(sample["video"])):
                boxes = [o["bboxes"][t] for o in objects]
                assert all(0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height for x0, y0, x1, y1 in boxes)
                for i, a in enumerate(boxes):  # at least 2 px of background between any two objects
                    for b in boxes[i + 1:]:
                        assert max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3]) >= 2
                for o in objects:
                    assert (sample["video"][t] == PALETTE[o["colour"]]).all(-1).sum() >= 0.4 * o["size"] ** 2


def test_moving_objects_travel_clearly_the_asked_way_at_constant_speed():
    # (x, y) with y down the image, written out here rather than taken from data.shapes
    sign = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
    seen = set()
    for seed in range(100):
        attrs = draw_attrs(seed, frames=9, kind="video")
        for o in attrs["objects"]:
            steps = np.diff(np.array(o["centroids"]), axis=0)
            travel = np.abs(steps.sum(0)).max()
            assert (travel == 0) if o["motion"] == "still" else 0.3 * 32 - 0.1 <= travel <= 0.5 * 32 + 0.1
            assert tuple(np.sign(steps.sum(0)).astype(int)) == sign[o["motion"]]
            assert np.abs(steps - steps.mean(0)).max() < 1  # whole-pixel positions: steps differ by <= 1
            seen.add(o["motion"])
    assert seen == set(sign)


def test_count_images_ask_for_two_three_and_four():
    """Every count the benchmark asks for is in the training data (none is held out by accident)."""
    assert {draw_attrs(s, kind="image", layout="count")["count"] for s in range(200)} == {2, 3, 4}


def test_split_seed_ranges_are_disjoint():
    ranges = [split_seeds(s) for s in ("train", "val", "test")]
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            assert a.stop <= b.start or b.stop <= a.start


def test_held_out_combinations_never_in_train_or_val():
    for split in ("train", "val"):
        for kind in LAYOUTS:
            for seed in range(1000):
                for o in draw_attrs(seed, split, kind=kind)["objects"]:
                    assert (o["shape"], o["colour"]) not in HELD_OUT_SHAPE_COLOUR
                    assert (o["colour"], o["motion"]) not in HELD_OUT_COLOUR_MOTION
    with pytest.raises(ValueError):
        draw_attrs(0, "train", held_out=True)


def uses_held_out(attrs):
    return any((o["shape"], o["colour"]) in HELD_OUT_SHAPE_COLOUR
               or (o["colour"], o["motion"]) in HELD_OUT_COLOUR_MOTION for o in attrs["objects"])


def test_benchmark_is_fixed_and_only_held_out_asks_for_unseen_combinations():
    small, large = benchmark_prompts(n_per_category=3), benchmark_prompts(n_per_category=5)
    assert [p["category"] for p in small] == [c for c in CATEGORIES for _ in range(3)]
    large_prefix = [p for c in CATEGORIES for p in [q for q in large if q["category"] == c][:3]]
    assert [p["caption"] for p in small] == [p["caption"] for p in large_prefix]
    for p in large:
        assert set(p) >= {"category", "scored_as", "caption", "kind", "attrs", "video"}
        assert uses_held_out(p["attrs"]) == (p["category"] == "held_out")
        assert p["video"].shape[0] == (1 if p["kind"] == "image" else 9)
    assert {p["scored_as"] for p in large if p["category"] == "held_out"} == {"single_object", "motion"}


@pytest.mark.parametrize("colour,shape", [("red", "circle"), ("green", "circle")])  # seen, held out
def test_find_image_draws_the_asked_object_alone(colour, shape):
    image = find_image(f"a {colour} {shape}")
    assert image.shape == (32, 32, 3)
    pixels = {tuple(p) for p in image.reshape(-1, 3)}
    assert pixels == {BACKGROUND, PALETTE[colour]}  # one object, the asked colour
    ys, xs = np.nonzero((image != BACKGROUND).any(-1))
    assert abs(xs.mean() + 0.5 - 16) < 5 and abs(ys.mean() + 0.5 - 16) < 5  # near the centre
    assert find_image("a pink blob", tries=50) is None


def test_write_image_saves_the_png_and_never_overwrites(tmp_path):
    from PIL import Image
    out = tmp_path / "first.png"
    write_image("a blue square", str(out))
    assert np.array_equal(np.array(Image.open(out)), find_image("a blue square"))
    out.write_bytes(b"the user's own file")
    with pytest.raises(SystemExit, match="exists"):
        write_image("a red circle", str(out))
    assert out.read_bytes() == b"the user's own file"
    with pytest.raises(SystemExit, match="no shapes image"):
        write_image("a pink blob", str(tmp_path / "other.png"))
    with pytest.raises(SystemExit, match="write a .png \\(lossless\\)"):  # JPEG would shift the colours
        write_image("a red circle", str(tmp_path / "first.jpg"))
    with pytest.raises(SystemExit, match="cannot write .*first.png"):
        write_image("a red circle", str(tmp_path / "no_such_folder" / "first.png"))


def test_dataset_mixes_kinds_evenly_and_indexes_deterministically():
    data = ShapesDataset("val", image_fraction=0.25, length=40)
    kinds = [data.kind(i) for i in range(len(data))]
    assert all(kinds[i:i + 4].count("image") == 1 for i in range(0, 40, 4))  # spread, not bunched
    assert np.array_equal(data[5]["video"], make_sample(5, "val", kind=data.kind(5))["video"])
    assert len(list(data)) == 40
    with pytest.raises(IndexError):
        data[40]
