"""
The Lumos-1 backbone: a Llama-style decoder over one sequence of text and visual tokens
(sec. 3.1), with MM-RoPE (rope.py), the frame-causal mask (masking.py) and the AR-DF loss.

- Training forward: the loss at masked visual positions only, over the visual codes only,
  predicting the token at the same position (no next-token shift). The head covers the visual
  codes only and, by default, runs on the masked rows alone, in chunks (MaskedRowCrossEntropy).
- Sampling forward: only the current frame's tokens, against a static, preallocated KV cache.
"""
import math
from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from masking import FrameLayout, attention_mask, flex_block_mask, frame_layout
from tokenizer import TEXT_FRAME
from rope import apply_rope, rope_cos_sin, rope_positions


@dataclass
class GPTConfig:               # the defaults are the tiny preset (PRESETS below)
    n_layer: int = 6
    n_head: int = 2
    n_kv_head: int = 2           # grouped-query attention: n_head % n_kv_head == 0
    n_embd: int = 128
    ffn_hidden: int = 384        # SwiGLU hidden width
    n_visual: int = 1000         # visual codebook size: the only logits ever used
    visual_offset: int = 516     # token id of visual code 0 (tokenizer.VISUAL_OFFSET)
    rope_kind: str = "mmrope"    # '1d' | 'mrope' | 'mmrope'
    rope_scales: tuple = (4, 4, 4)  # (s_t, s_h, s_w); (1, 1, 1) turns MM-RoPE's scaling off
    rope_base: float = 10000.0
    attn_impl: str = "sdpa"      # 'sdpa' (dense bool mask) | 'flex' (FlexAttention block mask) |
                                 # 'frames' (one unmasked SDPA call per frame: frame_causal_attention)
    loss_impl: str = "chunked"   # 'chunked' (masked rows, in chunks) | 'full' (all rows at once)
    loss_chunk: int = 0          # rows per chunk of the chunked loss; 0: as many as keep one
                                 # chunk's fp32 logits within 256 MB (1024 at 64000 codes)
    grad_checkpoint: bool = False  # recompute each block in backward: activations of one block
    norm_eps: float = 1e-5
    text_head: bool = False      # ours: a next-token head on the prompt, for train.py's text_loss

    @classmethod
    def from_dict(cls, d):
        """The config stored in a checkpoint (asdict form; tuples may come back as lists). A
        setting this code does not know is dropped when it is off (0, False, empty) and is an
        error otherwise: the model would not be the one that was trained."""
        known = {f.name for f in fields(cls)}
        unknown = {k: v for k, v in d.items() if k not in known and v}
        if unknown:
            raise ValueError(f"the checkpoint's model uses settings this code does not have "
                             f"({unknown}): load it with the version of nanolumos that trained it")
        d = {k: v for k, v in d.items() if k in known}
        return cls(**dict(d, rope_scales=tuple(d["rope_scales"])))

    @property
    def vocab_size(self):
        return self.visual_offset + self.n_visual

    def validate(self):
        """Shapes and switches no model can be built with: one ValueError saying which."""
        if self.n_embd % self.n_head or self.n_head % self.n_kv_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) "
                             f"and n_head by n_kv_head ({self.n_kv_head})")
        rope_cos_sin(torch.zeros(3, 1, dtype=torch.long), self.head_dim, self.rope_kind)  # validates
        if self.attn_impl not in ("sdpa", "flex", "frames"):
            raise ValueError(f"attn_impl must be 'sdpa', 'flex' or 'frames', got {self.attn_impl!r}")
        if self.loss_impl not in ("chunked", "full"):
            raise ValueError(f"loss_impl must be 'chunked' or 'full', got {self.loss_impl!r}")

    @property
    def head_dim(self):
        return self.n_embd // self.n_head


