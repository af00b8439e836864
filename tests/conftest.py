"""Shared fixtures: tiny shapes shards and a tiny trained run, made once per test session."""
import shutil

import pytest
import torch

import train
from data.prepare import prepare_shapes
from tokenizer import TokenizerConfig, VideoTokenizer, save_tokenizer


# torch.compile on CPU (inductor, also behind FlexAttention and the block mask) builds C++ code
needs_compiler = pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")),
                                    reason="torch.compile on CPU needs a C++ compiler (e.g. g++)")


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """Tiny shapes shards encoded with a small untrained tokenizer (training it is not the point),
    its weights drawn at a gain where the codes vary with the content (the default init starts
    residual branches at zero: nearly one code everywhere, data with nothing in it)."""
    root = tmp_path_factory.mktemp("data")
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(channels=(8, 8), levels=(4, 4)))
    with torch.no_grad():
        for p in tok.parameters():
            p.normal_(0, 1.5 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1)
    save_tokenizer(tok, str(root / "tok.pt"))
    prepare_shapes(out=str(root / "shards"), tokenizer_path=str(root / "tok.pt"), n_train_video=16,
                   n_train_image=16, n_val_video=8, n_val_image=8)
    return root


def train_args(shards, out_dir, **kw):
    """train.py arguments for a tiny, fast run on the `shards` fixture."""
    cfg = dict(out_dir=str(out_dir), data_dir=str(shards / "shards"),
               tokenizer_path=str(shards / "tok.pt"), n_layer=2, n_embd=64, n_head=2, n_kv_head=1,
               ffn_hidden=128, batch_size=4, max_iters=4, eval_interval=2, eval_iters=1,
               log_interval=1, warmup_iters=1, sample_prompts=(), image_ratio=0.5)
    cfg.update(kw)
    return [f"--{k}={v!r}" if isinstance(v, (str, tuple)) else f"--{k}={v}" for k, v in cfg.items()]


@pytest.fixture(scope="session")
def trained_run(shards, tmp_path_factory):
    """out_dir of a 2-step training run: a checkpoint with config and data meta inside."""
    out = tmp_path_factory.mktemp("run")
    train.main(train_args(shards, out, max_iters=2))
    return out
