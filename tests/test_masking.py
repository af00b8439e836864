"""The frame-causal attention mask, AR-DF training masks and sampling schedules (masking.py)."""
import pytest
import torch
import torch.nn.functional as F

from masking import (MASK_KINDS, attention_mask, diffusion_forcing_mask, frame_layout, history_mask,
                     mask_ratio, num_masked_after, random_mask, training_mask, tube_mask)
from conftest import needs_compiler


def example_frame_ids():
    # 2 pads, 3 text tokens, then 3 frames of 4 visual tokens
    return torch.tensor([-2, -2, -1, -1, -1] + [0] * 4 + [1] * 4 + [2] * 4)


def rule(frame_ids):
    """The frame-causal rule written out as loops: q may see k iff k <= q or both in the same frame;
    padding is never seen (a pad query sees only itself)."""
    L = len(frame_ids)
    m = torch.zeros(L, L, dtype=torch.bool)
    for q in range(L):
        for k in range(L):
            fq, fk = int(frame_ids[q]), int(frame_ids[k])
            if q == k:
                m[q, k] = True
            elif fk != -2 and (k <= q or (fq == fk and fq >= 0)):
                m[q, k] = True
    return m


def test_dense_mask_follows_the_rule():
    f = example_frame_ids()
    m = attention_mask(f)
    assert torch.equal(m, rule(f))
    text, f0, f1, f2 = slice(2, 5), slice(5, 9), slice(9, 13), slice(13, 17)
    assert torch.equal(m[text, text], torch.ones(3, 3).tril().bool())    # text causal
    for fr in (f0, f1, f2):
        assert m[fr, fr].all()                                             # frame bidirectional
        assert m[fr, text].all()                                           # sees the prompt
    assert m[f1, f0].all() and m[f2, f0].all() and m[f2, f1].all()       # earlier frames seen
    assert not m[f0, f1].any() and not m[f0, f2].any() and not m[f1, f2].any()  # never later
    assert not m[2:, :2].any()                                             # padding never seen


def test_dense_mask_rows_and_batches():
    f = example_frame_ids()
    full = attention_mask(f)
    rows = torch.arange(9, 13)
    assert torch.equal(attention_mask(f, rows), full[rows])
    batch = torch.stack([f, f.roll(-2)])
    assert attention_mask(batch).shape == (2, 17, 17)
    assert torch.equal(attention_mask(batch)[1], rule(batch[1]))


@needs_compiler
def test_block_mask_rule_equals_dense_mask():
    from torch.nn.attention.flex_attention import create_mask
    import masking
    f = torch.stack([example_frame_ids(), example_frame_ids().roll(-2)])

    def mask_mod(b, h, q, k):
        return masking.may_attend(q, k, f[b, q], f[b, k])

    dense = create_mask(mask_mod, 2, None, 17, 17, device="cpu")[:, 0]
    assert torch.equal(dense, attention_mask(f))


@needs_compiler
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_block_mask_is_the_dense_mask_block_by_block():
    """flex_block_mask on a sequence of 5 blocks: the blocks it computes are exactly those where
    the dense mask lets some query see some key (later frames' blocks skipped), and attention
    through it equals SDPA with the dense mask (a transposed rule would not)."""
    from torch.nn.attention.flex_attention import flex_attention
    import masking
    frames = [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    f = torch.tensor([[-2, -2, -1, -1] + frames, [-1] * 4 + frames])  # L = 20
    dense = attention_mask(f)
    block = masking.flex_block_mask(f, block_size=4)
    any_allowed = dense.view(2, 5, 4, 5, 4).any(4).any(2)  # (B, query block, key block)
    assert torch.equal(block.to_dense()[:, 0].bool(), any_allowed)
    assert not any_allowed.all()  # some blocks are skipped
    q, k, v = torch.randn(3, 2, 1, 20, 8, generator=torch.Generator().manual_seed(0)).unbind(0)
    torch.testing.assert_close(flex_attention(q, k, v, block_mask=block),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=dense[:, None]))


def test_frame_layout_describes_every_row_or_refuses():
    """FrameLayout gives the whole batch one (text_len, n): rows that differ only in how much of
    the prompt is padding share it, but a row laid out otherwise (more prompt slots, fewer
    frames) is refused, never attended with the first row's layout."""
    a = torch.tensor([-2, -1, -1] + [0] * 4 + [1] * 4 + [2] * 4)  # 3 prompt slots, 3 frames of 4
    padded = torch.tensor([-2, -2, -1] + [0] * 4 + [1] * 4 + [2] * 4)
    layout = frame_layout(torch.stack([a, padded]))
    assert (layout.text_len, layout.n) == (3, 4)
    assert torch.equal(layout.key_bias < 0, torch.stack([a, padded]) == -2)
    b = torch.tensor([-2] + [-1] * 6 + [0] * 4 + [1] * 4)  # same length: 7 prompt slots, 2 frames
    with pytest.raises(ValueError, match="whole frames"):
        frame_layout(torch.stack([a, b]))


def test_bad_frame_ids():
    with pytest.raises(ValueError, match="frame_ids"):
        attention_mask(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="frame_ids"):
        attention_mask(torch.zeros(5))


def test_mask_ratio_floor_holds_about_half_the_samples():
    rho = mask_ratio(20000, torch.Generator().manual_seed(0), floor=0.7)
    assert rho.min() == 0.7 and rho.max() <= 1.0
    at_floor = (rho == 0.7).float().mean().item()
    assert 0.47 < at_floor < 0.54  # P(cos(pi u / 2) < 0.7) = 1 - 2 acos(0.7)/pi = 0.506


