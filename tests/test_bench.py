"""bench.py: every section runs on small shapes and lands in the JSON; a bad section is refused."""
import json

import pytest

import bench
from conftest import needs_compiler

SMALL = ["--frames=2", "--h=2", "--w=4", "--text_len=8", "--batch_size=2", "--repeat=1",
         "--steps=2", "--loss_rows=64", "--loss_chunk=16", "--n_visual=32"]


def test_sections_run_in_order_and_are_saved(tmp_path):
    out = tmp_path / "b.json"
    bench.main(SMALL + ["--sections=loss,sampling,train", f"--out={out}"])
    r = json.loads(out.read_text())
    assert list(r)[-3:] == ["loss_memory", "sampling", "train"]  # the order asked for
    assert "attention" not in r
    s = r["sampling"]
    for mode in ("ar_df_kv_cache", "ar_df_no_cache", "next_token_kv_cache"):
        assert s[mode]["s_per_video"] > 0 and s[mode]["frames_per_s"] > 0
    for ratio, slow in (("ratio_next_token_vs_ar_df", "next_token_kv_cache"),
                        ("ratio_no_cache_vs_ar_df", "ar_df_no_cache")):  # how many times slower
        assert s[ratio] == pytest.approx(s[slow]["s_per_video"] / s["ar_df_kv_cache"]["s_per_video"])
    # CPU: from the shapes: all 64 rows' logits and gradient against one 16-row chunk, in place
    assert r["loss_memory"]["ratio_full_vs_chunked"] == pytest.approx(2 * 64 / 16)
    t = r["train"]
    assert t["mmrope"]["tokens_per_s"] > 0  # the overhead: MM-RoPE's step time over 1D's, minus 1
    assert t["mmrope_overhead"] == pytest.approx(t["mmrope"]["s_per_step"] / t["1d"]["s_per_step"] - 1)


def test_each_sampling_mode_runs_the_forwards_it_names(tmp_path, monkeypatch):
    """One video of 2 latent frames of 2x4 tokens, 2 MaskGIT steps: AR-DF with the cache runs
    each step against the cache (plus the prompt and one finished frame written to it); without
    the cache it runs the whole prefix every step; next-token decoding runs one token a forward."""
    from model import GPT
    modes = []
    monkeypatch.setattr(bench, "timed", lambda fn, device, repeat: modes.append(fn) or 1.0)
    bench.main(SMALL + ["--sections=sampling", f"--out={tmp_path / 'b.json'}"])
    calls = {}
    for name in ("forward", "forward_cached"):
        real = getattr(GPT, name)
        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(GPT, name, counted)
    counts = []
    for run in modes:  # in bench.py's order: AR-DF cached, AR-DF uncached, next-token
        calls.update(forward=0, forward_cached=0)
        run()
        counts.append(dict(calls))
    frames, steps, n = 2, 2, 8
    assert counts == [dict(forward=0, forward_cached=1 + frames * steps + (frames - 1)),
                      dict(forward=frames * steps, forward_cached=0),
                      dict(forward=0, forward_cached=1 + frames * n)]