# Model shapes. tiny/small for this project's runs; 1b/3b are the paper's sizes (Llama-3.2-like,
# as in the official code), medium (378M in the blocks, 509M with a 64000-code embedding and
# head) is the size at which bench.py measures GPU MFU.
PRESETS = {
    # tiny: head_dim 64, not 4 heads of 32. With head_dim 32 MM-RoPE has a single block of 16
    # frequencies and w's fastest turns only 0.13 rad per column; at 64 the block repeats and w gets
    # a fast one (same parameters and FLOPs; val loss 2.80 vs 3.03 at 500 steps, README).
    # Two KV heads, not one (grouped-query 2:1 left both heads reading the same keys): same speed
    # within noise; val loss 0.06 to 0.10 lower at 1000 steps without the text loss, a tie with it
    # (README).
    "tiny": dict(n_layer=6, n_head=2, n_kv_head=2, n_embd=128, ffn_hidden=384),
    "small": dict(n_layer=12, n_head=12, n_kv_head=4, n_embd=768, ffn_hidden=2048),
    "medium": dict(n_layer=24, n_head=16, n_kv_head=8, n_embd=1024, ffn_hidden=4096),
    "1b": dict(n_layer=16, n_head=32, n_kv_head=8, n_embd=2048, ffn_hidden=8192),
    "3b": dict(n_layer=28, n_head=24, n_kv_head=8, n_embd=3072, ffn_hidden=8192),
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # weight in x's dtype: under bf16 autocast a float32 weight makes rms_norm fall back
        # from its fused kernel (a warning on CUDA)
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class KVCache(nn.Module):
    """Static keys and values of one layer: [B, n_kv_head, max_len, head_dim], written by slot
    index. Fixed shapes, so a compiled sampling step can be captured whole (CUDA graphs)."""

    def __init__(self, batch_size, n_kv_head, max_len, head_dim, dtype, device):
        super().__init__()
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, slots, k, v):
        """Write k, v [B, n_kv_head, n, head_dim] at positions `slots` [n]; return the whole cache."""
        self.k.index_copy_(2, slots, k.to(self.k.dtype))
        self.v.index_copy_(2, slots, v.to(self.v.dtype))
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=False)
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)
        # QK-norm (sec. 3.1): normalise q and k per head before RoPE; keeps bf16 training stable
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.kv_cache = None

    def forward(self, x, cos, sin, mask, slots=None):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).split([self.n_head * self.head_dim,
                                     self.n_kv_head * self.head_dim,
                                     self.n_kv_head * self.head_dim], dim=-1)
        q = self.q_norm(q.view(B, L, self.n_head, self.head_dim)).transpose(1, 2)  # (B, nh, L, hd)
        k = self.k_norm(k.view(B, L, self.n_kv_head, self.head_dim)).transpose(1, 2)  # (B, nkv, L, hd)
        v = v.view(B, L, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, L, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if slots is not None:  # sampling: write this chunk to the cache, attend over the cache
            k, v = self.kv_cache.update(slots, k, v)  # (B, nkv, max_len, hd)
        # mask (GPT.mask_for): a dense [B, L, L] tensor (SDPA), a FrameLayout (one SDPA call per
        # frame) or a FlexAttention BlockMask, one form of the same frame-causal rule
        if isinstance(mask, torch.Tensor):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], enable_gqa=True)
        elif isinstance(mask, FrameLayout):
            y = frame_causal_attention(q, k, v, mask)
        else:
            y = flex_attention(q, k, v, block_mask=mask, enable_gqa=True)
        y = y.transpose(1, 2).reshape(B, L, self.n_head * self.head_dim)  # (B, L, nh*hd)
        return self.proj(y)


class MLP(nn.Module):
    """SwiGLU feed-forward."""

    def __init__(self, cfg):
        super().__init__()
        self.gate_up = nn.Linear(cfg.n_embd, 2 * cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, slots=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, slots)
        return x + self.mlp(self.mlp_norm(x))


