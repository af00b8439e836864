"""
Tokenizers: how text and video become one token sequence (Lumos-1, sec. 3.1).

Two halves:
- the text and sequence layout: text tokens (whole words learned from the training captions,
  and UTF-8 bytes for the rest), special tokens, visual codes, and the
  per-token frame/row/column ids that MM-RoPE (rope.py) and the frame-causal mask (masking.py)
  read;
- the video tokenizer: a causal 3D convolutional autoencoder with FSQ, our stand-in for the
  official frozen Cosmos DV4x8x8 (same contract: the first frame is encoded alone, so an image
  is a 1-frame video; its compression factors are MM-RoPE's scales).

    python tokenizer.py                          # train the default video tokenizer into out/
    python tokenizer.py --levels="(8,5,5,5)" --out_dir=out_t1000   # 1000 codes instead of 125
"""
import hashlib
import math
import os
import re
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from optim import Combined, Muon, cosine_lr

# -----------------------------------------------------------------------------
# Vocabulary: [ UTF-8 bytes | words | specials | visual codes ], defined here and nowhere else.
# The LM's output head covers only the visual codes (sec. 3.1); train.py's optional text_loss
# adds a separate next-token head over the text and special ids (model.py).
#
# Text: the paper's LLM reads prompts in its own subword tokens, so "red" is one token. Our
# stand-in learns its words from the training captions (learn_words, run by train.py like a BPE
# fit, stored in the checkpoint): each known word is one token, anything else is spelled in
# bytes. With no words (train.py --text_vocab=bytes) the text is plain UTF-8 bytes.

N_BYTES = 256
MAX_WORDS = 256                               # word ids N_BYTES .. N_BYTES + MAX_WORDS - 1
N_TEXT = N_BYTES + MAX_WORDS
PAD, BOS, EOT, MASK = 512, 513, 514, 515      # MASK is the AR-DF mask token (sec. 3.3)
VISUAL_OFFSET = 516                           # visual code c is token VISUAL_OFFSET + c

# frame ids read by masking.py: visual tokens of frame f have f >= 0
TEXT_FRAME = -1   # text and special tokens
PAD_FRAME = -2    # padding: never attended to, never in the loss

TEMPLATES = {
    # the official conditioning text (the official code's template)
    "official": ("Generate a video with a resolution of {width}x{height}, consisting of {frames} "
                 "frames at {fps} frames per second, according to the following prompt: {caption}"),
    # same conditioning, fewer bytes: the tiny presets spend their compute on video, not boilerplate
    "short": "{width}x{height} {frames}f {fps}fps: {caption}",
}