def test_random_masks_hide_the_drawn_ratio():
    """The random baseline hides rho of the tokens (not 1 - rho), so the mask ablation compares
    tasks of the same difficulty."""
    m = random_mask(torch.full((64,), 0.8), 4, 256, torch.Generator().manual_seed(0))
    assert abs(m.float().mean().item() - 0.8) < 0.01


@pytest.mark.parametrize("kind", ["tube", "random", "diffusion_forcing"])
def test_every_mask_kind_takes_the_configured_floor(kind):
    """mask_floor is a setting (train.py --mask_floor): at 0.5, the fewest masked tokens a frame is
    half of it, and about a third of the draws sit there (P(cos(pi u / 2) < 0.5) = 1/3)."""
    counts = training_mask(kind, 1000, 2, 100, torch.Generator().manual_seed(0), floor=0.5).sum(-1)
    if kind == "random":  # i.i.d. tokens: the mean follows rho, E = 0.5 / 3 + 2 sin(pi / 3) / pi
        assert abs(counts.float().mean().item() / 100 - 0.718) < 0.015  # 0.809 at floor 0.7
        return
    assert counts.min() == 50 and 0.28 < (counts == 50).float().mean().item() < 0.39


def test_tube_mask_same_on_every_frame_with_exact_count():
    g = torch.Generator().manual_seed(1)
    rho = torch.tensor([0.7, 0.93, 1.0, 0.001])
    m = tube_mask(rho, num_frames=5, n=64, generator=g)
    assert m.shape == (4, 5, 64)
    assert (m == m[:, :1]).all()  # identical on every frame, frame 0 included
    assert m[:, 0].sum(-1).tolist() == [round(0.7 * 64), round(0.93 * 64), 64, 1]


def test_training_mask_gives_each_kind_its_own_mask():
    """training_mask (train.py --mask_kind) hands each kind its own mask: the tube repeats one
    spatial pattern on every frame, the ablation's two baselines do not (a mix-up would make the
    ablation compare the tube with itself)."""
    for kind in MASK_KINDS:
        m = training_mask(kind, 16, 3, 64, torch.Generator().manual_seed(0))
        assert m.shape == (16, 3, 64) and m.dtype == torch.bool
        assert bool((m == m[:, :1]).all()) == (kind == "tube"), kind


def test_diffusion_forcing_masks_each_frame_independently():
    """Diffusion forcing draws each frame's positions on their own, not only its count: frames
    that shared one random order would give nested masks (the smaller inside the larger)."""
    df = diffusion_forcing_mask(64, 2, 64, torch.Generator().manual_seed(0))
    a, b = df[:, 0], df[:, 1]
    nested = ((a & ~b).sum(-1) == 0) | ((b & ~a).sum(-1) == 0)
    assert nested.float().mean() < 0.5  # 0.17 here: only where a frame's rho rounds to all 64


def test_masks_are_reproducible_from_the_generator():
    def draw(seed, kind):
        return training_mask(kind, 8, 3, 64, torch.Generator().manual_seed(seed))
    for kind in ("tube", "random", "diffusion_forcing"):
        assert torch.equal(draw(3, kind), draw(3, kind))
        assert not torch.equal(draw(3, kind), draw(4, kind))


def test_baselines_differ_across_frames():
    g = torch.Generator().manual_seed(0)
    rnd = random_mask(torch.full((16,), 0.7), 3, 64, g)
    assert not (rnd == rnd[:, :1]).all()
    df = diffusion_forcing_mask(16, 3, 64, g)
    counts = df.sum(-1)  # an independent ratio per frame
    assert (counts != counts[:, :1]).any()
    with pytest.raises(ValueError, match="unknown mask kind"):
        training_mask("blocky", 1, 1, 4, g)


@pytest.mark.parametrize("steps", [1, 2, 8, 50])
def test_cosine_schedule_decides_something_every_step_and_everything_at_the_end(steps):
    n, masked = 64, 64
    for s in range(steps):
        after = num_masked_after(s, steps, n, masked)
        assert 0 <= after < masked
        masked = after
    assert masked == 0


def test_cosine_schedule_values():
    # 64 * cos(pi/2 * s/8) for s = 1..7, floored: the cosine, not a linear ramp (56, 48, ...)
    masked, after = 64, []
    for s in range(8):
        masked = num_masked_after(s, 8, 64, masked)
        after.append(masked)
    assert after == [62, 59, 53, 45, 35, 24, 12, 0]
    masked, after = 4, []  # more steps than tokens: one token a step, then done
    for s in range(8):
        masked = num_masked_after(s, 8, 4, masked)
        after.append(masked)
    assert after == [3, 2, 1, 0, 0, 0, 0, 0]


def test_history_mask_is_evenly_spaced():
    m = history_mask(64, 0.7)
    assert m.sum() == round(0.7 * 64)
    gaps = m.nonzero().flatten().diff()
    assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1
    assert history_mask(64, 0.0).sum() == 0 and history_mask(64, 1.0).all()


@pytest.mark.parametrize("n,ratio", [(64, 0.7), (16, 0.5), (100, 0.3), (64, 0.2), (16, 0.9)])
def test_history_mask_spreads_over_the_whole_frame(n, ratio):
    """Evenly spaced over the frame, not a block at its start (which has gaps of 1 too): each
    quarter of the frame holds a quarter of the masked positions, give or take one."""
    m = history_mask(n, ratio)
    per_quarter = m.view(4, n // 4).sum(-1).float()
    assert (per_quarter - m.sum() / 4).abs().max() <= 1
