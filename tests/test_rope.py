"""MM-RoPE (sec. 3.2): positions, frequency allocation, and the invariances they must give."""
import math

import pytest
import torch

from rope import KINDS, apply_rope, frequency_axes, rope_cos_sin, rope_positions


def reference_rope_1d(x, base=10000.0):
    """Textbook 1D RoPE in the rotate-half layout, written independently of rope.py."""
    L, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(L, dtype=torch.float64)[:, None] * inv[None]  # (L, d/2)
    cos, sin = ang.cos().float(), ang.sin().float()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def video_ids(text_len, F, h, w):
    """frame/row/col ids of text_len text tokens followed by an F x h x w clip."""
    f, r, c = torch.meshgrid(torch.arange(F), torch.arange(h), torch.arange(w), indexing="ij")
    frame = torch.cat([torch.full((text_len,), -1), f.flatten()])
    row = torch.cat([torch.zeros(text_len, dtype=torch.long), r.flatten()])
    col = torch.cat([torch.zeros(text_len, dtype=torch.long), c.flatten()])
    return frame, row, col


def rotated(x, frame, row, col, kind, scales=(4, 8, 8)):
    pos = rope_positions(frame, row, col, kind, scales)
    cos, sin = rope_cos_sin(pos[None], x.shape[-1], kind)
    return apply_rope(x, cos, sin)


@pytest.mark.parametrize("kind", KINDS)
def test_text_only_sequence_is_exactly_1d_rope(kind):
    L, d = 37, 64
    x = torch.randn(1, 2, L, d)
    frame = torch.full((L,), -1)
    zeros = torch.zeros(L, dtype=torch.long)
    torch.testing.assert_close(rotated(x, frame, zeros, zeros, kind), reference_rope_1d(x),
                               atol=1e-5, rtol=1e-5)


def test_text_positions_skip_left_padding():
    frame = torch.tensor([-2, -2, -1, -1, -1, 0, 0])
    row = torch.tensor([0, 0, 0, 0, 0, 0, 0])
    col = torch.tensor([0, 0, 0, 0, 0, 0, 1])
    pos = rope_positions(frame, row, col, "mmrope", (2, 3, 5))
    assert pos[:, 2:5].tolist() == [[0, 1, 2]] * 3  # text: t = h = w = index without padding
    assert pos[:, 5].tolist() == [3, 3, 3]          # o = 3: the first visual token's index
    assert pos[:, 6].tolist() == [3, 3, 3 + 5]      # next column: w advances by s_w


def test_each_row_of_a_batch_has_its_own_offset():
    """o is per sequence: a row's positions do not depend on the other rows of its batch (the
    unconditional rows of guidance, without text, sit in the same batch as the conditional ones)."""
    from tokenizer import collate, encode_text, layout
    rows = [layout(encode_text("a red circle"), 2, 2, 2, 20), layout(encode_text("a blue"), 2, 2, 2, 20),
            layout(None, 2, 2, 2, 20)]
    b = collate(rows)
    pos = rope_positions(b["frame"], b["row"], b["col"], "mmrope", (4, 4, 4))
    for i, r in enumerate(rows):
        assert torch.equal(pos[i], rope_positions(r["frame"], r["row"], r["col"], "mmrope", (4, 4, 4)))
    first_visual = (b["frame"] >= 0).int().argmax(-1)
    assert pos[torch.arange(3), 0, first_visual].tolist()[2] == 0  # no text: the video starts at 0


def test_visual_positions_are_offset_and_scaled():
    frame, row, col = video_ids(text_len=5, F=2, h=3, w=3)
    pos = rope_positions(frame, row, col, "mmrope", (2, 3, 5))  # a different scale per axis
    # the token at frame 1, row 2, column 1 (index 5 + 9 + 7)
    assert pos[:, 5 + 9 + 7].tolist() == [5 + 2 * 1, 5 + 3 * 2, 5 + 5 * 1]
    unscaled = rope_positions(frame, row, col, "mmrope", (1, 1, 1))
    assert unscaled[:, 5 + 9 + 7].tolist() == [5 + 1, 5 + 2, 5 + 1]
    assert (rope_positions(frame, row, col, "1d") == torch.arange(len(frame))).all()