def format_prompt(caption, width, height, frames, fps, template="short"):
    """The conditioning text: resolution, frame count and fps, then the caption."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[template].format(width=width, height=height, frames=frames, fps=fps,
                                      caption=caption)


def text_pieces(text):
    """The units words are made of: each run of non-space characters with the spaces before it
    (" red"), so that pieces joined give the text back."""
    return re.findall(r"\s*\S+|\s+", text)


def learn_words(texts, max_words=MAX_WORDS, min_count=2):
    """The text vocabulary: the pieces seen at least min_count times in `texts`, most frequent
    first (ties in string order), at most max_words of them."""
    counts = {}
    for text in texts:
        for piece in text_pieces(text):
            counts[piece] = counts.get(piece, 0) + 1
    ranked = sorted((p for p, n in counts.items() if n >= min_count), key=lambda p: (-counts[p], p))
    return tuple(ranked[:max_words])


def encode_text(text, words=()):
    """BOS + text tokens + EOT, as a list of token ids: a piece found in `words` (learn_words) is
    one token, N_BYTES + its index; any other piece is its UTF-8 bytes."""
    if len(words) > MAX_WORDS:
        raise ValueError(f"{len(words)} words, more than the vocabulary's {MAX_WORDS} word ids")
    index = {w: N_BYTES + i for i, w in enumerate(words)}
    ids = [BOS]
    for piece in text_pieces(text):
        ids += [index[piece]] if piece in index else list(piece.encode("utf-8"))
    return ids + [EOT]


def unknown_words(text, words):
    """The pieces of `text` that encode_text(text, words) spells in bytes."""
    known = set(words)
    return [p.strip() or p for p in text_pieces(text) if p not in known]


def decode_text(ids, words=()):
    """Inverse of encode_text (specials and padding dropped)."""
    out = b"".join(bytes([i]) if i < N_BYTES else words[i - N_BYTES].encode("utf-8")
                   for i in ids if i < N_TEXT)
    return out.decode("utf-8", errors="replace")


def layout(text_ids, num_frames, h, w, text_len):
    """
    The fixed layout of one sample: text_len text slots (left-padded), then num_frames frames of
    h*w visual tokens in row-major order. Left padding puts the video at the same column in every
    row of a batch (static shapes, one KV-cache layout for cond and uncond rows).

    text_ids: list of ints, or None for the unconditional sample (text dropped, sec. 3.3 CFG).
    Returns dict of LongTensors [L]: idx (text ids, PAD, and MASK at visual slots), frame, row, col.
    """
    n_text = 0 if text_ids is None else len(text_ids)
    if n_text > text_len:
        raise ValueError(f"prompt is {n_text} tokens but the text budget is {text_len}: "
                         f"shorten the prompt or raise text_len")
    n_vis = num_frames * h * w
    L = text_len + n_vis
    idx = torch.full((L,), PAD, dtype=torch.long)
    frame = torch.full((L,), PAD_FRAME, dtype=torch.long)
    if n_text:
        idx[text_len - n_text:text_len] = torch.tensor(text_ids, dtype=torch.long)
        frame[text_len - n_text:text_len] = TEXT_FRAME
    idx[text_len:] = MASK
    f, r, c = torch.meshgrid(torch.arange(num_frames), torch.arange(h), torch.arange(w),
                             indexing="ij")
    frame[text_len:] = f.flatten()
    row = torch.zeros(L, dtype=torch.long)
    col = torch.zeros(L, dtype=torch.long)
    row[text_len:] = r.flatten()
    col[text_len:] = c.flatten()
    return dict(idx=idx, frame=frame, row=row, col=col)


def build_sequence(text_ids, codes, text_len):
    """
    One training/sampling sequence: layout() with the visual slots filled by `codes` [F, h, w]
    (visual code indices, not token ids). Returns the layout dict.
    """
    F, h, w = codes.shape
    seq = layout(text_ids, F, h, w, text_len)
    seq["idx"][text_len:] = codes.flatten().long() + VISUAL_OFFSET
    return seq


def visual_codes(seq_idx, text_len, num_frames, h, w):
    """Inverse of build_sequence for the video part: token ids [..., L] -> codes [..., F, h, w]."""
    codes = seq_idx[..., text_len:] - VISUAL_OFFSET
    return codes.reshape(*codes.shape[:-1], num_frames, h, w)


def collate(seqs):
    """Stack layout dicts of equal length into a batch: dict of [B, L] tensors."""
    return {k: torch.stack([s[k] for s in seqs]) for k in seqs[0]}


# -----------------------------------------------------------------------------
# Video tokenizer: causal 3D conv autoencoder + FSQ
#
# Official Lumos-1 uses the frozen Cosmos DV4x8x8 tokenizer (the paper); we train our own
# with the same contract. Every temporal operation is causal (pads or groups on the past side
# only), so latent frame j depends on pixel frames <= s_t*j: the first frame is encoded alone and
# an image is a 1-frame video.


class FSQ(nn.Module):
    """
    Finite scalar quantisation (Mentzer et al. 2023): each latent channel is bounded to
    `levels[i]` values and rounded; no codebook to learn, so no codebook collapse. Code vectors
    lie in [-1, 1]; their index is the mixed-radix number of the per-channel digits.
    """

    def __init__(self, levels):
        super().__init__()
        if not levels or min(levels) < 2:  # a 1-level digit has no step to round to: NaN codes
            raise ValueError(f"FSQ levels must each be at least 2, got {tuple(levels)}: e.g. (5, 5, 5)")
        self.levels = tuple(levels)
        L = torch.tensor(self.levels, dtype=torch.float32)
        self.register_buffer("L", L, persistent=False)
        # digit i has weight prod(levels[:i])
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1]), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.codebook_size = math.prod(self.levels)

    def bound(self, z):
        """Squash z into (-L/2, L/2); even L gets a half-step offset so it rounds to L values."""
        half = (self.L - 1) * (1 + 1e-3) / 2
        offset = (self.L % 2 == 0) * 0.5
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z):
        """z [..., d] -> quantised codes [..., d] in [-1, 1]; straight-through gradient."""
        zb = self.bound(z)
        zq = zb + (zb.round() - zb).detach()
        return zq / (self.L // 2)

    def codes_to_indices(self, codes):
        """Quantised codes [..., d] -> code indices [...] in [0, codebook_size)."""
        digits = (codes * (self.L // 2) + self.L // 2).round().long()
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices):
        """Inverse of codes_to_indices: indices [...] -> codes [..., d]."""
        digits = (indices.unsqueeze(-1) // self.basis) % self.L.long()
        return (digits - self.L // 2) / (self.L // 2)


@dataclass
class TokenizerConfig:
    levels: tuple = (5, 5, 5)          # FSQ levels: 125 codes (official Cosmos: (8,8,8,5,5,5))
    compression: tuple = (4, 4, 4)     # (s_t, s_h, s_w): MM-RoPE's scales (official: (4, 8, 8))
    channels: tuple = (48, 96)         # width per stage; each stage after the first halves h, w
    res_blocks: int = 1                # residual blocks per stage
    temporal_kernel: int = 1           # causal kernel over latent frames: the encoder's last stage and
                                       # the decoder's first
    encoder_kernel: int = 1            # spatial kernel of the encoder's convolutions. 1: each code is
                                       # a function of its own s_t x s_h x s_w block alone, so a
                                       # code means the same thing wherever it sits, which the LM
                                       # learns far faster (README); 3: neighbours leak in
    norm: str = "none"                 # "group": per-frame GroupNorm in each residual block, which
                                       # keeps wide tokenizers from diverging at lr 5e-3


class CausalConv3d(nn.Conv3d):
    """3D convolution padded in time on the past side only (first frame repeated)."""

    def __init__(self, c_in, c_out, kernel=(3, 3, 3)):
        super().__init__(c_in, c_out, kernel, padding=(0, kernel[1] // 2, kernel[2] // 2))

    def forward(self, x):                                   # (B, C, T, H, W)
        pad = self.kernel_size[0] - 1
        if pad == 0:  # per-frame: a 2D convolution over (B*T) frames is faster on CPU
            y = F.conv2d(rearrange(x, "b c t h w -> (b t) c h w"), self.weight[:, :, 0],
                         self.bias, padding=self.padding[1:])
            return rearrange(y, "(b t) c h w -> b c t h w", b=x.shape[0])
        x = torch.cat([x[:, :, :1].expand(-1, -1, pad, -1, -1), x], dim=2)
        return super().forward(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame, never across time (that would break causality)."""

    def forward(self, x):                                   # (B, C, T, H, W)
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=x.shape[0])


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))); the last conv starts at zero so each block
    starts as identity. norm is the identity unless norm="group"."""

    def __init__(self, c, kernel, norm="none"):
        super().__init__()
        make_norm = (lambda: FrameGroupNorm(math.gcd(8, c), c)) if norm == "group" else nn.Identity
        self.norm1, self.norm2 = make_norm(), make_norm()
        self.conv1 = CausalConv3d(c, c, kernel)
        self.conv2 = CausalConv3d(c, c, kernel)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


def space_to_depth(x, s):
    return rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=s, q=s)


def depth_to_space(x, s):
    return rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=s, q=s)


def time_to_depth(x, s):
    """(B, C, 1 + k*s, H, W) -> (B, C*s, 1 + k, H, W): frame 0 alone (repeated s times), then
    groups of s frames. Latent frame j sees pixel frames <= s*j only."""
    x = torch.cat([x[:, :, :1].expand(-1, -1, s - 1, -1, -1), x], dim=2)
    return rearrange(x, "b c (t s) h w -> b (c s) t h w", s=s)


def depth_to_time(x, s):
    """Inverse of time_to_depth: (B, C*s, 1 + k, H, W) -> (B, C, 1 + k*s, H, W)."""
    return rearrange(x, "b (c s) t h w -> b c (t s) h w", s=s)[:, :, s - 1:]


def stage(c, n, kt, norm, k=3):
    return nn.Sequential(*[ResBlock(c, (kt, k, k), norm) for _ in range(n)])


class Encoder(nn.Module):
    """
    Pixels (B, 3, T, H, W) -> latents (B, d, F, h, w). Time and space are folded into channels
    first (lossless), so every convolution runs on latent frames at 1/p of the resolution: cheap
    enough to train on a CPU. Then one stage per width, halving the resolution between stages.
    """

    def __init__(self, cfg):
        super().__init__()
        c, n = cfg.channels, cfg.res_blocks
        self.s_t, self.patch = cfg.compression[0], cfg.compression[1] // 2 ** (len(c) - 1)
        k = cfg.encoder_kernel
        self.stem = CausalConv3d(3 * self.s_t * self.patch ** 2, c[0], (1, k, k))
        kts = [1] * (len(c) - 1) + [cfg.temporal_kernel]   # mix latent frames at the end only
        self.stages = nn.ModuleList(stage(ci, n, kt, cfg.norm, k) for ci, kt in zip(c, kts))
        self.downs = nn.ModuleList(CausalConv3d(4 * ci, co, (1, 1, 1)) for ci, co in zip(c, c[1:]))
        self.out = CausalConv3d(c[-1], len(cfg.levels), (1, 1, 1))

    def forward(self, x):
        x = space_to_depth(time_to_depth(x, self.s_t), self.patch)   # (B, 3*s_t*p*p, F, H/p, W/p)
        x = self.stem(x)
        for i, stage_ in enumerate(self.stages):
            x = stage_(x)
            if i < len(self.downs):
                x = self.downs[i](space_to_depth(x, 2))     # (B, c_{i+1}, F, H', W')
        return self.out(F.silu(x))                          # (B, d, F, h, w)


class Decoder(nn.Module):
    """Mirror of the Encoder: latents (B, d, F, h, w) -> pixels (B, 3, T, H, W)."""

    def __init__(self, cfg):
        super().__init__()
        c, n = cfg.channels[::-1], cfg.res_blocks
        self.s_t, self.patch = cfg.compression[0], cfg.compression[1] // 2 ** (len(c) - 1)
        self.inp = CausalConv3d(len(cfg.levels), c[0], (1, 1, 1))
        kts = [cfg.temporal_kernel] + [1] * (len(c) - 1)
        self.stages = nn.ModuleList(stage(ci, n, kt, cfg.norm) for ci, kt in zip(c, kts))
        self.ups = nn.ModuleList(CausalConv3d(ci, 4 * co, (1, 1, 1)) for ci, co in zip(c, c[1:]))
        self.out = CausalConv3d(c[-1], 3 * self.s_t * self.patch ** 2, (1, 3, 3))

    def forward(self, z):
        x = self.inp(z)                                     # (B, c, F, h, w)
        for i, stage_ in enumerate(self.stages):
            x = stage_(x)
            if i < len(self.ups):
                x = depth_to_space(self.ups[i](x), 2)       # (B, c_{i+1}, F, 2h, 2w)
        x = depth_to_space(self.out(F.silu(x)), self.patch)  # (B, 3*s_t, F, H, W)
        return depth_to_time(x, self.s_t)                   # (B, 3, T, H, W)


class VideoTokenizer(nn.Module):
    """
    Causal video autoencoder with an FSQ bottleneck. uint8 video [T, H, W, 3] with
    T = 1 + k*s_t -> codes [1 + k, H/s_h, W/s_w] in [0, codebook_size), and back.
    """

    def __init__(self, cfg=TokenizerConfig()):
        super().__init__()
        if len(cfg.compression) != 3 or min(cfg.compression) < 1:
            raise ValueError(f"compression must be three factors (time, height, width) of at least 1, "
                             f"e.g. (4, 4, 4), got {tuple(cfg.compression)}")
        s_h, s_w = cfg.compression[1:]
        if s_h != s_w or s_h % 2 ** (len(cfg.channels) - 1):
            raise ValueError(f"compression {cfg.compression}: need s_h == s_w, a multiple of "
                             f"2**(len(channels) - 1) (channels={cfg.channels})")
        if cfg.norm not in ("none", "group"):
            raise ValueError(f"unknown tokenizer norm {cfg.norm!r}; choose 'none' or 'group'")
        if not cfg.channels or min(cfg.channels) < 1:
            raise ValueError(f"channels must be one or more widths of at least 1, e.g. (48, 96), got "
                             f"{tuple(cfg.channels)}")
        if cfg.encoder_kernel < 1 or cfg.encoder_kernel % 2 == 0:
            raise ValueError(f"encoder_kernel must be odd (1, 3, 5, ...), got {cfg.encoder_kernel}: "
                             f"an even kernel would shift the frame by half a pixel")
        self.cfg = cfg
        self.compression = tuple(cfg.compression)
        self.fsq = FSQ(cfg.levels)  # first: its check of the levels precedes any layer
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.codebook_size = self.fsq.codebook_size

    @property
    def device(self):
        return next(self.parameters()).device

    def fingerprint(self):
        """16 hex digits naming these weights: shards record the tokenizer that made their codes,
        so a model is never decoded with another one (its codes would mean other pixels)."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def forward(self, x):
        """Training pass: pixels (B, 3, T, H, W) in [-1, 1] -> reconstruction, same shape."""
        z = rearrange(self.encoder(x), "b d t h w -> b t h w d")
        return self.decoder(rearrange(self.fsq(z), "b t h w d -> b d t h w"))

    def check_video(self, video):
        """Shape/dtype checks with one message saying what to change."""
        if video.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"video must be uint8 RGB in [0, 255], got dtype {video.dtype}; "
                             f"convert e.g. with (x * 255).round().astype(np.uint8)")
        if video.ndim not in (4, 5) or video.shape[-1] != 3:
            raise ValueError(f"video must be [T, H, W, 3] or [B, T, H, W, 3] RGB, got shape "
                             f"{tuple(video.shape)}")
        self.check_geometry(*video.shape[-4:-1])

    def check_geometry(self, frames, height, width):
        """ValueError unless clips of this size can be encoded: 1 + k*s_t frames, and a height
        and width divisible by the spatial factors."""
        s_t, s_h, s_w = self.compression
        if (frames - 1) % s_t:
            k = max(0, (frames - 1) // s_t)
            raise ValueError(f"{frames} frames: the tokenizer needs 1 + k*{s_t} frames "
                             f"(1, {1 + s_t}, {1 + 2 * s_t}, ...): use --frames={1 + k * s_t} or "
                             f"{1 + (k + 1) * s_t}, or trim or pad the clips")
        if height % s_h or width % s_w:
            up = lambda n, s: -(-n // s) * s  # the next multiple
            raise ValueError(f"frames of {width}x{height} (width x height): the tokenizer needs a "
                             f"height that is a multiple of {s_h} and a width that is a multiple of "
                             f"{s_w}: use --width={up(width, s_w)} --height={up(height, s_h)}, or "
                             f"resize or crop the frames")

    @torch.no_grad()
    def encode(self, video):
        """uint8 video [T, H, W, 3] or [B, T, H, W, 3] (numpy or tensor) -> LongTensor codes
        [F, h, w] or [B, F, h, w] with F = 1 + (T - 1) / s_t."""
        self.check_video(video)
        # numpy input is copied: it may be read-only (a memmap, a PIL buffer)
        x = video if torch.is_tensor(video) else torch.from_numpy(np.array(video))
        x = x.to(self.device)
        x = x[None] if x.ndim == 4 else x
        x = rearrange(x, "b t h w c -> b c t h w").float() / 127.5 - 1
        z = self.fsq(rearrange(self.encoder(x), "b d t h w -> b t h w d"))
        codes = self.fsq.codes_to_indices(z)                # (B, F, h, w)
        return codes[0] if video.ndim == 4 else codes

    @torch.no_grad()
    def decode(self, codes):
        """Codes [F, h, w] or [B, F, h, w] -> uint8 video [T, H, W, 3] or [B, T, H, W, 3]."""
        codes = torch.as_tensor(codes, device=self.device).long()
        if codes.ndim not in (3, 4):
            raise ValueError(f"codes must be [F, h, w] or [B, F, h, w], got {tuple(codes.shape)}")
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        z = self.fsq.indices_to_codes(codes if codes.ndim == 4 else codes[None])
        x = self.decoder(rearrange(z, "b t h w d -> b d t h w"))
        video = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        video = rearrange(video, "b c t h w -> b t h w c")  # (B, T, H, W, 3)
        return video if codes.ndim == 4 else video[0]


def save_tokenizer(model, path, stats=None):
    """Write the weights, the config and training stats; atomic (temp file, then rename)."""
    from configurator import save_atomic
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_atomic(dict(config=asdict(model.cfg), model=model.state_dict(), stats=stats or {}), path)


def load_tokenizer(path, device="cpu"):
    """Load a tokenizer saved by save_tokenizer, in eval mode on `device`."""
    hint = "train one with `python tokenizer.py` (or `python data/prepare.py`, which trains it first)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no video tokenizer at {path}: {hint}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        # tokenizers saved before encoder_kernel existed used 3x3 encoder convolutions. Building
        # it draws init weights, which the load replaces: not from the caller's RNG (a training
        # run that loads it must train as one that does not)
        with torch.random.fork_rng(devices=[]):
            model = VideoTokenizer(TokenizerConfig(**{"encoder_kernel": 3, **ckpt["config"]}))
        model.load_state_dict(ckpt["model"])
    except Exception as e:  # any unreadable or mismatched file: one message, not a traceback
        from configurator import first_sentence
        raise RuntimeError(f"{path} is not a video tokenizer this version can read ({type(e).__name__}: "
                           f"{first_sentence(e)}): restore it, or {hint}") from None
    model.stats = ckpt["stats"]
    return model.to(device).eval()


# -----------------------------------------------------------------------------
# Training on the built-in shapes data: python tokenizer.py [config/x.py] [--key=value ...]

TRAIN_DEFAULTS = dict(
    out_dir="out",                # writes {out_dir}/tokenizer.pt and tokenizer_recon.gif/.png
    height=32, width=32, frames=9,
    **asdict(TokenizerConfig()),  # the architecture: levels, compression, channels, ... (above)
    n_videos=2000, n_images=2000,  # training pool, drawn once from the train split
    batch_size=8,                 # videos per step, plus as many images
    optimizer="muon",             # 'muon': Muon for the convolutions, Adam for biases and norms | 'adam'
    max_iters=2000, lr=5e-3, warmup_iters=100, min_lr=2.5e-4, l1_weight=0.1, grad_clip=1.0,
    video_weight=1.0,             # the video batch's loss against the image batch's (each a mean)
    n_val=128,                    # validation clips (and as many images) for PSNR and usage
    seed=0, device="cpu", log_interval=50,
)


def make_pool(split, kind, n, height, width, frames):
    """Shapes samples 0..n-1 of a split as one uint8 tensor [n, T, H, W, 3] (T = 1 for images)."""
    from data.shapes import make_sample
    clips = [make_sample(seed, split=split, height=height, width=width, frames=frames,
                         kind=kind)["video"] for seed in range(n)]
    return torch.from_numpy(np.stack(clips))


def to_model_input(clips):
    """uint8 [B, T, H, W, 3] -> float (B, 3, T, H, W) in [-1, 1]."""
    return rearrange(clips, "b t h w c -> b c t h w").float() / 127.5 - 1


def reconstruction_loss(model, clips, l1_weight):
    """MSE (what PSNR measures) plus a little L1, which keeps flat colours and edges crisp."""
    x = to_model_input(clips)
    err = model(x) - x
    return err.square().mean() + l1_weight * err.abs().mean()


def training_loss(model, videos, images, cfg):
    """Joint image/video training (sec. 3.1): the video batch's loss, weighted by video_weight,
    plus the image batch's. Each is a mean over its own pixels, so at weight 1 one image frame
    counts as much as a whole video."""
    return (cfg["video_weight"] * reconstruction_loss(model, videos, cfg["l1_weight"])
            + reconstruction_loss(model, images, cfg["l1_weight"]))


@torch.no_grad()
def evaluate(model, videos, images, batch_size=64):
    """PSNR (dB, mean over clips) of videos and images, codebook usage and perplexity."""
    stats, counts = {}, torch.zeros(model.codebook_size)
    for kind, clips in (("video", videos), ("image", images)):
        psnr = []
        for i in range(0, len(clips), batch_size):
            batch = clips[i:i + batch_size]
            codes = model.encode(batch)
            counts += torch.bincount(codes.flatten().cpu(), minlength=model.codebook_size)
            err = model.decode(codes).float() - batch.float()
            psnr.append(10 * torch.log10(255 ** 2 / err.square().mean((1, 2, 3, 4))))
        stats[f"psnr_{kind}"] = torch.cat(psnr).mean().item()
    p = counts / counts.sum()
    stats["code_usage"] = (counts > 0).float().mean().item()
    stats["perplexity"] = torch.exp(-(p[p > 0] * p[p > 0].log()).sum()).item()
    return stats


def save_comparison(model, clips, out_dir, scale=4):
    """originals | reconstructions, one clip a row: an animated GIF and a PNG of all frames."""
    from PIL import Image
    recon = model.decode(model.encode(clips)).cpu()
    pair = torch.cat([clips.cpu(), recon], dim=3)           # (B, T, H, 2W, 3)
    frames = rearrange(pair, "b t h w c -> t (b h) w c").numpy()
    big = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
           for f in frames]
    big[0].save(os.path.join(out_dir, "tokenizer_recon.gif"), save_all=True,
                append_images=big[1:], duration=250, loop=0)
    strip = rearrange(pair, "b t h (two w) c -> (b two h) (t w) c", two=2).numpy()
    Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale),
                                  Image.NEAREST).save(os.path.join(out_dir, "tokenizer_recon.png"))