def frame_causal_attention(q, k, v, layout):
    """
    Frame-causal attention as 1 + F SDPA calls without a mask tensor, which the fastest (flash)
    kernels take: one causal call for the prompt, then one unmasked call per frame f against
    every token up to the end of frame f. Only the blocks the rule allows are computed. Padding
    keys are pushed out through one extra q.k dimension: q gets a 1 there, k the layout's key bias
    (0, or -30000 on padding; times the softmax scale D**-0.5, still far below any real score).
    The head dimension grows by 8 (flash kernels want multiples of 8).
    q [B, H, L, D], k and v [B, H_kv, L, D]; layout: masking.FrameLayout.
    """
    B, H, L, D = q.shape
    T, n = layout.text_len, layout.n
    q = torch.cat([q, q.new_ones(B, H, L, 1), q.new_zeros(B, H, L, 7)], -1)
    bias = layout.key_bias[:, None, :, None].to(k.dtype).expand(B, k.shape[1], L, 1)
    k = torch.cat([k, bias, k.new_zeros(B, k.shape[1], L, 7)], -1)
    v = F.pad(v, (0, 8))
    sdpa = partial(F.scaled_dot_product_attention, scale=D ** -0.5, enable_gqa=True)
    out = [sdpa(q[:, :, :T], k[:, :, :T], v[:, :, :T], is_causal=True)] if T else []
    for end in range(T + n, L + 1, n):
        out.append(sdpa(q[:, :, end - n:end], k[:, :, :end], v[:, :, :end]))
    return torch.cat(out, 2)[..., :D]


_compiled_flex = None


def flex_attention(q, k, v, **kwargs):
    """FlexAttention, compiled once (eager FlexAttention is a slow reference implementation).
    Inside an already compiled region (GPT.compile_body) it is traced with the rest, on
    contiguous inputs: the inductor CPU lowering mishandles the transposed views (torch 2.13),
    and on the GPU the copy fuses into the RoPE kernel that writes q and k anyway."""
    from torch.nn.attention.flex_attention import flex_attention as flex
    if torch.compiler.is_compiling():
        return flex(q.contiguous(), k.contiguous(), v.contiguous(), **kwargs)
    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex, dynamic=False)
    return _compiled_flex(q, k, v, **kwargs)


