"""The `shapes` dataset: procedural videos and images of coloured shapes with exact ground truth.

Every sample is a pure function of (split, seed). A caption from a small grammar comes with the
ground-truth attributes (JSON-serialisable), so ShapesBench (eval.py) can check a generated clip
against what was asked. A few (shape, colour) and (colour, motion) combinations never appear in
train or val: only the benchmark's held_out category asks for them (compositional generalisation).

attrs = {kind: "image"|"video", layout: "single"|"pair"|"relation"|"count", height, width, frames,
         relation: None|"left_of"|"right_of"|"above"|"below" (objects[0] relative to objects[1]),
         count: None|n, objects: [{shape, colour, motion, size,
                                   centroids: [[x, y]] * frames, bboxes: [[x0, y0, x1, y1]] * frames}]}
Coordinates are in pixels, x to the right, y down; pixel (i, j) covers [j, j+1) x [i, i+1); boxes
are whole pixels.
"""
import math
import os

import numpy as np

PALETTE = {  # corners of the RGB cube: every pair is >= 255 apart, so nearest-colour is unambiguous
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
}
BACKGROUND = (16, 16, 16)
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "still")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
RELATIONS = {"left_of": "to the left of", "right_of": "to the right of", "above": "above", "below": "below"}
NUMBERS = {2: "two", 3: "three", 4: "four"}
LAYOUTS = {"image": ("single", "pair", "relation", "count"), "video": ("single", "pair")}

HELD_OUT_SHAPE_COLOUR = (("circle", "green"), ("square", "magenta"), ("triangle", "cyan"))
HELD_OUT_COLOUR_MOTION = (("red", "up"), ("blue", "left"), ("yellow", "down"))
_SEEN_SHAPE_COLOUR = [(s, c) for s in SHAPES for c in PALETTE if (s, c) not in HELD_OUT_SHAPE_COLOUR]

CATEGORIES = ("single_object", "two_objects", "counting", "colours", "position", "colour_attribution",
              "motion", "consistency", "smoothness", "i2v", "held_out")
# category -> (kind, layout) of the test samples it asks for; None draws the layout from the seed
_BENCH_LAYOUT = {
    "single_object": ("image", "single"), "two_objects": ("image", "pair"),
    "counting": ("image", "count"), "colours": ("image", "single"),
    "position": ("image", "relation"), "colour_attribution": ("image", "pair"),
    "motion": ("video", "single"), "consistency": ("video", None),
    "smoothness": ("video", None), "i2v": ("video", None),
}


def split_seeds(split):
    """The generator seeds of a split; train, val and test ranges are disjoint."""
    start, stop = {"train": (0, 10**8), "val": (10**8, 10**8 + 10**6),
                   "test": (10**8 + 10**6, 10**8 + 2 * 10**6)}[split]
    return range(start, stop)


def _draw_object(rng, kind, avoid_colours=()):
    """(shape, colour, motion) of one object, never a held-out combination."""
    pairs = [p for p in _SEEN_SHAPE_COLOUR if p[1] not in avoid_colours]
    shape, colour = pairs[rng.integers(len(pairs))]
    if kind == "image":
        return shape, colour, "still"
    motions = [m for m in MOTIONS if (colour, m) not in HELD_OUT_COLOUR_MOTION]
    return shape, colour, motions[rng.integers(len(motions))]


def _draw_held_out_object(rng, kind):
    """One object using a held-out combination: (shape, colour) for images, (colour, motion) for videos."""
    if kind == "image":
        shape, colour = HELD_OUT_SHAPE_COLOUR[rng.integers(len(HELD_OUT_SHAPE_COLOUR))]
        return shape, colour, "still"
    colour, motion = HELD_OUT_COLOUR_MOTION[rng.integers(len(HELD_OUT_COLOUR_MOTION))]
    shapes = [s for s, c in _SEEN_SHAPE_COLOUR if c == colour]
    return shapes[rng.integers(len(shapes))], colour, motion


