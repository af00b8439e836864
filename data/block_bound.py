"""
How well can ANY code that gives each s_t x s_h x s_w block of pixels one of K entries, on its
own, reconstruct the shapes videos? k-means on the blocks themselves is such a code, fitted
directly to the pixels: its validation PSNR is what a block-local tokenizer of K codes can hope
for, before any decoder context. The tiny tokenizer's codes are block-local (encoder_kernel=1),
so this tells whether a PSNR target is reachable with its codebook size at all.

    python data/block_bound.py                 # K = 1000 and 4000, 4x4x4 blocks, 32x32x9 clips
    python data/block_bound.py --codes="()" --tokenizer=out/tokenizer.pt   # a trained tokenizer,
                                                                           # same clips, same split

Latent frame 0 is frame 0 alone (a 4x4 block of 1 frame); later latent frames hold 4 frames
(4x4x4 blocks), as in the causal tokenizer. PSNR is per clip over all its frames, averaged over
clips, as tokenizer.evaluate reports it.
"""
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python data/block_bound.py` runs with data/ as the import root
    sys.path.insert(0, ROOT)

from configurator import configure, print_config  # noqa: E402
from tokenizer import make_pool  # noqa: E402


def blocks(videos, s_t, s, first):
    """uint8 (n, 1 + k*s_t, H, W, 3) -> one row per block: frame 0's s x s blocks (first=True),
    or the s_t x s x s blocks of the later latent frames."""
    n, T, H, W, _ = videos.shape
    if first:
        x = videos[:, :1].reshape(n, H // s, s, W // s, s, 3)
        return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, s * s * 3)
    x = videos[:, 1:].reshape(n, (T - 1) // s_t, s_t, H // s, s, W // s, s, 3)
    return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, s_t * s * s * 3)


def kmeans_errors(train, val, k, iters, seed=0):
    """Fit k-means (k entries) to the distinct training blocks, weighted by their counts; return
    the squared error of every validation block's nearest entry, and the number of distinct blocks."""
    distinct, counts = np.unique(train, axis=0, return_counts=True)
    X, w = torch.from_numpy(distinct).float(), torch.from_numpy(counts).float()
    g = torch.Generator().manual_seed(seed)
    C = X[torch.multinomial(w, min(k, len(X)), replacement=False, generator=g)].clone()
    for _ in range(iters):
        nearest = torch.cdist(X, C).argmin(1)
        sums = torch.zeros_like(C).index_add_(0, nearest, X * w[:, None])
        mass = torch.zeros(len(C)).index_add_(0, nearest, w)
        C = torch.where(mass[:, None] > 0, sums / mass.clamp(min=1)[:, None], C)
    V = torch.from_numpy(val).float()
    return (C[torch.cdist(V, C).argmin(1)] - V).square(), len(distinct)


def psnr_per_clip(sq_err, n):
    return (10 * torch.log10(255 ** 2 / sq_err.reshape(n, -1).mean(1).clamp(min=1e-6))).mean().item()


def main(argv=None):
    cfg = configure(dict(codes=(1000, 4000), n_train=2000, n_val=128, height=32, width=32,
                         frames=9, s_t=4, s=4, iters=30, tokenizer=""), argv)
    print_config(cfg)
    n, st, s = cfg["n_val"], cfg["s_t"], cfg["s"]
    shape = (cfg["height"], cfg["width"], cfg["frames"])
    val = make_pool("val", "video", n, *shape).numpy()  # the tokenizer's own validation clips
    if cfg["tokenizer"]:  # the trained tokenizer on the same clips, for comparison
        from tokenizer import load_tokenizer
        tok = load_tokenizer(cfg["tokenizer"])
        with torch.no_grad():
            err = (tok.decode(tok.encode(torch.from_numpy(val))).float() - torch.from_numpy(val).float()).square()
        print(f"{cfg['tokenizer']}: validation PSNR: all frames {psnr_per_clip(err, n):.2f} dB, "
              f"frame 0 {psnr_per_clip(err[:, :1], n):.2f}, frames 1+ {psnr_per_clip(err[:, 1:], n):.2f}")
    train = make_pool("train", "video", cfg["n_train"], *shape).numpy() if cfg["codes"] else None
    for k in cfg["codes"]:
        t0 = time.time()
        e0, d0 = kmeans_errors(blocks(train, st, s, True), blocks(val, st, s, True), k, cfg["iters"])
        e1, d1 = kmeans_errors(blocks(train, st, s, False), blocks(val, st, s, False), k, cfg["iters"])
        every = torch.cat([e0.reshape(n, -1), e1.reshape(n, -1)], 1)  # each pixel of a clip once
        print(f"K={k}: distinct training blocks: frame 0 {d0}, later frames {d1}. Validation PSNR: "
              f"all frames {psnr_per_clip(every, n):.2f} dB, frame 0 {psnr_per_clip(e0, n):.2f}, "
              f"frames 1+ {psnr_per_clip(e1, n):.2f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
