"""ShapesBench must pass the ground truth, tolerate mild blur, and fail random or corrupted clips."""
import numpy as np
import pytest
import torch
from PIL import Image

from data.shapes import BACKGROUND, CATEGORIES, PALETTE, benchmark_prompts, make_sample
from eval import (_blurred, _palette_blobs, consistency_breaks, detect_objects, format_table,
                  label_components, save_grid, score_all, score_video, single_object_area,
                  single_object_outcomes)


@pytest.fixture(scope="module")
def prompts():
    return benchmark_prompts(32, 32, 9, n_per_category=20)


def passes(video, prompt):
    return score_video(video, prompt)[prompt["category"]]


def test_components_are_4_connected_and_per_colour():
    labels = np.array([[[0, 0, -1, 1],
                        [-1, -1, 0, 1],
                        [2, 2, -1, -1]]])
    comp = label_components(labels)[0]
    found = {frozenset(map(tuple, np.argwhere(comp == c))) for c in np.unique(comp) if c >= 0}
    # the diagonal neighbours (0, 1) and (1, 2) stay apart: objects touch only along an edge
    assert found == {frozenset({(0, 0), (0, 1)}), frozenset({(1, 2)}), frozenset({(0, 3), (1, 3)}),
                     frozenset({(2, 0), (2, 1)})}
    assert (comp[labels[0] < 0] == -1).all()


def test_detector_reads_colour_shape_and_centroid_of_single_objects():
    for seed in range(60):
        for height in (32, 64):
            sample = make_sample(seed, height=height, width=height, kind="image", layout="single")
            want = sample["attrs"]["objects"][0]
            (got,) = detect_objects(sample["video"])[0]
            assert (got["colour"], got["shape"]) == (want["colour"], want["shape"])
            assert np.abs(np.subtract(got["centroid"], want["centroids"][0])).max() < 0.6


def _drawn(mask, colour="red"):
    """A 32x32 frame with `mask` (a boolean 12x12 pattern) painted at (10, 10) in a palette colour."""
    frame = np.full((32, 32, 3), BACKGROUND, np.uint8)
    frame[10:22, 10:22][mask] = PALETTE[colour]
    return frame[None]


def test_blobs_that_are_no_shape_are_not_read_as_one():
    y, x = np.mgrid[:12, :12] + 0.5
    r = np.hypot(y - 6, x - 6)
    non_shapes = {"ring": (r < 6) & (r > 3.5), "cross": (abs(y - 6) < 2) | (abs(x - 6) < 2),
                  "downward triangle": abs(x - 6) < 6 - y / 2, "L": (x < 4) | (y > 8),
                  "speckled square": (y.astype(int) + x.astype(int)) % 3 > 0}
    for name, mask in non_shapes.items():
        shapes = [o["shape"] for o in detect_objects(_drawn(mask))[0]]
        assert "triangle" not in shapes and "circle" not in shapes and "square" not in shapes, name
    shapes = {"square": np.ones((12, 12), bool), "circle": r < 6, "triangle": abs(x - 6) < y / 2}
    for name, mask in shapes.items():  # the same drawing code does read the three shapes
        assert [o["shape"] for o in detect_objects(_drawn(mask))[0]] == [name]


@pytest.mark.parametrize("canvas", [(32, 32, 9), (64, 64, 17)])
def test_ground_truth_scores_at_least_098_in_every_category(canvas, prompts):
    cases = prompts if canvas == (32, 32, 9) else benchmark_prompts(*canvas, n_per_category=5)
    scores = score_all([p["video"] for p in cases], cases)
    assert set(scores) == {*CATEGORIES, "overall"}
    assert min(scores.values()) >= 0.98, format_table({"ground truth": scores})


def test_mildly_blurred_ground_truth_still_scores_high(prompts):
    rng = np.random.default_rng(0)
    scores = score_all([_blurred(p["video"], rng) for p in prompts], prompts)
    assert scores["overall"] >= 0.95, format_table({"blurred": scores})


def test_random_clips_score_near_chance(prompts):
    rng, prompts = np.random.default_rng(0), prompts[::2]
    noise = score_all([rng.integers(0, 256, p["video"].shape, dtype=np.uint8) for p in prompts], prompts)
    blobs = score_all([_palette_blobs(p["video"], rng) for p in prompts], prompts)
    assert noise["overall"] < 0.05 and blobs["overall"] < 0.2, format_table({"noise": noise, "blobs": blobs})


def recoloured(video, old, new):
    """The clip with colours `old` and `new` swapped."""
    out = video.copy()
    out[(video == PALETTE[old]).all(-1)] = PALETTE[new]
    out[(video == PALETTE[new]).all(-1)] = PALETTE[old]
    return out