def _draw_specs(rng, kind, layout, held_out):
    """The objects of a layout as (shape, colour, motion); several objects get distinct colours."""
    if held_out:
        return [_draw_held_out_object(rng, kind)]
    if layout == "count":
        return [_draw_object(rng, kind)] * int(rng.integers(2, 5))
    specs = [_draw_object(rng, kind)]
    if layout != "single":
        specs.append(_draw_object(rng, kind, avoid_colours=(specs[0][1],)))
    return specs


def _swept_box(rng, motion, height, width):
    """Size, travel and the box an object sweeps over the clip, placed at random inside the canvas."""
    side = min(height, width)
    size = int(rng.integers(round(0.25 * side), round(0.375 * side) + 1))
    dx, dy = DIRECTIONS[motion]
    # a moving object crosses 30-50% of the canvas: clearly visible, yet the object stays inside
    travel = round(rng.uniform(0.3, 0.5) * (width if dx else height)) if motion != "still" else 0
    box_w, box_h = size + abs(dx) * travel, size + abs(dy) * travel
    x, y = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
    return size, travel, (x, y, x + box_w, y + box_h)


def _apart(a, b, gap):
    """Whether two boxes are at least `gap` pixels apart along some axis."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _in_relation(relation, a, b, gap):
    """Whether box a is clearly `relation` box b: separated on that axis, and that axis dominates."""
    offset_x, offset_y = (b[0] + b[2] - a[0] - a[2]) / 2, (b[1] + b[3] - a[1] - a[3]) / 2
    along, across, ends = {"left_of": (offset_x, offset_y, a[2] + gap <= b[0]),
                           "right_of": (-offset_x, offset_y, b[2] + gap <= a[0]),
                           "above": (offset_y, offset_x, a[3] + gap <= b[1]),
                           "below": (-offset_y, offset_x, b[3] + gap <= a[1])}[relation]
    return ends and along > abs(across)


def _fits(box, placed, relation, gap):
    """Whether a new swept box keeps clear of the placed ones (and, second of a relation, obeys it)."""
    apart = all(_apart(box, other, gap) for other in placed)
    return apart and (relation is None or not placed or _in_relation(relation, placed[0], box, gap))


def _place(rng, specs, height, width, relation):
    """(size, travel, swept box) per object; swept boxes never touch, so objects never merge."""
    gap = max(2, min(height, width) // 16)  # background between objects survives a mild blur
    for _ in range(1000):
        placed = []
        for _, _, motion in specs:  # one object at a time; start over if one finds no room
            tries = (_swept_box(rng, motion, height, width) for _ in range(50))
            found = next((p for p in tries if _fits(p[2], [q[2] for q in placed], relation, gap)), None)
            if found is None:
                break
            placed.append(found)
        if len(placed) == len(specs):
            return placed
    raise RuntimeError(f"could not place {len(specs)} objects on a {height}x{width} canvas")


def _object_track(shape, colour, motion, size, travel, box, frames):
    """Ground truth of one object: per-frame bbox and centroid along its straight path.

    Boxes sit on whole pixels, so a shape looks the same in every frame (only its place changes)."""
    dx, dy = DIRECTIONS[motion]
    start_x = box[2] - size if dx < 0 else box[0]
    start_y = box[3] - size if dy < 0 else box[1]
    bboxes, centroids = [], []
    for t in range(frames):
        step = round(travel * t / max(frames - 1, 1))
        x, y = start_x + dx * step, start_y + dy * step
        bboxes.append([x, y, x + size, y + size])
        down = 2 / 3 if shape == "triangle" else 1 / 2  # the triangle points up: centroid 2/3 of the way down
        centroids.append([round(x + size / 2, 2), round(y + size * down, 2)])
    return dict(shape=shape, colour=colour, motion=motion, size=size, centroids=centroids, bboxes=bboxes)


def draw_attrs(seed, split="train", height=32, width=32, frames=9, kind="video", layout=None, held_out=False):
    """Ground-truth attributes of sample `seed` (an index into split_seeds(split)), without rendering.

    layout forces one of LAYOUTS[kind]; held_out=True (test split only) draws a single object that
    uses a held-out combination."""
    if held_out and split != "test":
        raise ValueError("held-out combinations belong to the test split only")
    rng = np.random.default_rng(split_seeds(split)[seed])
    drawn_layout = LAYOUTS[kind][rng.integers(len(LAYOUTS[kind]))]
    layout = "single" if held_out else layout or drawn_layout
    frames = 1 if kind == "image" else frames
    specs = _draw_specs(rng, kind, layout, held_out)
    relation = list(RELATIONS)[rng.integers(len(RELATIONS))] if layout == "relation" else None
    placed = _place(rng, specs, height, width, relation)
    objects = [_object_track(*spec, *where, frames) for spec, where in zip(specs, placed)]
    return dict(kind=kind, layout=layout, height=height, width=width, frames=frames, relation=relation,
                count=len(specs) if layout == "count" else None, objects=objects)


def _inside(shape, u, v):
    """Mask of points (u, v), in units of the object's box, that the shape covers."""
    if shape == "square":
        return (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    if shape == "circle":
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.25
    return (v >= 0) & (v < 1) & (np.abs(u - 0.5) <= v / 2)  # apex at the top, base at the bottom


def render(attrs):
    """The clip described by attrs: uint8 (T, H, W, 3), crisp (a pixel is inside if its centre is)."""
    video = np.empty((attrs["frames"], attrs["height"], attrs["width"], 3), np.uint8)
    video[:] = BACKGROUND
    ys, xs = np.mgrid[0:attrs["height"], 0:attrs["width"]] + 0.5  # pixel centres
    for obj in attrs["objects"]:
        for t, (x0, y0, x1, y1) in enumerate(obj["bboxes"]):
            inside = _inside(obj["shape"], (xs - x0) / (x1 - x0), (ys - y0) / (y1 - y0))
            video[t][inside] = PALETTE[obj["colour"]]
    return video


def caption(attrs):
    """The sentence for attrs, e.g. "a red circle moves left and a blue square stays still"."""
    first = attrs["objects"][0]
    if attrs["layout"] == "count":
        return f"{NUMBERS[attrs['count']]} {first['colour']} {first['shape']}s"
    phrases = [f"a {o['colour']} {o['shape']}" for o in attrs["objects"]]
    if attrs["kind"] == "video":
        phrases = [p + (" stays still" if o["motion"] == "still" else f" moves {o['motion']}")
                   for p, o in zip(phrases, attrs["objects"])]
    if attrs["layout"] == "relation":
        return f"{phrases[0]} {RELATIONS[attrs['relation']]} {phrases[1]}"
    return " and ".join(phrases)


def make_sample(seed, split="train", height=32, width=32, frames=9, kind="video", layout=None,
                held_out=False):
    """One sample: dict(video=uint8 (T, H, W, 3), caption=str, attrs=dict); images have T = 1.

    seed indexes split_seeds(split), so the same seed in two splits gives unrelated samples."""
    attrs = draw_attrs(seed, split, height, width, frames, kind, layout, held_out)
    return dict(video=render(attrs), caption=caption(attrs), attrs=attrs)


class ShapesDataset:
    """Samples of one split by index, a fraction `image_fraction` of them images, the rest videos."""

    def __init__(self, split="train", height=32, width=32, frames=9, image_fraction=0.5, length=None):
        self.split, self.height, self.width, self.frames = split, height, width, frames
        self.image_fraction = image_fraction
        self.length = len(split_seeds(split)) if length is None else length

    def __len__(self):
        return self.length

    def kind(self, i):
        """Kind of sample i, "image" or "video": images spread evenly, image_fraction of any long run."""
        f = self.image_fraction
        return "image" if math.floor((i + 1) * f) > math.floor(i * f) else "video"

    def __getitem__(self, i):
        if not 0 <= i < self.length:
            raise IndexError(i)
        return make_sample(i, self.split, self.height, self.width, self.frames, self.kind(i))

    def __iter__(self):
        return (self[i] for i in range(self.length))


def _bench_request(category, j):
    """(kind, layout, scored_as) of the j-th prompt of a category."""
    if category == "held_out":  # alternate unseen (shape, colour) images and unseen (colour, motion) videos
        return ("image", None, "single_object") if j % 2 == 0 else ("video", None, "motion")
    return (*_BENCH_LAYOUT[category], category)


def benchmark_prompts(height=32, width=32, frames=9, n_per_category=30):
    """The fixed ShapesBench prompt list, n_per_category prompts for each of CATEGORIES.

    Each prompt: dict(category, scored_as (the category whose check applies; differs for held_out),
    caption, kind, attrs (ground truth to check against), video (ground-truth clip; for i2v, video[0]
    is the given image), seed). Each category reads its own block of test seeds, so a larger
    n_per_category only appends prompts."""
    prompts = []
    for block, category in enumerate(CATEGORIES):
        kept = []
        for seed in range(block * 10_000, (block + 1) * 10_000):
            if len(kept) == n_per_category:
                break
            kind, layout, scored_as = _bench_request(category, len(kept))
            attrs = draw_attrs(seed, "test", height, width, frames, kind, layout, category == "held_out")
            if category == "colour_attribution" and len({o["shape"] for o in attrs["objects"]}) < 2:
                continue  # two distinct shapes, so a swapped colour binding is caught
            kept.append(dict(category=category, scored_as=scored_as, caption=caption(attrs), kind=kind,
                             attrs=attrs, video=render(attrs), seed=seed))
        prompts += kept
    return prompts


def find_image(caption_text, height=32, width=32, tries=20_000):
    """The first val-split image whose caption is caption_text (e.g. "a red circle"), with its
    object near the centre so that any motion can follow; None if there is none."""
    for held_out, split in ((False, "val"), (True, "test")):  # held-out pairs live in test only
        for seed in range(tries):
            attrs = draw_attrs(seed, split, height, width, kind="image", layout="single", held_out=held_out)
            x, y = attrs["objects"][0]["centroids"][0]
            central = abs(x / width - 0.5) < 0.15 and abs(y / height - 0.5) < 0.15
            if central and caption(attrs) == caption_text:
                return render(attrs)[0]
    return None



def write_image(caption_text, out, height=32, width=32):
    """Save find_image(caption_text) as the PNG `out`: a first frame for image-to-video. An unknown
    caption or an existing file stops with one message; nothing is overwritten."""
    from PIL import Image
    if os.path.exists(out):
        raise SystemExit(f"error: {out} exists: pass another --out, or delete it first")
    if not out.lower().endswith(".png"):  # lossy formats would change the colours the model reads
        raise SystemExit(f"error: --out={out}: write a .png (lossless), e.g. --out=first.png")
    image = find_image(caption_text, height, width)
    if image is None:
        raise SystemExit(f"error: no shapes image reads {caption_text!r}: use 'a <colour> <shape>' with "
                         f"colour one of {', '.join(PALETTE)} and shape one of {', '.join(SHAPES)}")
    try:
        Image.fromarray(image).save(out)
    except OSError as e:  # a folder that does not exist, no permission
        raise SystemExit(f"error: cannot write {out}: {e}")
    print(f"wrote {out} ({width}x{height}): {caption_text}")


if __name__ == "__main__":
    # python data/shapes.py --caption="a red circle" --out=first.png
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from configurator import configure
    config = configure(dict(caption="a red circle", out="first.png", height=32, width=32))
    write_image(config["caption"], config["out"], config["height"], config["width"])
