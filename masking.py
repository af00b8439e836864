"""
Masks of Lumos-1: who may attend to whom, which tokens are hidden in training, and the
schedules of AR-DF sampling.

- Attention (sec. 3.1): intra-frame bidirectional, inter-frame causal; text causal.
- Training (AR-DF, sec. 3.3): temporal tube masking, and the two baselines of the ablation.
- Inference (AR-DF, sec. 3.3): the cosine unmasking schedule and the history mask.

Frame ids (tokenizer.py): f >= 0 for visual tokens of latent frame f, -1 for text and special
tokens, -2 for padding.
"""
import math
from typing import NamedTuple

import torch

from tokenizer import PAD_FRAME, TEXT_FRAME


# -----------------------------------------------------------------------------
# attention

def _check_frame_ids(frame_ids):
    if frame_ids.dtype not in (torch.int32, torch.int64) or frame_ids.dim() not in (1, 2):
        raise ValueError(f"frame_ids must be an integer tensor [L] or [B, L], got "
                         f"{frame_ids.dtype} of shape {tuple(frame_ids.shape)}")


def may_attend(q_idx, k_idx, q_frame, k_frame):
    """
    The attention rule, elementwise (shared by the dense mask and the FlexAttention mask_mod):
    k <= q (causal), or both are visual tokens of the same frame (a frame sees all of itself);
    padding keys are never seen, but a padding query sees itself (so its softmax is defined).
    """
    causal = k_idx <= q_idx
    same_frame = (q_frame == k_frame) & (q_frame >= 0)
    return ((causal | same_frame) & (k_frame != PAD_FRAME)) | (q_idx == k_idx)


def attention_mask(frame_ids, query_index=None):
    """
    Dense boolean mask, True where a query may attend a key: [L, L] or [B, L, L] (the
    reference; CPU and tests). frame_ids: [L] or [B, L]. query_index: optional LongTensor [n]
    of the query positions to build rows for (the KV-cached sampler needs only the current
    frame's rows): [..., n, L].
    """
    _check_frame_ids(frame_ids)
    L = frame_ids.shape[-1]
    k_idx = torch.arange(L, device=frame_ids.device)
    q_idx = k_idx if query_index is None else query_index.to(frame_ids.device)
    q_frame = frame_ids[..., q_idx]
    return may_attend(q_idx[:, None], k_idx[None, :], q_frame[..., :, None],
                      frame_ids[..., None, :])


_create_block_mask = None  # torch.compile(create_block_mask), made on first use


def flex_block_mask(frame_ids, block_size=128):
    """
    The same rule as attention_mask, as a FlexAttention BlockMask (the fast path on GPU): blocks
    entirely in the future of a frame are skipped, never computed. frame_ids: [B, L].
    No [L, L] tensor is ever built.
    """
    from torch.nn.attention.flex_attention import create_block_mask
    _check_frame_ids(frame_ids)
    frame_ids = frame_ids if frame_ids.dim() == 2 else frame_ids[None]
    B, L = frame_ids.shape

    def mask_mod(b, h, q_idx, kv_idx):
        return may_attend(q_idx, kv_idx, frame_ids[b, q_idx], frame_ids[b, kv_idx])

    global _create_block_mask
    if _create_block_mask is None:  # compiled: evaluated block by block, never as a [B, L, L] tensor
        _create_block_mask = torch.compile(create_block_mask)
    return _create_block_mask(mask_mod, B, None, L, L, device=frame_ids.device,
                              BLOCK_SIZE=block_size)


class FrameLayout(NamedTuple):
    """
    The same rule as attention_mask, as a layout (model.frame_causal_attention): text_len prompt
    slots, then frames of n tokens each, the same in every row; key_bias [B, L] is 0, or a large
    negative number on padding keys. No mask tensor at all: the prompt attends causally to
    itself, and frame f to everything up to its own end.
    """
    text_len: int
    n: int
    key_bias: torch.Tensor