def of(prompts, category, keep=lambda p: True):
    return [p for p in prompts if p["category"] == category and keep(p)]


def moving(p):
    return all(o["motion"] != "still" for o in p["attrs"]["objects"])


def test_wrong_colour_fails_object_and_colour_checks(prompts):
    for category in ("single_object", "colours", "colour_attribution"):
        for p in of(prompts, category):
            colour = p["attrs"]["objects"][0]["colour"]
            other = next(c for c in PALETTE if c not in {o["colour"] for o in p["attrs"]["objects"]})
            assert not passes(recoloured(p["video"], colour, other), p)


def test_swapped_colours_fail_attribution(prompts):
    for p in of(prompts, "colour_attribution"):
        a, b = (o["colour"] for o in p["attrs"]["objects"])
        assert not passes(recoloured(p["video"], a, b), p)


def test_reversed_or_frozen_motion_fails_motion_and_i2v(prompts):
    for category in ("motion", "i2v"):
        cases = of(prompts, category, moving)
        assert cases
        for p in cases:
            assert not passes(p["video"][::-1], p)
            # frame 0 right, then no motion: i2v must fail on the motion alone
            assert not passes(np.repeat(p["video"][:1], len(p["video"]), 0), p)


def test_shuffled_frames_fail_smoothness(prompts):
    rng = np.random.default_rng(0)
    cases = of(prompts, "smoothness", moving)
    assert cases
    for p in cases:
        order = np.concatenate([[0], rng.permutation(np.arange(1, len(p["video"])))])
        while (np.diff(order) == 1).all():
            order = np.concatenate([[0], rng.permutation(np.arange(1, len(p["video"])))])
        assert not passes(p["video"][order], p)


def test_mirrored_image_fails_left_right_position(prompts):
    cases = of(prompts, "position", lambda p: p["attrs"]["relation"] in ("left_of", "right_of"))
    assert cases
    for p in cases:
        assert passes(p["video"], p) and not passes(p["video"][:, :, ::-1], p)