def loss_chunk_rows(cfg, budget=256 << 20):
    """Rows per chunk of the chunked loss: cfg.loss_chunk, or (0) as many rows as keep one
    chunk's fp32 logits within `budget` bytes, between 64 and 8192 rows."""
    return cfg.loss_chunk or max(64, min(8192, budget // (4 * cfg.n_visual) // 64 * 64))


class MaskedRowCrossEntropy(torch.autograd.Function):
    """
    Sum of cross-entropies of h @ weight.T against target, computed chunk by chunk, with the
    gradients computed in the same pass: no [rows, V] logits outlive their chunk, in forward or
    backward (the official code keeps full-vocabulary fp32 logits at every position).
    h [M, d], weight [V, d], target [M]. Returns (loss sum, per-row losses [M] without grad).
    """

    @staticmethod
    def forward(ctx, h, weight, target, chunk):
        w = weight.to(h.dtype)
        losses = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device)
        for i in range(0, h.shape[0], chunk):
            hc, tc = h[i:i + chunk], target[i:i + chunk]
            rows = torch.arange(len(tc), device=h.device)
            logits = (hc @ w.t()).float()  # (c, V): the one fp32 buffer of a chunk
            lse = logits.logsumexp(-1)
            losses[i:i + chunk] = lse - logits[rows, tc]
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            probs[rows, tc] -= 1  # softmax - onehot = d loss / d logits
            dlogits = probs.to(h.dtype)
            del logits, probs  # (bf16: frees the fp32 buffer before the two matmuls)
            grad_h[i:i + chunk] = dlogits @ w
            if dlogits.dtype == grad_w.dtype:
                grad_w.addmm_(dlogits.t(), hc)
            else:  # the bf16 product, accumulated in fp32
                grad_w.add_(dlogits.t() @ hc)
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        ctx.mark_non_differentiable(losses)
        return losses.sum(), losses

    @staticmethod
    def backward(ctx, grad_sum, grad_losses):
        if getattr(ctx, "used", False):
            raise RuntimeError("the chunked loss's backward runs once: its saved gradients are "
                               "scaled in place (no retain_graph=True; use loss_impl='full')")
        ctx.used = True
        grad_h, grad_w = ctx.saved_tensors  # scaled in place: no second copy of either
        return grad_h.mul_(grad_sum.to(grad_h.dtype)), grad_w.mul_(grad_sum), None, None


def chunked_losses(h, weight, target, chunk):
    """The per-row cross-entropies of MaskedRowCrossEntropy, forward only (evaluation): no
    gradient buffers, no [rows, V] logits beyond one chunk."""
    w, losses = weight.to(h.dtype), []
    for i in range(0, h.shape[0], chunk):
        logits = (h[i:i + chunk] @ w.t()).float()
        losses.append(logits.logsumexp(-1) - logits.gather(1, target[i:i + chunk, None])[:, 0])
    return torch.cat(losses) if losses else h.new_zeros(0, dtype=torch.float32)


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        # untied head over the visual codes only: the method predicts no text (the optional text
        # loss has its own head, below)
        self.head = nn.Linear(cfg.n_embd, cfg.n_visual, bias=False)
        # optional next-token head over the text and special ids (train.py's text_loss; not the paper's)
        self.text_head = nn.Linear(cfg.n_embd, cfg.visual_offset, bias=False) if cfg.text_head else None
        self._compiled_body = None  # set by compile_body
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # depth-scaled init of the residual projections
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self, embedding=True):
        n = sum(p.numel() for p in self.parameters())
        return n if embedding else n - self.wte.weight.numel()

    def rope(self, frame, row, col):
        """fp32 cos, sin [B, L, head_dim] for the per-token frame/row/col ids [B, L]."""
        c = self.cfg
        pos = rope_positions(frame, row, col, c.rope_kind, c.rope_scales)  # (B, 3, L)
        return rope_cos_sin(pos, c.head_dim, c.rope_kind, c.rope_base)

    def mask_for(self, frame):
        """The frame-causal mask in the form the configured attention takes (Attention.forward)."""
        if self.cfg.attn_impl == "flex":
            return flex_block_mask(frame)
        return frame_layout(frame) if self.cfg.attn_impl == "frames" else attention_mask(frame)

    def hidden(self, idx, cos, sin, mask, slots=None):
        """The transformer body: final-norm hidden states [B, L, d]. Fixed shapes throughout."""
        x = self.wte(idx)  # (B, L, d)
        if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
            # additive once for every layer: SDPA would convert a boolean mask in each call
            dev = x.device.type
            dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, -math.inf)
        for block in self.blocks:
            if self.cfg.grad_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, cos, sin, mask, slots, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, slots)
        return self.norm(x)

    def compile_body(self, **kwargs):
        """
        torch.compile the body (one graph, static shapes: train with fixed-length text). The
        masked-row loss stays eager: its row count changes every step, and its chunked matmuls
        gain nothing from fusion. Training and sampling (forward_cached) both go through it.
        """
        self._compiled_body = torch.compile(self.hidden, fullgraph=True, dynamic=False, **kwargs)
        return self

    def body(self, *args):
        return (self._compiled_body or self.hidden)(*args)

    def forward(self, idx, frame, row, col, targets=None, loss_mask=None, mask=None):
        """
        idx, frame, row, col: [B, L] token ids and per-token frame/row/column ids
        (tokenizer.layout); mask: a precomputed attention mask (built from frame if None).
        Without targets: visual logits [B, L, n_visual].
        With targets [B, L] (clean token ids) and loss_mask [B, L] (True at the MASK inputs):
        the AR-DF loss (sec. 3.3) as a dict: loss_sum (differentiable), count (masked tokens),
        and frame_loss_sum / frame_count [max frame + 1] (the per-frame diagnostic); with the
        text head, also text_loss_sum and text_count. The caller divides loss_sum by the global
        count (all micro-batches and ranks).
        """
        cos, sin = self.rope(frame, row, col)
        h = self.body(idx, cos, sin, self.mask_for(frame) if mask is None else mask)
        if targets is None:
            return self.head(h)
        rows = h[loss_mask]  # (M, d): only masked visual positions are predicted
        target = targets[loss_mask] - self.cfg.visual_offset  # (M,) visual code indices
        if self.cfg.loss_impl == "chunked" and torch.is_grad_enabled():
            loss_sum, losses = MaskedRowCrossEntropy.apply(rows, self.head.weight, target,
                                                           loss_chunk_rows(self.cfg))
        elif self.cfg.loss_impl == "chunked":  # evaluation: no gradients to compute on the way
            losses = chunked_losses(rows, self.head.weight, target, loss_chunk_rows(self.cfg))
            loss_sum = losses.sum()
        else:  # reference: logits for every position, fp32, as the official code builds them
            logits = self.head(h).float()  # (B, L, V)
            losses = F.cross_entropy(logits[loss_mask], target, reduction="none")
            loss_sum = losses.sum()
        n_frames = int(frame.max()) + 1
        f = frame[loss_mask]
        frame_loss = torch.zeros(n_frames, device=h.device).index_add_(0, f, losses.detach())
        frame_count = torch.bincount(f, minlength=n_frames)
        out = dict(loss_sum=loss_sum, count=loss_mask.sum(), frame_loss_sum=frame_loss,
                   frame_count=frame_count)
        if self.text_head is not None:  # each prompt token predicts the next one (text is causal)
            pairs = prompt_pairs(frame)
            text_logits = self.text_head(h[:, :-1][pairs]).float()
            out["text_loss_sum"] = F.cross_entropy(text_logits, targets[:, 1:][pairs], reduction="sum")
            out["text_count"] = pairs.sum()
        return out

    # ------------------------------------------------------------------------------------------
    # sampling with a static KV cache

    def setup_cache(self, batch_size, max_len, dtype=None, device=None):
        """Preallocate every layer's KV cache for batch_size rows of max_len tokens."""
        p = self.head.weight
        shape = (batch_size, self.cfg.n_kv_head, max_len, self.cfg.head_dim)
        dtype, device = dtype or p.dtype, torch.device(device or p.device)
        for block in self.blocks:
            old = block.attn.kv_cache
            if old is not None and old.k.shape == shape and old.k.dtype == dtype and old.k.device == device:
                old.k.zero_()  # the same buffers: a compiled sampling step stays valid
                old.v.zero_()
            else:
                block.attn.kv_cache = KVCache(*shape, dtype, device)

    def forward_cached(self, idx, cos, sin, mask, slots):
        """
        Run tokens idx [B, n] that sit at cache positions `slots` [n]: their keys and values are
        written into the cache, and they attend over the whole cache under mask [B, n, max_len]
        (rows of the full attention mask, so the result equals the full forward's rows).
        cos, sin: [B, n, head_dim]. Returns visual logits [B, n, n_visual].
        """
        return self.head(self.body(idx, cos, sin, mask, slots))

    # ------------------------------------------------------------------------------------------
    # cost accounting

    def flops_per_sequence(self, frame, n_masked):
        """
        Training FLOPs (forward + backward) of one sequence with frame ids `frame` [L] and
        n_masked loss rows: 6 per parameter and token for the body (every column, a prompt's
        left padding included, as the kernels compute it),
        attention over the attended (query, key) pairs only (the frame-causal mask skips the
        rest; a kernel that computes whole blocks does more), the head on the masked rows only,
        and the text loss's head on the prompt's rows.
        """
        c = self.cfg
        L = frame.shape[-1]
        text_head = 0 if self.text_head is None else self.text_head.weight.numel()
        body = self.num_params() - self.wte.weight.numel() - self.head.weight.numel() - text_head
        pairs = _attended_pairs(frame)
        attn = 12 * c.n_layer * c.n_head * c.head_dim * pairs  # q.k and p.v, 3x for backward
        head = 6 * c.n_embd * c.n_visual * n_masked
        text = 6 * text_head * int(prompt_pairs(frame.reshape(1, -1)).sum())
        return 6 * body * L + attn + head + text


def prompt_pairs(frame):
    """[B, L-1] True where token t and t+1 are both prompt tokens: the rows of the text loss."""
    return (frame[:, :-1] == TEXT_FRAME) & (frame[:, 1:] == TEXT_FRAME)


def _attended_pairs(frame):
    """Number of True entries of attention_mask(frame), by blocks of rows: no [L, L] tensor."""
    L = frame.shape[-1]
    idx = torch.arange(L)
    return sum(int(attention_mask(frame, idx[i:i + 4096]).sum()) for i in range(0, L, 4096))


PEAK_FLOPS = {"A100": 312e12, "H100": 989e12, "H200": 989e12}  # dense bf16, per GPU


def device_peak_flops(device):
    """Peak dense bf16 FLOP/s of the actual device, or None (CPU, unknown GPU): then no MFU."""
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