def train_tokenizer(cfg, path=None):
    """Train a VideoTokenizer on shapes videos and images; save it to `path`
    (default {out_dir}/tokenizer.pt) and return it."""
    from tqdm import tqdm
    path = path or os.path.join(cfg["out_dir"], "tokenizer.pt")
    t0 = time.time()
    torch.manual_seed(cfg["seed"])
    torch.set_flush_denormal(True)  # denormal floats are slow on CPUs; zero is as good here
    arch = {f: cfg[f] for f in TokenizerConfig.__dataclass_fields__}
    model = VideoTokenizer(TokenizerConfig(**arch)).to(cfg["device"])  # bad settings fail here, early
    shape = (cfg["height"], cfg["width"], cfg["frames"])
    model.check_geometry(cfg["frames"], cfg["height"], cfg["width"])
    videos = make_pool("train", "video", cfg["n_videos"], *shape)
    images = make_pool("train", "image", cfg["n_images"], *shape)
    if cfg["optimizer"] == "muon":  # 2000 Muon steps beat 3000 Adam steps by 1.5 dB (README)
        convs = [p for p in model.parameters() if p.dim() >= 2]
        opt = Combined([torch.optim.Adam([p for p in model.parameters() if p.dim() < 2], lr=cfg["lr"]),
                        Muon(convs, lr=cfg["lr"])])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    bar = tqdm(range(cfg["max_iters"]), desc="tokenizer", dynamic_ncols=True)
    for it in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(it, cfg["lr"], cfg["min_lr"], cfg["warmup_iters"], cfg["max_iters"])
        # joint image/video training (sec. 3.1): an image is a 1-frame video; random h-flips
        v = videos[torch.randint(len(videos), (cfg["batch_size"],))].to(cfg["device"])
        i = images[torch.randint(len(images), (cfg["batch_size"],))].to(cfg["device"])
        if torch.rand(()) < 0.5:
            v, i = v.flip(3), i.flip(3)
        loss = training_loss(model, v, i, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        if it % cfg["log_interval"] == 0 or it == cfg["max_iters"] - 1:
            if not math.isfinite(loss.item()):  # the weights are NaN from here on: nothing to save
                raise SystemExit(f"error: the tokenizer's loss is {loss.item()} at step {it}; nothing "
                                 f"was saved. Lower --lr (now {cfg['lr']}) or add --norm=group")
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{group['lr']:.1e}",
                            grad_norm=f"{grad_norm:.2f}")
    train_time = time.time() - t0
    model.eval()
    val_videos = make_pool("val", "video", cfg["n_val"], *shape).to(cfg["device"])
    val_images = make_pool("val", "image", cfg["n_val"], *shape).to(cfg["device"])
    stats = dict(evaluate(model, val_videos, val_images), train_seconds=train_time,
                 iters=cfg["max_iters"], train_config=dict(cfg))
    save_tokenizer(model, path, stats)
    model.stats = stats
    os.makedirs(cfg["out_dir"], exist_ok=True)
    save_comparison(model, val_videos[:8], cfg["out_dir"])
    print(f"validation PSNR: videos {stats['psnr_video']:.2f} dB, images {stats['psnr_image']:.2f} dB")
    print(f"codebook usage: {100 * stats['code_usage']:.1f}% of {model.codebook_size} codes, "
          f"perplexity {stats['perplexity']:.0f}")
    print(f"trained in {train_time:.0f} s; wrote {path} and {cfg['out_dir']}/tokenizer_recon.gif")
    return model