def test_next_token_decoding_timed_over_part_of_the_video_is_scaled_to_all_of_it(tmp_path, monkeypatch):
    """--next_token_frames=1 of 2: next-token decoding runs the first frame's tokens only (its
    forwards all cost the same against the static cache), and its time counts twice."""
    from model import GPT
    modes = []
    monkeypatch.setattr(bench, "timed", lambda fn, device, repeat: modes.append(fn) or 1.0)
    out = tmp_path / "b.json"
    bench.main(SMALL + ["--sections=sampling", "--next_token_frames=1", f"--out={out}"])
    s = json.loads(out.read_text())["sampling"]
    assert s["next_token_kv_cache"]["timed_frames"] == 1 and s["ar_df_kv_cache"]["timed_frames"] == 2
    assert s["next_token_kv_cache"]["s_per_video"] == 2.0 and s["ar_df_kv_cache"]["s_per_video"] == 1.0
    assert s["ratio_next_token_vs_ar_df"] == 2.0
    calls = []
    real = GPT.forward_cached
    monkeypatch.setattr(GPT, "forward_cached", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    modes[2]()  # next-token decoding
    assert len(calls) == 1 + 8  # the prompt's prefill, then the 2x4 tokens of one frame


@needs_compiler
def test_attention_section_runs_on_the_cpu(tmp_path):
    out = tmp_path / "b.json"
    bench.main(SMALL + ["--sections=attention", f"--out={out}"])
    a = json.loads(out.read_text())["attention"]
    assert a["backward"] is False  # FlexAttention has no CPU backward: forward only here
    for name in ("flex_frame_causal", "sdpa_per_frame", "sdpa_dense_bidirectional"):
        assert a[name] > 0
    for ratio, name in (("ratio_flex_vs_dense", "flex_frame_causal"),
                        ("ratio_per_frame_vs_dense", "sdpa_per_frame")):
        assert a[ratio] == pytest.approx(a[name] / a["sdpa_dense_bidirectional"])
    assert 0 < a["blocks_computed_pct"] <= 100


def test_a_model_too_big_for_the_machine_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "memory_bytes", lambda: 2**29)
    with pytest.raises(SystemExit, match=r"the small model needs at least 0.8 GB here .* more than this "
                                         r"machine's 0.5 GB: take a smaller --model_size"):
        bench.main(SMALL + ["--model_size=small", "--sections=train", "--device=cpu",
                            f"--out={tmp_path / 'b.json'}"])
    assert not (tmp_path / "b.json").exists()


def test_a_second_run_keeps_the_first_runs_file(tmp_path):
    out = tmp_path / "b.json"
    out.write_text("{}")  # an earlier run's figures
    bench.main(SMALL + ["--sections=loss", f"--out={out}"])
    bench.main(SMALL + ["--sections=loss", f"--out={out}"])
    assert out.read_text() == "{}"
    assert "loss_memory" in json.loads((tmp_path / "b_2.json").read_text())
    assert "loss_memory" in json.loads((tmp_path / "b_3.json").read_text())


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="sections"):
        bench.main(SMALL + ["--sections=sampling,speed", f"--out={tmp_path / 'b.json'}"])
    with pytest.raises(SystemExit, match="--repeat=0 is out of range"):
        bench.main(SMALL + ["--repeat=0", f"--out={tmp_path / 'b.json'}"])
    with pytest.raises(SystemExit, match="--model_size is one of"):
        bench.main(SMALL + ["--model_size=huge", f"--out={tmp_path / 'b.json'}"])
    with pytest.raises(SystemExit, match="attn_impl must be 'sdpa', 'flex' or 'frames', got 'bogus'"):
        bench.main(SMALL + ["--attn_impl=bogus", f"--out={tmp_path / 'b.json'}"])
    with pytest.raises(SystemExit, match="is a folder: give a file name"):  # before, not after, the run
        bench.main(SMALL + [f"--out={tmp_path}"])
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit, match="afile is a file, not a folder"):
        bench.main(SMALL + [f"--out={tmp_path / 'afile' / 'b.json'}"])


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_the_training_step_uses_the_asked_optimizer(tmp_path, monkeypatch, optimizer):
    import optim
    calls = []
    real = optim.orthogonalize
    monkeypatch.setattr(optim, "orthogonalize", lambda g, *a, **k: calls.append(g.shape) or real(g, *a, **k))
    out = tmp_path / "b.json"
    bench.main(SMALL + ["--sections=train", f"--optimizer={optimizer}", f"--out={out}"])
    assert json.loads(out.read_text())["train"]["optimizer"] == optimizer
    assert bool(calls) == (optimizer == "muon")  # Muon orthogonalises the blocks' matrices


