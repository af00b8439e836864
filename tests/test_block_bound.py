"""data/block_bound.py: blocks are the tokenizer's blocks, and k-means with an entry per distinct
block reproduces them exactly (so the PSNR bound it reports is a real bound, not a bug)."""
import numpy as np

from data.block_bound import blocks, kmeans_errors
from data.shapes import make_sample


def test_blocks_follow_the_causal_latent_layout():
    v = np.arange(2 * 9 * 8 * 8 * 3, dtype=np.int64).reshape(2, 9, 8, 8, 3)
    first, later = blocks(v, 4, 4, True), blocks(v, 4, 4, False)
    assert first.shape == (2 * 2 * 2, 4 * 4 * 3) and later.shape == (2 * 2 * 2 * 2, 4 * 4 * 4 * 3)
    np.testing.assert_array_equal(first[1].reshape(4, 4, 3), v[0, 0, 0:4, 4:8])  # clip 0, block (0, 1)
    # clip 0, latent frame 2 (frames 5-8), block (1, 0): the 4 frames of that block, in order
    np.testing.assert_array_equal(later[6].reshape(4, 4, 4, 3), v[0, 5:9, 4:8, 0:4])


def test_kmeans_with_an_entry_per_distinct_block_is_lossless():
    clips = np.stack([make_sample(i, split="train", kind="video")["video"] for i in range(4)])
    b = blocks(clips, 4, 4, False)
    n_distinct = len(np.unique(b, axis=0))
    err, distinct = kmeans_errors(b, b, n_distinct, iters=0)
    assert distinct == n_distinct and float(err.max()) == 0.0
    err, _ = kmeans_errors(b, b, n_distinct, iters=5)  # the update keeps a lossless code lossless
    assert float(err.max()) == 0.0
    # with few entries, the k-means updates lower the error below the initial draw's
    start, _ = kmeans_errors(b, b, 8, iters=0)
    fitted, _ = kmeans_errors(b, b, 8, iters=5)
    assert 0 < float(fitted.mean()) < float(start.mean())
