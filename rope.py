"""
Rotary position embeddings for mixed text/video sequences: 1D RoPE, M-RoPE and MM-RoPE
(Lumos-1, sec. 3.2).

Every token gets a position triple (t, h, w); every rotary frequency is driven by one of the
three axes. Two separate switches, so the paper's "distribution vs scaling" ablation runs:
- the allocation (`kind`): which axis drives which frequency (frequency_axes);
- the scaling (`scales`): visual positions multiplied by the tokenizer's compression factors
  (rope_positions).

    python rope.py --head_dim=128     # prints the allocation of every kind (and saves a PNG)
"""
import math

import torch

from tokenizer import PAD_FRAME

KINDS = ("1d", "mrope", "mmrope")

# MM-RoPE's block of 16 frequencies (sec. 3.2): t gets 4, h and w get 6 each, interleaved so that
# every axis has high, middle and low frequencies: the full spectrum, for all three axes.
MMROPE_BLOCK = (0, 0, 0, 0, 1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2)


def frequency_axes(head_dim, kind):
    """
    Which axis (0 = t, 1 = h, 2 = w) drives each of the head_dim/2 rotary frequencies,
    highest frequency first. LongTensor [head_dim // 2].
    - "1d": all frequencies read t (text positions set t = h = w, so this is plain 1D RoPE);
    - "mrope" (Qwen2-VL's 3D RoPE, the paper's baseline): contiguous 2:3:3 split, t on the
      highest frequencies, w only on the slowest ones (the imbalance the paper diagnoses); the
      baseline is also unscaled (rope_positions with scales (1, 1, 1): train.py --rope_scaling=False);
    - "mmrope": MMROPE_BLOCK repeated over blocks of 16 consecutive frequencies.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown rope kind {kind!r}; choose one of {KINDS}")
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
    n = head_dim // 2
    if kind == "1d":
        return torch.zeros(n, dtype=torch.long)
    if kind == "mrope":
        if head_dim % 16:
            raise ValueError(f"mrope splits head_dim/2 as 2:3:3, so head_dim must be a multiple "
                             f"of 16, got {head_dim}")
        n_t, n_h = n // 4, 3 * n // 8
        return torch.tensor([0] * n_t + [1] * n_h + [2] * (n - n_t - n_h))
    if head_dim % 32:
        raise ValueError(f"mmrope allocates frequencies in blocks of 16 (head_dim 32), so head_dim "
                         f"must be a multiple of 32, got {head_dim}; use a head_dim such as 32, "
                         f"64 or 128, or rope kind 'mrope'")
    return torch.tensor(MMROPE_BLOCK * (n // 16))


def rope_positions(frame, row, col, kind="mmrope", scales=(1, 1, 1)):
    """
    The (t, h, w) position of every token (sec. 3.2). LongTensor [..., 3, L].

    frame, row, col: LongTensors [..., L]; frame is -1 for text and special tokens, -2 for
    padding, f >= 0 for visual tokens of latent frame f (row r, column c).
    - text: t = h = w = its sequence index (padding not counted): exactly the LLM's 1D RoPE;
    - visual: (o + s_t*f, o + s_h*r, o + s_w*c), o = the sequence index of the first visual
      token, shared by all frames. scales = (s_t, s_h, s_w), the tokenizer's compression, put
      visual tokens on the pixel/frame scale; (1, 1, 1) turns scaling off.
    - kind "1d": every token uses its sequence index on all three axes.
    Padding gets position 0 (it is never attended to).
    """
    if not (frame.shape == row.shape == col.shape):
        raise ValueError(f"frame, row, col must have the same shape, got "
                         f"{tuple(frame.shape)}, {tuple(row.shape)}, {tuple(col.shape)}")
    if kind not in KINDS:
        raise ValueError(f"unknown rope kind {kind!r}; choose one of {KINDS}")
    real = frame != PAD_FRAME
    index = (real.long().cumsum(-1) - 1).clamp(min=0) * real  # sequence index, padding skipped
    pos = index.unsqueeze(-2).repeat_interleave(3, dim=-2)  # (..., 3, L)
    visual = frame >= 0
    if kind != "1d" and visual.any():
        # o: index of the first visual token of each sequence (no visual token: unused)
        o = torch.where(visual, index, index.new_tensor(2**62)).amin(-1, keepdim=True)
        s_t, s_h, s_w = scales
        vis_pos = torch.stack([o + s_t * frame, o + s_h * row, o + s_w * col], dim=-2)
        pos = torch.where(visual.unsqueeze(-2), vis_pos, pos)
    return pos


def rope_cos_sin(pos, head_dim, kind="mmrope", base=10000.0):
    """
    cos and sin for apply_rope, always in fp32 (positions reach thousands; bf16 angles would
    lose the low bits). pos: [..., 3, L] from rope_positions. Returns two fp32 [..., L, head_dim].
    Frequency i has theta_i = base^(-2i/head_dim) and angle pos[axis(i)] * theta_i.
    """
    if pos.shape[-2] != 3:
        raise ValueError(f"positions must have shape [..., 3, L], got {tuple(pos.shape)}")
    axes = frequency_axes(head_dim, kind).to(pos.device)
    theta = base ** (-torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float64)
                     / head_dim)
    with torch.autocast(pos.device.type, enabled=False):
        p = pos.index_select(-2, axes).transpose(-1, -2).double()  # (..., L, head_dim/2)
        angle = (p * theta).float()
        angle = torch.cat([angle, angle], dim=-1)  # rotate-half: pair i = channels i, i + d/2
        return angle.cos(), angle.sin()


def apply_rope(x, cos, sin):
    """Rotate x [B, n_head, L, head_dim] by cos, sin [B or 1, L, head_dim] (rotate-half layout)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
    return (x.float() * cos + rotated.float() * sin).type_as(x)


