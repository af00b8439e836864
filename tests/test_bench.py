"""bench.py: every section runs on small shapes and lands in the JSON; a bad section is refused."""
import json

import pytest

import bench

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
    assert s["ratio_next_token_vs_ar_df"] == pytest.approx(
        s["next_token_kv_cache"]["s_per_video"] / s["ar_df_kv_cache"]["s_per_video"])
    # CPU: from the shapes: all 64 rows' logits and gradient against one 16-row chunk, in place
    assert r["loss_memory"]["ratio_full_vs_chunked"] == pytest.approx(2 * 64 / 16)
    assert r["train"]["mmrope"]["tokens_per_s"] > 0 and "mmrope_overhead" in r["train"]


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="sections"):
        bench.main(SMALL + ["--sections=sampling,speed", f"--out={tmp_path / 'b.json'}"])