@pytest.mark.parametrize("kind", ["mrope", "mmrope"])
@pytest.mark.parametrize("axis", ["t", "h", "w"])
def test_visual_scores_invariant_to_shifting_the_clip(kind, axis):
    """Shifting a whole clip in t, h or w leaves every visual q.k score unchanged:
    the score depends only on (dt, dh, dw)."""
    torch.manual_seed(0)
    frame, row, col = video_ids(text_len=0, F=3, h=4, w=4)
    L, d = len(frame), 64
    q, k = torch.randn(1, 1, L, d), torch.randn(1, 1, L, d)

    def scores(frame, row, col):
        return rotated(q, frame, row, col, kind) @ rotated(k, frame, row, col, kind).transpose(-1, -2)

    shifted = dict(t=(frame + 3, row, col), h=(frame, row + 5, col), w=(frame, row, col + 7))[axis]
    base = scores(frame, row, col)
    torch.testing.assert_close(scores(*shifted), base, atol=2e-4, rtol=1e-4)
    # and the score does depend on the relative position: moving one token changes its scores
    moved = [t.clone() for t in (frame, row, col)]
    moved["thw".index(axis)][0] += 1
    assert not torch.allclose(scores(*moved)[..., 0, 1:], base[..., 0, 1:], atol=1e-3)


def test_mmrope_allocation_is_distributed():
    axes = frequency_axes(128, "mmrope")
    assert "".join("thw"[a] for a in axes[:16]) == "tttthhwwhhwwhhww"
    assert (axes.view(4, 16) == axes[:16]).all()  # the same block of 16 everywhere
    assert torch.bincount(axes, minlength=3).tolist() == [16, 24, 24]
    n = len(axes)
    for a in range(3):  # every axis spans the spectrum: a high and a low frequency
        where = (axes == a).nonzero().flatten()
        assert where.min() < 16 and where.max() >= n - 16


def test_mrope_allocation_is_contiguous():
    axes = frequency_axes(128, "mrope")
    assert torch.bincount(axes, minlength=3).tolist() == [16, 24, 24]
    assert (axes.diff() >= 0).all()  # t on the highest frequencies, w only on the slowest
    assert (axes[-24:] == 2).all()


@pytest.mark.parametrize("kind,axes", [("mmrope", "tttthhwwhhwwhhww" * 2),
                                       ("mrope", "t" * 8 + "h" * 12 + "w" * 12)])
def test_angle_of_each_frequency_follows_its_axis(kind, axes):
    d, base = 64, 10000.0
    pos = torch.tensor([[[7], [11], [13]]])  # one token, (t, h, w) = (7, 11, 13)
    cos, _ = rope_cos_sin(pos, d, kind, base)
    for i, axis in enumerate(axes):
        theta = base ** (-2 * i / d)
        expected = math.cos(dict(t=7, h=11, w=13)[axis] * theta)
        assert abs(cos[0, 0, i].item() - expected) < 1e-5
        assert cos[0, 0, i] == cos[0, 0, i + d // 2]  # rotate-half pairs share an angle


def test_cos_sin_are_fp32_under_autocast():
    pos = torch.arange(3000).repeat(3, 1)[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos, sin = rope_cos_sin(pos, 64, "mmrope")
    assert cos.dtype == sin.dtype == torch.float32


def test_bad_input_is_a_clear_value_error():
    with pytest.raises(ValueError, match="multiple of 32"):
        frequency_axes(48, "mmrope")
    with pytest.raises(ValueError, match="unknown rope kind"):
        frequency_axes(64, "3d")
    with pytest.raises(ValueError, match="same shape"):
        rope_positions(torch.zeros(4, dtype=torch.long), torch.zeros(5, dtype=torch.long),
                       torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[..., 3, L\]"):
        rope_cos_sin(torch.zeros(2, 5, dtype=torch.long), 64)