def allocation_table(head_dim, base=10000.0):
    """Rows (frequency index, rotary period in positions, axis of each kind), for printing."""
    axes = {kind: frequency_axes(head_dim, kind) for kind in KINDS}
    rows = []
    for i in range(head_dim // 2):
        period = 2 * math.pi * base ** (2 * i / head_dim)
        rows.append((i, period, *("thw"[axes[k][i]] for k in KINDS)))
    return rows


def plot_allocation(head_dim, path, base=10000.0):
    """Save the allocation of every kind as a PNG (one coloured strip per kind)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): skipping the PNG")
        return
    colours = {0: "tab:red", 1: "tab:green", 2: "tab:blue"}
    fig, ax = plt.subplots(figsize=(10, 2.2))
    for y, kind in enumerate(KINDS):
        for i, a in enumerate(frequency_axes(head_dim, kind).tolist()):
            ax.add_patch(plt.Rectangle((i, y), 1, 0.8, color=colours[a]))
    ax.set_xlim(0, head_dim // 2)
    ax.set_ylim(-0.2, len(KINDS))
    ax.set_yticks([y + 0.4 for y in range(len(KINDS))], KINDS)
    ax.set_xlabel("frequency index i (high frequency, short period  ->  low frequency, long period)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, ["t", "h", "w"], ncol=3, loc="upper right", bbox_to_anchor=(1, 1.35))
    ax.set_title(f"rotary frequency allocation, head_dim={head_dim}", loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    from configurator import configure
    cfg = configure(dict(head_dim=128, base=10000.0, png="rope_allocation.png"))
    print(f"{'i':>3} {'period':>10}  " + "  ".join(f"{k:>6}" for k in KINDS))
    for i, period, *axes in allocation_table(cfg["head_dim"], cfg["base"]):
        print(f"{i:>3} {period:>10.1f}  " + "  ".join(f"{a:>6}" for a in axes))
    for kind in KINDS:
        counts = torch.bincount(frequency_axes(cfg["head_dim"], kind), minlength=3).tolist()
        print(f"{kind:>6}: t/h/w frequencies = {counts[0]}/{counts[1]}/{counts[2]}")
    if cfg["png"]:
        plot_allocation(cfg["head_dim"], cfg["png"], cfg["base"])