def check_train_config(cfg):
    """Counts and rates that would crash the training, or train on nothing, stop here."""
    from configurator import AT_LEAST_1, POSITIVE, check_ranges
    check_ranges(cfg, [(("max_iters", "batch_size", "n_videos", "n_images", "n_val", "log_interval"),
                        AT_LEAST_1), (("lr", "grad_clip", "video_weight"), POSITIVE)])
    if cfg["optimizer"] not in ("muon", "adam"):
        raise SystemExit(f"error: optimizer must be 'muon' or 'adam', got {cfg['optimizer']!r}")


def main(argv=None):
    from configurator import configure, print_config, writable_dir
    config = configure(TRAIN_DEFAULTS, argv)
    check_train_config(config)
    path = os.path.join(config["out_dir"], "tokenizer.pt")
    if os.path.exists(path):  # token shards encoded with it would decode with the new one: garbage
        raise SystemExit(f"error: {path} exists, and the token shards made with it decode only with "
                         f"it: train the new one with another --out_dir (or delete the old one and "
                         f"its shards first)")
    writable_dir(config["out_dir"], "out_dir")  # before minutes of training, not after
    print("video tokenizer, resolved config:")
    print_config(config)
    try:
        return train_tokenizer(config, path)
    except ValueError as e:  # a bad architecture or clip size: one line, not a traceback
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    from configurator import run
    run(main, "tokenizer.pt is written only when training ends; if it is not there, run the command again")