def test_missing_object_fails_counting_and_two_objects(prompts):
    for category in ("counting", "two_objects"):
        for p in of(prompts, category):
            x0, y0, x1, y1 = (int(round(v)) for v in p["attrs"]["objects"][0]["bboxes"][0])
            erased = p["video"].copy()
            erased[:, max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = BACKGROUND
            assert not passes(erased, p)


def test_flickering_object_fails_consistency(prompts):
    for p in of(prompts, "consistency"):
        flicker = p["video"].copy()
        flicker[len(flicker) // 2] = BACKGROUND
        assert not passes(flicker, p)


def test_i2v_fails_when_frame_0_is_not_the_given_image(prompts):
    cases = of(prompts, "i2v")
    for p, other in zip(cases, cases[1:] + cases[:1]):
        assert not passes(other["video"], p)


# -----------------------------------------------------------------------------
# each pass rule on hand-drawn clips: a rule loosened by mistake would inflate every score

def squares(objs, T=9, H=32, W=32):
    """A clip of squares, each (colour, x0, y0, size, total dx, total dy), moving linearly."""
    v = np.full((T, H, W, 3), BACKGROUND, np.uint8)
    for colour, x0, y0, s, dx, dy in objs:
        for t in range(T):
            x, y = x0 + round(dx * t / max(T - 1, 1)), y0 + round(dy * t / max(T - 1, 1))
            v[t, y:y + s, x:x + s] = PALETTE[colour]
    return v


def prompt(category, objects, **attrs):
    return dict(category=category, attrs=dict(width=32, height=32, objects=objects, **attrs))


def obj(colour="red", shape="square", motion="still", **kw):
    return dict(colour=colour, shape=shape, motion=motion, **kw)


def test_single_object_needs_the_asked_shape():
    square = squares([("red", 10, 10, 10, 0, 0)], T=1)
    for shape in ("circle", "triangle"):
        assert not passes(square, prompt("single_object", [obj(shape=shape)]))
    assert passes(square, prompt("single_object", [obj()]))


def test_counting_needs_exactly_n():
    spots = [(1, 1), (11, 1), (21, 1), (1, 11), (11, 11)]
    for n in (2, 3, 4):
        p = prompt("counting", [obj()], count=n)
        assert passes(squares([("red", x, y, 8, 0, 0) for x, y in spots[:n]], T=1), p)
        assert not passes(squares([("red", x, y, 8, 0, 0) for x, y in spots[:n + 1]], T=1), p)


def test_motion_needs_the_direction_the_distance_and_stillness():
    left = prompt("motion", [obj(motion="left")])
    assert passes(squares([("red", 20, 10, 8, -10, 0)]), left)
    assert not passes(squares([("red", 20, 4, 8, -10, 10)]), left)  # as far down as left
    assert not passes(squares([("red", 20, 10, 8, -2, 0)]), left)  # 2 pixels: not a move
    assert not passes(squares([("red", 4, 10, 8, 8, 0)]), prompt("motion", [obj(motion="still")]))


def test_every_object_must_move_as_asked():
    p = prompt("motion", [obj("red", motion="right"), obj("blue", motion="down")])
    assert passes(squares([("red", 2, 2, 8, 10, 0), ("blue", 22, 2, 8, 0, 10)]), p)
    assert not passes(squares([("red", 2, 2, 8, 10, 0), ("blue", 22, 2, 8, 0, 0)]), p)


def test_i2v_frame_0_must_sit_where_the_image_put_it():
    p = prompt("i2v", [obj(motion="down", centroids=[[16, 8]])])
    assert passes(squares([("red", 12, 4, 8, 0, 10)]), p)
    for dx in (-5, 5):
        assert not passes(squares([("red", 12 + dx, 4, 8, 0, 10)]), p)


def test_consistency_catches_a_change_of_shape(prompts):
    cases = of(prompts, "consistency", lambda p: p["attrs"]["objects"][0]["shape"] != "square")
    assert cases
    for p in cases:  # from frame 5 on, the object fills its box: a square of its colour
        v, o = p["video"].copy(), p["attrs"]["objects"][0]
        for t in range(5, len(v)):
            x0, y0, x1, y1 = o["bboxes"][t]
            v[t, y0:y1, x0:x1] = PALETTE[o["colour"]]
        assert not passes(v, p)


@pytest.mark.parametrize("category", ["two_objects", "position"])
def test_an_object_of_the_wrong_shape_fails(prompts, category):
    cases = of(prompts, category, lambda p: all(o["shape"] != "square" for o in p["attrs"]["objects"]))
    assert cases
    for p in cases:
        v, o = p["video"].copy(), p["attrs"]["objects"][0]
        x0, y0, x1, y1 = o["bboxes"][0]
        v[:, y0:y1, x0:x1] = PALETTE[o["colour"]]
        assert not passes(v, p)


def test_above_and_below_are_told_apart():
    v = squares([("red", 12, 2, 8, 0, 0), ("blue", 12, 20, 8, 0, 0)], T=1)  # red above blue
    objects = [obj("red"), obj("blue")]
    assert passes(v, prompt("position", objects, relation="above"))
    assert not passes(v, prompt("position", objects, relation="below"))


def test_the_colour_check_reads_the_largest_object():
    v = squares([("blue", 2, 2, 5, 0, 0), ("red", 14, 14, 12, 0, 0)], T=1)
    assert [o["colour"] for o in detect_objects(v)[0]] == ["red", "blue"]  # largest first
    assert not passes(v, prompt("colours", [obj("blue")]))


def test_grid_and_table_are_written(tmp_path, prompts):
    chosen = prompts[::40]
    save_grid([p["video"] for p in chosen], [p["caption"] for p in chosen], tmp_path / "grid")
    gif = Image.open(tmp_path / "grid.gif")
    assert gif.n_frames == 9 and (tmp_path / "grid.png").exists()
    table = format_table({"truth": score_all([p["video"] for p in chosen], chosen)})
    assert "overall" in table.splitlines()[-1]


def test_single_object_outcomes_say_what_went_wrong(prompts):
    cases = [p for p in prompts if p["category"] == "single_object"][:4]
    two = cases[0]["video"].copy()
    two[:, -6:, -6:] = PALETTE[cases[0]["attrs"]["objects"][0]["colour"]]  # a second blob
    other = next(c for c in PALETTE if c != cases[1]["attrs"]["objects"][0]["colour"])
    recoloured = np.where((cases[1]["video"] != BACKGROUND).any(-1, keepdims=True),
                          np.array(PALETTE[other], np.uint8), cases[1]["video"])
    empty = np.full_like(cases[2]["video"], BACKGROUND)
    videos = [two, recoloured, empty, cases[3]["video"]]
    assert single_object_outcomes(videos, cases) == {
        "passed": 1, "no object": 1, "more than one object": 1, "wrong colour": 1, "wrong shape": 0}
    square = np.full_like(cases[3]["video"], BACKGROUND)
    square[:, 8:20, 8:20] = PALETTE[cases[3]["attrs"]["objects"][0]["colour"]]
    want_square = cases[3]["attrs"]["objects"][0]["shape"] == "square"
    assert single_object_outcomes([square], cases[3:])["wrong shape"] == (0 if want_square else 1)


def test_consistency_breaks_name_the_first_changed_frame(prompts):
    cases = [p for p in prompts if p["category"] == "consistency"][:3]
    changed = cases[0]["video"].copy()
    changed[5:] = BACKGROUND  # the objects vanish from frame 5 on
    empty = np.full_like(cases[1]["video"], BACKGROUND)
    videos = [changed, empty, cases[2]["video"]]
    assert consistency_breaks(videos, cases) == {"no object": 1, 5: 1, "never": 1}
    assert consistency_breaks(videos, cases)["never"] == sum(passes(v, p) for v, p in zip(videos, cases))


def test_single_object_area_compares_with_the_ground_truth(prompts):
    cases = [p for p in prompts if p["category"] == "single_object"][:3]
    truth = [p["video"] for p in cases]
    got, true = single_object_area(truth, cases)
    assert got == true > 0
    grown = []
    for video, p in zip(truth, cases):  # every object 2 pixels wider on each side
        video = video.copy()
        inside = (video[0] != BACKGROUND).any(-1)
        wider = inside.copy()
        for d in (-2, -1, 1, 2):
            wider |= np.roll(inside, d, 0) | np.roll(inside, d, 1)
        video[0][wider] = PALETTE[p["attrs"]["objects"][0]["colour"]]
        grown.append(video)
    assert single_object_area(grown, cases)[0] > true
    assert single_object_area([np.full_like(v, BACKGROUND) for v in truth], cases) == (0.0, true)


def test_results_of_other_settings_never_overwrite_each_other(trained_run, tmp_path):
    """Each checkpoint and sampling setting writes its own file; the defaults keep the plain name."""
    import shutil
    import eval as shapesbench
    for name in ("ckpt.pt", "best.pt"):
        shutil.copy(trained_run / name, tmp_path / name)
    fast = ["--n_per_category=1", "--steps=1"]
    for extra in ([], ["--cfg=3.0"], ["--ckpt=best.pt"], ["--cfg=3.0", "--seed=1"]):
        shapesbench.main([f"--out_dir={tmp_path}", f"--tokenizer_path={tokenizer_of(trained_run)}"]
                         + fast + extra)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "shapesbench_best_h0.7_steps1_n1.json", "shapesbench_h0.7_cfg3.0_steps1_n1.json",
        "shapesbench_h0.7_s1_cfg3.0_steps1_n1.json", "shapesbench_h0.7_steps1_n1.json"]


def tokenizer_of(run):
    import torch
    return torch.load(run / "ckpt.pt", weights_only=True)["meta"]["tokenizer"]


def test_calibration_with_a_missing_tokenizer_stops_before_scoring(tmp_path, monkeypatch):
    import eval as shapesbench
    monkeypatch.setattr(shapesbench, "calibrate", lambda *a: pytest.fail("scored before the check"))
    with pytest.raises(SystemExit, match="no video tokenizer at .*nope.pt"):
        shapesbench.main(["--calibrate=True", f"--tokenizer_path={tmp_path / 'nope.pt'}"])
    with pytest.raises(SystemExit, match="--frames=0 is out of range"):
        shapesbench.main(["--calibrate=True", "--frames=0"])
    with pytest.raises(SystemExit, match="--frames=1 is out of range: use at least 2"):  # no motion to score
        shapesbench.main(["--calibrate=True", "--frames=1"])


# -----------------------------------------------------------------------------
# aggregation, a relation's margin, the calibration path, generate_for

def test_overall_is_the_mean_of_the_categories_not_of_the_prompts(prompts):
    """Each category weighs the same in overall, however many of its prompts were scored."""
    single, colours = of(prompts, "single_object")[:3], of(prompts, "colours")[:1]
    videos = [p["video"] for p in single] + [np.full_like(colours[0]["video"], BACKGROUND)]
    assert score_all(videos, single + colours) == {"single_object": 1.0, "colours": 0.0, "overall": 0.5}


def test_a_relation_must_be_clear():
    """Centroids 1 pixel apart across the asked axis are neither left of nor right of each other."""
    v = squares([("red", 12, 2, 8, 0, 0), ("blue", 13, 20, 8, 0, 0)], T=1)
    objects = [obj("red"), obj("blue")]
    for relation in ("left_of", "right_of"):
        assert not passes(v, prompt("position", objects, relation=relation)), relation
    assert passes(v, prompt("position", objects, relation="above"))


def test_calibration_separates_ground_truth_from_random_clips(capsys):
    from eval import calibrate
    results = calibrate(32, 32, 9, n_per_category=1)
    assert list(results) == ["ground truth", "blurred truth", "uniform noise", "palette blobs"]
    assert results["ground truth"]["overall"] >= 0.98 and results["blurred truth"]["overall"] >= 0.8
    assert results["uniform noise"]["overall"] < 0.1 and results["palette blobs"]["overall"] < 0.3
    assert "ground truth" in capsys.readouterr().out


class CodeTokenizer:
    """A stand-in video tokenizer: codes are the red channel of every 8th pixel of every 4th frame
    (modulo 8); decoding paints each code's pixel block grey at 16 * code."""
    codebook_size, compression = 8, (4, 8, 8)

    def encode(self, video):
        v = torch.as_tensor(np.asarray(video))
        return (v[..., ::4, ::8, ::8, 0].long() % 8)

    def decode(self, codes):
        grey = (16 * codes).to(torch.uint8)[..., None].expand(*codes.shape, 3)
        frames = 1 + (codes.shape[-3] - 1) * 4
        out = grey.repeat_interleave(8, -3).repeat_interleave(8, -2)
        return out.repeat_interleave(4, -4)[..., :frames, :, :, :]


def test_tokenizer_runs_are_the_round_trip_and_random_codes():
    from eval import tokenizer_runs
    cases = benchmark_prompts(32, 32, 9, n_per_category=1)[:3]
    tok = CodeTokenizer()
    runs = tokenizer_runs(cases, tok)
    for p, truth, noise in zip(cases, runs["tokenizer round trip"], runs["random codes"]):
        assert np.array_equal(truth, tok.decode(tok.encode(p["video"])).numpy())
        assert noise.shape == truth.shape and not np.array_equal(noise, truth)


def test_generate_for_asks_each_prompt_for_its_clip(monkeypatch):
    """Images are 1 latent frame, videos 1 + (T-1)/s_t; i2v is conditioned on the encoding of
    its ground truth's frame 0 (the given image); each chunk has its own seed; the clips come
    back in prompt order."""
    import sample
    from eval import generate_for
    from tokenizer import encode_text, format_prompt
    cases = [p for p in benchmark_prompts(32, 32, 9, n_per_category=2)
             if p["category"] in ("single_object", "motion", "i2v")]
    tok, calls = CodeTokenizer(), []

    def fake_generate(model, ids, frames, h, w, text_len, first_frame=None, seed=0, **kw):
        calls.append(dict(ids=ids, frames=frames, first=first_frame, seed=seed))
        codes = torch.zeros(len(ids), frames, h, w, dtype=torch.long)
        return codes + len(calls) - 1  # which call, in every code

    monkeypatch.setattr(sample, "generate", fake_generate)
    meta = dict(latent_shape=dict(video=[3, 4, 4]), compression=[4, 8, 8], width=32, height=32, fps=8)
    cfg = dict(batch_size=1, steps=1, cfg=1.0, temperature=0.0, token_temperature=0.0,
               history_ratio=0.7, seed=5)
    clips = generate_for(cases, None, tok, meta, dict(prompt_template="short", text_len=88), cfg)
    assert sorted(c["seed"] for c in calls if c["first"] is None and c["frames"] == 3) == [5, 6]
    for p, clip in zip(cases, clips):
        call = calls[int(clip[0, 0, 0, 0]) // 16]
        frames = len(p["video"])
        assert call["ids"] == [encode_text(format_prompt(p["caption"], 32, 32, frames, 8, "short"))]
        assert call["frames"] == (1 if p["kind"] == "image" else 3) and len(clip) == frames
        if p["category"] == "i2v":
            assert torch.equal(call["first"], tok.encode(p["video"][None, :1])[:, 0])
        else:
            assert call["first"] is None


def test_a_centroid_is_the_centre_of_the_pixels_it_covers():
    """A square over pixels [10, 20) has its centroid at 15.0: pixel centres, not corners."""
    (got,) = detect_objects(squares([("red", 10, 6, 10, 0, 0)], T=1))[0]
    assert got["centroid"] == (15.0, 11.0) and got["bbox"] == (10, 6, 20, 16)


def test_motion_is_measured_from_the_first_frame_to_the_last():
    """An object that jumps 10 pixels left between frames 0 and 1, then holds, has moved left
    (and is not still): the check compares frame 0 with the last frame."""
    v = squares([("red", 10, 10, 8, 0, 0)])
    v[0] = squares([("red", 20, 10, 8, 0, 0)], T=1)[0]
    assert passes(v, prompt("motion", [obj(motion="left")]))
    assert not passes(v, prompt("motion", [obj(motion="still")]))