def test_an_unknown_optimizer_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--optimizer is 'muon' or 'adamw'"):
        bench.main(SMALL + ["--optimizer=sgd", f"--out={tmp_path / 'b.json'}"])


def test_compiled_sampling_ratios_compare_the_compiled_modes(tmp_path, monkeypatch):
    """--compile=True: the two cached modes are timed again compiled, and the compiled ratios are
    of those times (how many times slower than compiled AR-DF), not of the eager ones."""
    times = iter([1.0, 3.0, 8.0, 0.5, 2.0])  # in bench.py's order: eager cached, uncached, next-token;
    monkeypatch.setattr(bench, "timed", lambda fn, device, repeat: next(times))  # compiled cached, next-token
    monkeypatch.setattr(bench, "compile_for_sampling", lambda model: None)  # the timings are fake anyway
    out = tmp_path / "b.json"
    bench.main(SMALL + ["--sections=sampling", "--compile=True", f"--out={out}"])
    s = json.loads(out.read_text())["sampling"]
    assert s["ar_df_kv_cache_compiled"]["s_per_video"] == 0.5
    assert s["next_token_kv_cache_compiled"]["s_per_video"] == 2.0
    assert s["ratio_next_token_vs_ar_df"] == 8.0 and s["ratio_no_cache_vs_ar_df"] == 3.0
    assert s["ratio_next_token_vs_ar_df_compiled"] == 4.0
    assert s["ratio_no_cache_eager_vs_ar_df_compiled"] == 6.0
    assert s["ar_df_kv_cache"]["ms_per_step"] == pytest.approx(1000 * 1.0 / (2 * 2))  # frames x steps


def test_the_training_step_counts_its_tokens_and_flops(tmp_path, monkeypatch):
    """tokens/s is every token of the batch per step; TFLOP/s the model's own count
    (flops_per_sequence) summed over the batch's rows, each with its masked rows."""
    from model import GPT, GPTConfig, PRESETS
    monkeypatch.setattr(bench, "timed", lambda fn, device, repeat: 0.5)
    out = tmp_path / "b.json"
    bench.main(SMALL + ["--sections=train", "--dtype=float32", "--device=cpu", f"--out={out}"])
    t = json.loads(out.read_text())["train"]["mmrope"]
    cfg = dict(bench.DEFAULTS, frames=2, h=2, w=4, text_len=8, batch_size=2)
    b = bench.train_batch(cfg, 32, "cpu")
    model = GPT(GPTConfig(**PRESETS["tiny"], n_visual=32))
    flops = sum(model.flops_per_sequence(f, int(m.sum())) for f, m in zip(b["frame"], b["loss_mask"]))
    assert t["tokens_per_s"] == b["idx"].numel() / 0.5
    assert t["tflops"] == pytest.approx(flops / 0.5 / 1e12, rel=1e-9)


def test_next_token_decoding_goes_in_raster_order_under_a_causal_mask(monkeypatch):
    """The baseline decodes one token a forward in the layout's (raster) order, each slot seeing
    only the slots up to itself (plain causal decoding; nothing later is written yet)."""
    import torch
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_kv_head=1, n_embd=32, ffn_hidden=64, n_visual=16)).eval()
    seen = []
    real = GPT.forward_cached
    def spy(self, idx, cos, sin, mask, slots):
        seen.append((slots.tolist(), mask.clone()))
        return real(self, idx, cos, sin, mask, slots)
    monkeypatch.setattr(GPT, "forward_cached", spy)
    frames, h, w, text_len = 2, 2, 3, 8
    bench.next_token_decode(model, [[1] * 4], frames, h, w, text_len, cfg_scale=2.0)
    seen = seen[1:]  # after the prompt's prefill
    L = text_len + frames * h * w
    assert [s for s, _ in seen] == [[p] for p in range(text_len, L)]
    for (slot,), mask in seen:
        assert mask.shape == (2, 1, L) and (mask == (torch.arange(L) <= slot)).all()
