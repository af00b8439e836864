"""
Speed and memory of the method on the device at hand, on a randomly initialised model of a
preset (no checkpoint needed): sampling (AR-DF with KV cache and batched guidance, without the
cache, and next-token decoding), and a training step (tokens/s, MFU, peak memory), with MM-RoPE
vs 1D RoPE and the chunked masked-row loss vs full logits.

    python bench.py                                        # tiny preset, CPU-sized
    python bench.py --model_size=medium --frames=8 --h=16 --w=32 --device=cuda --compile=True
"""
import contextlib
import itertools
import json
import os
import time

import torch

from configurator import AT_LEAST_0, AT_LEAST_1, check_ranges, configure, print_config, run, writable_dir
from masking import flex_block_mask, frame_layout, training_mask
from model import GPT, PRESETS, GPTConfig, device_peak_flops, loss_chunk_rows
from sample import (CFG_SCALE, STEPS, FrameRunner, compile_for_sampling, generate, guided,
                    gumbel)
from tokenizer import MASK, VISUAL_OFFSET, build_sequence, collate, layout
from train import DEFAULTS as TRAIN_DEFAULTS, make_optimizer

DEFAULTS = dict(  # python bench.py --key=value; python bench.py --help lists them
    model_size="tiny",              # model.PRESETS, randomly initialised
    n_visual=1000,                  # visual codebook: the head's width (1000: the README's CPU figures;
                                    # the default job's tokenizer has 125)
    frames=3, h=8, w=8,             # latent frames and codes per frame of the video
    text_len=80,                    # text budget in tokens: half a prompt, half padding
    batch_size=8,                   # clips per training step
    sample_batch=1,                 # videos sampled at once
    steps=STEPS,                    # MaskGIT steps a frame
    repeat=3,                       # timed calls per figure, after one warm-up call
    sample_repeat=0,                # timed calls per sampling figure; 0: repeat
    next_token_frames=0,            # time next-token decoding over this many frames, then scale; 0: all
    loss_rows=32768,                # masked rows for the loss-path memory figure
    loss_chunk=0,                   # rows per chunk of the chunked loss; 0: automatic
    compile=False,                  # torch.compile the model (the training step and the sampler)
    attn_impl="sdpa",               # 'sdpa' | 'flex' | 'frames' (model.GPTConfig)
    grad_checkpoint=False,          # recompute each block in backward
    sections="sampling,attention,train,loss",  # which figures, comma-separated
    optimizer="muon",               # the training step's: 'muon' (the shapes presets) or 'adamw' (the paper)
    device="cuda" if torch.cuda.is_available() else "cpu",
    # autocast dtype, as train.py picks it; float32: none
    dtype="bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32",
    out="bench.json",               # every figure, as JSON
)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device, repeat):
    """Mean seconds per call of fn after one warm-up call (compilation, caches)."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / repeat


@torch.no_grad()
def next_token_decode(model, prompts, frames, h, w, text_len, cfg_scale, seed=0, n_tokens=None):
    """
    The baseline the paper compares against: raster-order next-token decoding with a KV cache,
    one token per forward (cond and uncond rows batched). Only its cost is meaningful here: the
    weights were trained for AR-DF, so the tokens it samples are not. n_tokens: decode only the
    first n_tokens of the video. Every forward is one token against the whole static cache, so
    each costs the same wherever it sits, and a part times the whole.
    """
    device = next(model.parameters()).device
    B, n = len(prompts), h * w
    seqs = [layout(p, frames, h, w, text_len) for p in prompts] + [layout(None, frames, h, w, text_len)] * B
    seq = {k: v.to(device) for k, v in collate(seqs).items()}
    runner = FrameRunner(model, seq, text_len, n, use_cache=True)  # prefills the prompt
    g = torch.Generator(device).manual_seed(seed)
    L = seq["idx"].shape[1]
    slots_all = torch.arange(L, device=device)
    causal = slots_all[None, :] <= slots_all[:, None]  # (L, L) plain causal decoding
    token = torch.full((2 * B, 1), MASK, dtype=torch.long, device=device)
    for p in range(text_len, L if n_tokens is None else text_len + n_tokens):
        slot = slots_all[p:p + 1]
        logits = model.forward_cached(token, runner.cos[:, slot], runner.sin[:, slot],
                                      causal[slot].expand(2 * B, -1, -1), slot).float()
        logits = guided(logits, B, cfg_scale)
        nxt = (logits.log_softmax(-1) + gumbel(logits.shape, g, device)).argmax(-1)
        token = (nxt + VISUAL_OFFSET).repeat(2, 1)
    return token


def bench_sampling(model, cfg, device, save):
    """Seconds per video of each decoding mode on the same model and prompt. Eager first (the
    paper's comparison); then, with --compile=True, the two cached modes again with the body
    compiled (CUDA graphs on a GPU). The uncached baseline is eager only: its prefix grows every
    frame, so a static-shape compiled body would recompile per frame. Results are saved as each
    mode finishes (`save`), so a run cut short keeps what it measured."""
    frames, h, w, T = cfg["frames"], cfg["h"], cfg["w"], cfg["text_len"]
    prompts = [[1] * (T // 2)] * cfg["sample_batch"]
    common = dict(steps=cfg["steps"], progress=False)
    # next-token decoding is timed over its first next_token_frames frames (0: all) and scaled to
    # the whole video: one forward per token, each the same cost (next_token_decode)
    nt_frames = min(cfg["next_token_frames"] or frames, frames)
    runs = {
        "ar_df_kv_cache": lambda: generate(model, prompts, frames, h, w, T, use_cache=True, **common),
        "ar_df_no_cache": lambda: generate(model, prompts, frames, h, w, T, use_cache=False, **common),
        "next_token_kv_cache": lambda: next_token_decode(model, prompts, frames, h, w, T, CFG_SCALE,
                                                         n_tokens=nt_frames * h * w),
    }
    order = [(name, False) for name in runs]
    if cfg["compile"]:
        order += [("ar_df_kv_cache", True), ("next_token_kv_cache", True)]
    out = {}
    for name, compiled in order:
        if compiled and model._compiled_body is None:
            compile_for_sampling(model)  # each MaskGIT step one compiled graph (CUDA graphs on a GPU)
        if str(device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        s = timed(runs[name], device, cfg["sample_repeat"] or cfg["repeat"])
        timed_frames = nt_frames if name.startswith("next_token") else frames
        s = s * frames / timed_frames  # the whole video
        key = name + ("_compiled" if compiled else "")
        out[key] = dict(s_per_video=s, timed_frames=timed_frames, ms_per_frame=1000 * s / frames,
                        frames_per_s=frames / s,
                        # the whole video over its MaskGIT steps: the prefill and cache writes count in
                        ms_per_step=1000 * s / (frames * cfg["steps"]) if name.startswith("ar_df") else None,
                        peak_mem_gb=torch.cuda.max_memory_allocated() / 1e9 if str(device).startswith("cuda") else None)
        print(f"sampling {key:<29} {out[key]['ms_per_frame']:9.1f} ms/frame {out[key]['frames_per_s']:8.2f} frames/s",
              flush=True)
        save(out)
    ratio = lambda a, b: out[a]["s_per_video"] / out[b]["s_per_video"] if a in out and b in out else None
    out["ratio_next_token_vs_ar_df"] = ratio("next_token_kv_cache", "ar_df_kv_cache")
    out["ratio_no_cache_vs_ar_df"] = ratio("ar_df_no_cache", "ar_df_kv_cache")
    if cfg["compile"]:
        out["ratio_next_token_vs_ar_df_compiled"] = ratio("next_token_kv_cache_compiled", "ar_df_kv_cache_compiled")
        out["ratio_no_cache_eager_vs_ar_df_compiled"] = ratio("ar_df_no_cache", "ar_df_kv_cache_compiled")
    save(out)
    return out


def train_batch(cfg, n_visual, device):
    g = torch.Generator().manual_seed(0)
    frames, h, w, T = cfg["frames"], cfg["h"], cfg["w"], cfg["text_len"]
    seqs = [build_sequence([1] * (T // 2), torch.randint(0, n_visual, (frames, h, w), generator=g), T)
            for _ in range(cfg["batch_size"])]
    b = collate(seqs)
    mask = training_mask("tube", len(seqs), frames, h * w, g)
    loss_mask = torch.zeros_like(b["idx"], dtype=torch.bool)
    loss_mask[:, T:] = mask.flatten(1)
    b.update(targets=b["idx"], idx=b["idx"].masked_fill(loss_mask, MASK), loss_mask=loss_mask)
    return {k: v.to(device) for k, v in b.items()}


def bench_train_step(gpt_cfg, cfg, device, ctx):
    """Seconds per optimizer step, tokens/s, MFU and peak memory of one training configuration,
    stepped with train.py's optimizer of --optimizer (Muon's Newton-Schulz iterations are
    optimizer work: MFU counts the model's FLOPs only)."""
    torch.manual_seed(0)
    with torch.device(device):  # built on the device: a 1B model's init on the CPU takes long
        model = GPT(gpt_cfg)
    opt = make_optimizer(model, dict(TRAIN_DEFAULTS, optimizer=cfg["optimizer"]), device)
    if cfg["compile"]:
        model.compile_body()
    b = train_batch(cfg, gpt_cfg.n_visual, device)
    mask = model.mask_for(b["frame"])  # built once, as a training loop over one layout would

    def step():
        with ctx:
            out = model(b["idx"], b["frame"], b["row"], b["col"], targets=b["targets"],
                             loss_mask=b["loss_mask"], mask=mask)
        (out["loss_sum"] / out["count"]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    s = timed(step, device, cfg["repeat"])
    flops = model.flops_per_sequence(b["frame"][0].cpu(), 0) * len(b["idx"]) \
        + 6 * gpt_cfg.n_embd * gpt_cfg.n_visual * int(b["loss_mask"].sum())
    peak = device_peak_flops(device)
    return dict(s_per_step=s, tokens_per_s=b["idx"].numel() / s, tflops=flops / s / 1e12,
                mfu=flops / s / peak if peak else None,
                peak_mem_gb=torch.cuda.max_memory_allocated() / 1e9 if str(device).startswith("cuda") else None,
                params_m=model.num_params() / 1e6)


def bench_attention(gpt_cfg, cfg, device, dtype):
    """Attention forward + backward alone: the frame-causal rule as FlexAttention with a block
    mask (blocks in a frame's future skipped) and as one unmasked SDPA call per frame
    (model.frame_causal_attention), vs dense bidirectional SDPA (no mask: the fastest dense
    kernel), same q, k, v. Neither builds an [L, L] tensor."""
    from model import flex_attention, frame_causal_attention
    frames, h, w, T = cfg["frames"], cfg["h"], cfg["w"], cfg["text_len"]
    seq = collate([layout([1] * (T // 2), frames, h, w, T)] * cfg["batch_size"])
    frame = seq["frame"].to(device)
    B, L, D = frame.shape[0], frame.shape[1], gpt_cfg.head_dim
    g = torch.Generator(device).manual_seed(0)
    q, k, v = (torch.randn(B, heads, L, D, device=device, dtype=dtype, generator=g)
               .requires_grad_(str(device).startswith("cuda"))
               for heads in (gpt_cfg.n_head, gpt_cfg.n_kv_head, gpt_cfg.n_kv_head))  # the model's GQA
    block_mask, frames_layout = flex_block_mask(frame), frame_layout(frame)
    dense = torch.nn.functional.scaled_dot_product_attention
    runs = {"flex_frame_causal": lambda: flex_attention(q, k, v, block_mask=block_mask, enable_gqa=True),
            "sdpa_per_frame": lambda: frame_causal_attention(q, k, v, frames_layout),
            "sdpa_dense_bidirectional": lambda: dense(q, k, v, enable_gqa=True)}
    backward = str(device).startswith("cuda")  # FlexAttention has no CPU backward: forward only there
    out = {"backward": backward}
    for name, fn in runs.items():
        step = (lambda f=fn: f().sum().backward()) if backward else (lambda f=fn: f().detach())
        out[name] = 1000 * timed(step, device, cfg["repeat"])  # ms
    out["ratio_flex_vs_dense"] = out["flex_frame_causal"] / out["sdpa_dense_bidirectional"]
    out["ratio_per_frame_vs_dense"] = out["sdpa_per_frame"] / out["sdpa_dense_bidirectional"]
    n_kv = -(-L // block_mask.BLOCK_SIZE[1])
    computed = block_mask.kv_num_blocks.sum() + (0 if block_mask.full_kv_num_blocks is None
                                                 else block_mask.full_kv_num_blocks.sum())
    out["blocks_computed_pct"] = 100 * computed.item() / (block_mask.kv_num_blocks.numel() * n_kv)
    return out


def loss_path_memory(gpt_cfg, cfg, device):
    """Bytes of logits the loss keeps alive at once: measured on CUDA (peak allocation of the
    loss alone), computed from the shapes on CPU (where there is no allocator to ask)."""
    rows, d, V = cfg["loss_rows"], gpt_cfg.n_embd, gpt_cfg.n_visual
    out = {}
    for impl in ("chunked", "full"):
        if str(device).startswith("cuda"):
            from model import MaskedRowCrossEntropy
            h = torch.randn(rows, d, device=device, dtype=torch.bfloat16, requires_grad=True)
            wt = torch.randn(V, d, device=device, requires_grad=True)
            t = torch.randint(0, V, (rows,), device=device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            if impl == "chunked":
                loss = MaskedRowCrossEntropy.apply(h, wt, t, loss_chunk_rows(gpt_cfg))[0]
            else:
                loss = torch.nn.functional.cross_entropy((h @ wt.to(h.dtype).t()).float(), t, reduction="sum")
            loss.backward()
            torch.cuda.synchronize()
            out[impl] = dict(bytes=torch.cuda.max_memory_allocated() - base, measured=True)
        else:
            # chunked: one chunk's fp32 logits, turned into their gradient in place; full: all
            # rows' fp32 logits and their gradient
            n = min(rows, loss_chunk_rows(gpt_cfg)) if impl == "chunked" else 2 * rows
            out[impl] = dict(bytes=n * V * 4, measured=False)
    out["ratio_full_vs_chunked"] = out["full"]["bytes"] / out["chunked"]["bytes"]
    return out


def memory_bytes():
    """This machine's physical memory (infinite where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows
        return float("inf")


def main(argv=None):
    cfg = configure(DEFAULTS, argv)
    print_config(cfg)
    check_ranges(cfg, [(("frames", "h", "w", "text_len", "batch_size", "sample_batch", "steps", "repeat",
                         "loss_rows"), AT_LEAST_1), (("loss_chunk", "sample_repeat", "next_token_frames"), AT_LEAST_0)])
    if cfg["model_size"] not in PRESETS or cfg["dtype"] not in ("float32", "bfloat16"):
        raise SystemExit(f"error: --model_size is one of {', '.join(PRESETS)} and --dtype float32 or "
                         f"bfloat16; got {cfg['model_size']!r} and {cfg['dtype']!r}")
    if cfg["optimizer"] not in ("muon", "adamw"):
        raise SystemExit(f"error: --optimizer is 'muon' or 'adamw'; got {cfg['optimizer']!r}")
    sections = cfg["sections"].split(",")
    if not set(sections) <= {"sampling", "attention", "train", "loss"}:
        raise SystemExit(f"error: --sections takes a comma-separated subset of sampling,attention,train,loss; "
                         f"got {cfg['sections']!r}")
    gpt_cfg = GPTConfig(**PRESETS[cfg["model_size"]], n_visual=cfg["n_visual"], attn_impl=cfg["attn_impl"],
                        grad_checkpoint=cfg["grad_checkpoint"], loss_chunk=cfg["loss_chunk"])
    try:  # the attention kernel's name, as train.py checks it
        gpt_cfg.validate()
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    if cfg["device"] == "cpu":  # a model too big for this machine: an error now, not the OOM killer later
        c = gpt_cfg  # parameters of the blocks' matrices, the embedding and the head (norms are few)
        n = c.n_layer * c.n_embd * (2 * c.n_embd + 2 * c.n_kv_head * c.head_dim + 3 * c.ffn_hidden) \
            + (c.vocab_size + c.n_visual) * c.n_embd
        states = 1 if cfg["optimizer"] == "muon" else 2  # per matrix: Muon's momentum; AdamW's two moments
        need = n * 4 * (2 + states if "train" in sections else 1)  # fp32 weights (+ gradients, states)
        have = memory_bytes()
        if need > have:
            raise SystemExit(f"error: the {cfg['model_size']} model needs at least {need / 2**30:.1f} GB here "
                             f"({n / 1e9:.2f}B parameters), more than this machine's {have / 2**30:.1f} GB: "
                             f"take a smaller --model_size, or a GPU")
    if os.path.isdir(cfg["out"]):
        raise SystemExit(f"error: --out={cfg['out']} is a folder: give a file name (bench.json)")
    writable_dir(os.path.dirname(cfg["out"]) or ".", "out")  # the figures go there: checked first
    if os.path.exists(cfg["out"]):  # an earlier run's figures are kept: this run takes a free name
        root, ext = os.path.splitext(cfg["out"])
        k = next(k for k in itertools.count(2) if not os.path.exists(f"{root}_{k}{ext}"))
        print(f"note: {cfg['out']} holds an earlier run's figures: writing {root}_{k}{ext}")
        cfg["out"] = f"{root}_{k}{ext}"
    torch.set_flush_denormal(True)  # CPU: denormal floats are 10x slower and no more useful than 0
    device = cfg["device"]
    ptdtype = getattr(torch, cfg["dtype"])
    ctx = contextlib.nullcontext() if ptdtype == torch.float32 else torch.autocast(torch.device(device).type, dtype=ptdtype)
    dev_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {dev_name} | torch {torch.__version__} | sequence {cfg['text_len']} text + "
          f"{cfg['frames']}x{cfg['h']}x{cfg['w']} visual tokens")
    results = dict(config=cfg, device=dev_name, torch=torch.__version__,
                   date=time.strftime("%Y-%m-%d"))

    def save(section, value):
        results[section] = value
        with open(cfg["out"], "w") as f:
            json.dump(results, f, indent=2)

    for section in sections:  # in the order given
        if section == "sampling":
            # SDPA: the cached sampler runs rows of the dense mask anyway; with FlexAttention the
            # uncached baseline's prefix length changes every frame, and each length recompiles
            torch.manual_seed(0)
            with torch.device(device):
                model = GPT(GPTConfig(**{**gpt_cfg.__dict__, "attn_impl": "sdpa"})).eval()
            with ctx:
                sm = bench_sampling(model, cfg, device, lambda r: save("sampling", r))
            del model
            fmt = lambda r: "-" if r is None else f"{r:.1f}x"
            print(f"eager: next-token decoding {fmt(sm['ratio_next_token_vs_ar_df'])} slower, no KV cache "
                  f"{fmt(sm['ratio_no_cache_vs_ar_df'])} slower than AR-DF with the cache (paper, 1B on one GPU: "
                  f"12.3x and 4.9x)")
            if cfg["compile"]:
                print(f"compiled: next-token {fmt(sm['ratio_next_token_vs_ar_df_compiled'])} slower; eager "
                      f"no-cache {fmt(sm['ratio_no_cache_eager_vs_ar_df_compiled'])} slower than compiled AR-DF")

        elif section == "attention":
            a = bench_attention(gpt_cfg, cfg, device, ptdtype)
            save("attention", a)
            print(f"attention {'fwd+bwd' if a['backward'] else 'fwd'}, {cfg['frames']} frames: FlexAttention frame-causal "
                  f"{a['flex_frame_causal']:.2f} ms ({a['blocks_computed_pct']:.0f}% of the blocks computed), "
                  f"one SDPA call per frame {a['sdpa_per_frame']:.2f} ms, dense bidirectional SDPA "
                  f"{a['sdpa_dense_bidirectional']:.2f} ms: ratios {a['ratio_flex_vs_dense']:.2f} and "
                  f"{a['ratio_per_frame_vs_dense']:.2f}", flush=True)

        elif section == "loss":
            lm = loss_path_memory(gpt_cfg, cfg, device)
            save("loss_memory", lm)
            print(f"loss path at {cfg['loss_rows']} rows x {gpt_cfg.n_visual} codes: chunked "
                  f"{lm['chunked']['bytes'] / 1e9:.3f} GB, full logits {lm['full']['bytes'] / 1e9:.3f} GB "
                  f"({'measured' if lm['chunked']['measured'] else 'from shapes'}), ratio {lm['ratio_full_vs_chunked']:.1f}x",
                  flush=True)

        elif section == "train":
            train = {"optimizer": cfg["optimizer"]}
            for rope in ("mmrope", "1d"):
                r = bench_train_step(GPTConfig(**{**gpt_cfg.__dict__, "rope_kind": rope}), cfg, device, ctx)
                train[rope] = r
                save("train", train)
                print(f"train step, {cfg['optimizer']}, {rope:<7} {1000 * r['s_per_step']:9.1f} ms  {r['tokens_per_s']:10.0f} tok/s  "
                      f"{r['tflops']:.3f} TFLOP/s" + (f"  MFU {100 * r['mfu']:.1f}%" if r["mfu"] else "")
                      + (f"  peak {r['peak_mem_gb']:.2f} GB" if r["peak_mem_gb"] else "")
                      + f"  ({r['params_m']:.0f}M parameters)", flush=True)
            train["mmrope_overhead"] = train["mmrope"]["s_per_step"] / train["1d"]["s_per_step"] - 1
            save("train", train)
            print(f"MM-RoPE step-time overhead over 1D RoPE: {100 * train['mmrope_overhead']:+.1f}%")
    print(f"wrote {cfg['out']}")


if __name__ == "__main__":
    run(main)