def frame_layout(frame_ids, pad_bias=-30000.0):
    """FrameLayout of a batch's frame ids [B, L]: every row must have the prompt slots first,
    then whole frames of equal size (tokenizer.layout does); raises ValueError otherwise."""
    _check_frame_ids(frame_ids)
    frame_ids = frame_ids if frame_ids.dim() == 2 else frame_ids[None]
    first = frame_ids[0]
    text_len, n = int((first < 0).sum()), int((first == 0).sum())
    L = frame_ids.shape[1]
    expected = torch.cat([torch.full((text_len,), -1, device=first.device),  # text and padding: -1
                          torch.arange(L - text_len, device=first.device) // max(n, 1)])
    if n == 0 or (L - text_len) % n or not bool((frame_ids.clamp(min=-1) == expected).all()):
        raise ValueError("frame_layout needs every row laid out as prompt slots then whole frames "
                         "of equal size (tokenizer.layout); use attn_impl='sdpa' otherwise")
    key_bias = torch.where(frame_ids == PAD_FRAME, pad_bias, 0.0)
    return FrameLayout(text_len, n, key_bias)


# -----------------------------------------------------------------------------
# AR-DF training masks. Each returns a bool tensor [B, F, N] (True = replaced by MASK and in
# the loss), N = h*w tokens per frame, and draws from an explicit generator (reproducible,
# seeded per rank and step).

def mask_ratio(batch_size, generator, floor=0.7):
    """rho = max(cos(pi*u/2), floor), u ~ U(0,1) per sample: [B]. With floor 0.7, about half
    of the samples sit exactly at the floor (cos(pi*u/2) < 0.7 for u > 0.506)."""
    u = torch.rand(batch_size, generator=generator)
    return torch.cos(math.pi * u / 2).clamp(min=floor)


def _exact_count_mask(rho, n, generator):
    """[..., n] bool with exactly round(rho*n) (at least 1) True per row at random positions."""
    count = (rho * n).round().long().clamp(1, n)  # (...)
    scores = torch.rand(*rho.shape, n, generator=generator)
    ranks = scores.argsort(-1).argsort(-1)  # a random permutation per row
    return ranks < count[..., None]


def tube_mask(rho, num_frames, n, generator):
    """
    AR-DF temporal tube mask (sec. 3.3): one spatial mask per sample with exactly
    round(rho*n) positions, repeated on every frame (frame 0 included). Masked positions line up
    through time, so an earlier frame never shows the answer at a masked spot of a later frame.
    rho: [B]. Returns [B, F, n].
    """
    spatial = _exact_count_mask(rho, n, generator)  # (B, n)
    return spatial[:, None, :].expand(-1, num_frames, -1).contiguous()


def random_mask(rho, num_frames, n, generator):
    """Baseline: i.i.d. per token with probability rho. Later frames can copy the unmasked
    tokens of earlier frames (the frame-wise loss imbalance the paper diagnoses). [B, F, n]."""
    return torch.rand(len(rho), num_frames, n, generator=generator) < rho[:, None, None]


def diffusion_forcing_mask(batch_size, num_frames, n, generator, floor=0.7):
    """Baseline (diffusion forcing): an independent ratio and mask for every frame of every
    sample (so it draws its own ratios, where tube and random masks take one per sample). [B, F, n]."""
    rho = mask_ratio(batch_size * num_frames, generator, floor).view(batch_size, num_frames)
    return _exact_count_mask(rho, n, generator)


MASK_KINDS = ("tube", "random", "diffusion_forcing")


def training_mask(kind, batch_size, num_frames, n, generator, floor=0.7):
    """The [B, F, n] training mask of the given kind: 'tube' (AR-DF), 'random' or 'diffusion_forcing'."""
    if kind == "diffusion_forcing":
        return diffusion_forcing_mask(batch_size, num_frames, n, generator, floor)
    rho = mask_ratio(batch_size, generator, floor)
    if kind == "tube":
        return tube_mask(rho, num_frames, n, generator)
    if kind == "random":
        return random_mask(rho, num_frames, n, generator)
    raise ValueError(f"unknown mask kind {kind!r}; choose one of {MASK_KINDS}")


# -----------------------------------------------------------------------------
# AR-DF inference schedules

def num_masked_after(step, steps, n, num_masked_now):
    """
    MaskGIT cosine schedule: how many of a frame's n tokens stay masked after step `step`
    (0-based) of `steps`: floor(n * cos(pi/2 * (step+1)/steps)), at least 1 (the last step
    decides the rest) and at most num_masked_now - 1 (every step decides something), and 0 after
    the last step. With more steps than tokens the frame is done early: 0 once 1 is left.
    """
    if step >= steps - 1 or num_masked_now <= 1:
        return 0
    keep = math.floor(n * math.cos(math.pi / 2 * (step + 1) / steps))
    return max(1, min(keep, num_masked_now - 1))


def confidence_temperature(step, steps, temperature):
    """The Gumbel temperature on the confidence at step `step` (0-based) of a frame's `steps`:
    linear from near `temperature` to 0 at the last step, and restarted for every frame (the
    official code lets it compound across frames, so it is 0 after frame 0: a bug)."""
    return temperature * (1 - (step + 1) / steps)


def history_mask(n, ratio):
    """
    AR-DF inference (sec. 3.3): which positions of a finished frame are replaced by MASK before
    it enters the KV cache, so the context looks like training context (partially masked).
    round(ratio*n) evenly spaced positions, one pattern for every frame. [n] bool.
    """
    count = round(ratio * n)
    mask = torch.zeros(n, dtype=torch.bool)
    if count > 0:
        mask[torch.linspace(0, n - 1, count).round().long()] = True
    return mask


if __name__ == "__main__":
    # python masking.py: the attention mask of a small layout, as text and (with matplotlib) a PNG
    from configurator import configure
    cfg = configure(dict(text=4, frames=3, tokens_per_frame=4, png="attention_mask.png"))
    frame_ids = torch.tensor([TEXT_FRAME] * cfg["text"]
                             + [f for f in range(cfg["frames"]) for _ in range(cfg["tokens_per_frame"])])
    mask = attention_mask(frame_ids)
    names = ["T"] * cfg["text"] + [str(f) for f in frame_ids[cfg["text"]:].tolist()]
    print("query \\ key  " + " ".join(names))
    for name, row in zip(names, mask.tolist()):
        print(f"{name:>11}  " + " ".join("#" if x else "." for x in row))
    if cfg["png"]:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise SystemExit("matplotlib is not installed (pip install matplotlib): no PNG")
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(mask.numpy(), cmap="Greys", vmin=-0.2, vmax=1.2)
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("key (T = text, n = visual token of frame n)")
        ax.set_ylabel("query")
        ax.set_title("frame-causal attention: dark = may attend", fontsize=9)
        fig.tight_layout()
        fig.savefig(cfg["png"], dpi=120)
        print(f"saved {cfg['png']}")
