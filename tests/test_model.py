"""The decoder: frame causality through the whole model, the AR-DF loss, the KV-cached forward."""
import pytest
import torch
import torch.nn.functional as F

from masking import attention_mask, history_mask
from model import GPT, PRESETS, GPTConfig
from tokenizer import MASK, PAD_FRAME, VISUAL_OFFSET, build_sequence, collate, encode_text
from conftest import needs_compiler

TEXT_LEN, FRAMES, H, W = 12, 3, 4, 4
N = H * W


def tiny_model(**kw):
    torch.manual_seed(0)
    cfg = dict(n_layer=2, n_head=2, n_kv_head=1, n_embd=64, ffn_hidden=128, n_visual=32,
               rope_scales=(4, 4, 4))
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def batch(seed=0, text="a red cat"):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 32, (FRAMES, H, W), generator=g)
    return collate([build_sequence(encode_text(text), codes, TEXT_LEN),
                    build_sequence(None, codes, TEXT_LEN)])


def logits(model, b):
    with torch.no_grad():
        return model(b["idx"], b["frame"], b["row"], b["col"])


@pytest.mark.parametrize("k", [0, 1])
def test_later_frames_never_change_earlier_outputs(k):
    model, b = tiny_model(), batch()
    before = logits(model, b)
    start = TEXT_LEN + (k + 1) * N  # first token of frame k+1
    changed = {**b, "idx": b["idx"].clone()}
    changed["idx"][:, start + 5] = VISUAL_OFFSET + (changed["idx"][:, start + 5] - VISUAL_OFFSET + 1) % 32
    after = logits(model, changed)
    assert torch.equal(after[:, :start], before[:, :start])  # text and frames 0..k: bit-identical
    # ... while frame k+1 itself is bidirectional: its other tokens do change
    assert not torch.allclose(after[:, start:start + N], before[:, start:start + N])


def test_per_frame_attention_equals_the_dense_mask():
    """attn_impl='frames' (one unmasked SDPA call per frame, padding keys pushed out through an
    extra q.k dimension) gives the dense mask's logits, loss and gradients, padding included (the
    unconditional row of the batch is all padding in its prompt)."""
    b = batch()
    idx, loss_mask = masked_inputs(b)
    outs = []
    for impl in ("sdpa", "frames"):
        model = tiny_model(attn_impl=impl).train()
        out = model(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
        (out["loss_sum"] / out["count"]).backward()
        real = b["frame"] != PAD_FRAME  # padding rows' own outputs are never used
        outs.append((logits(model, b)[real], out["loss_sum"].detach(),
                     {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l1, s1, g1), (l2, s2, g2) = outs
    torch.testing.assert_close(l2, l1, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(s2, s1)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-6, rtol=1e-4, msg=name)


def test_frame_layout_rejects_a_batch_it_cannot_describe():
    from masking import frame_layout
    b = batch()
    layout = frame_layout(b["frame"])
    assert (layout.text_len, layout.n) == (TEXT_LEN, N)
    assert (layout.key_bias < 0).sum() == (b["frame"] == PAD_FRAME).sum()
    shuffled = b["frame"][:, torch.randperm(b["frame"].shape[1], generator=torch.Generator().manual_seed(0))]
    with pytest.raises(ValueError, match="whole frames"):
        frame_layout(shuffled)


@needs_compiler
def test_flex_attention_equals_dense_sdpa():
    pytest.importorskip("torch.nn.attention.flex_attention")
    sdpa, flex = tiny_model(), tiny_model(attn_impl="flex")
    b = batch()
    torch.testing.assert_close(logits(flex, b), logits(sdpa, b), atol=2e-5, rtol=1e-4)


def masked_inputs(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    loss_mask = (b["frame"] >= 0) & (torch.rand(b["idx"].shape, generator=g) < 0.7)
    return b["idx"].masked_fill(loss_mask, MASK), loss_mask


def test_chunked_loss_equals_full_logits_cross_entropy():
    b = batch()
    idx, loss_mask = masked_inputs(b)
    results = []
    for impl in ("chunked", "reference"):
        model = tiny_model(loss_chunk=7).train()
        if impl == "chunked":
            out = model(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
            loss = out["loss_sum"] / out["count"]
        else:  # plain F.cross_entropy on the full logits, at the masked positions
            full = model(idx, b["frame"], b["row"], b["col"])
            loss = F.cross_entropy(full[loss_mask], b["idx"][loss_mask] - VISUAL_OFFSET)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], atol=1e-6, rtol=1e-4, msg=name)
    with torch.no_grad():  # evaluation takes the forward-only path: the same losses
        out = model(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
    torch.testing.assert_close(out["loss_sum"] / out["count"], l1)


def test_loss_weighs_every_masked_token_alike():
    # the paper averages over the masked tokens of the batch, so a sample with more masked tokens
    # counts for more: with unequal counts that is not the mean of the per-sample means
    b = batch()
    idx, masked = masked_inputs(b)
    model = tiny_model(loss_chunk=7).train()
    with torch.no_grad():
        full = model(idx, b["frame"], b["row"], b["col"]).float()
    ce = F.cross_entropy(full.transpose(1, 2), b["idx"].clamp(min=VISUAL_OFFSET) - VISUAL_OFFSET,
                         reduction="none")  # (B, L): every position's loss
    loss_mask = masked.clone()  # sample 1 scores only its 3 best-predicted masked tokens
    loss_mask[1] = False
    loss_mask[1, ce[1].masked_fill(~masked[1], float("inf")).argsort()[:3]] = True
    out = model(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
    torch.testing.assert_close(out["loss_sum"].detach(), ce[loss_mask].sum())
    assert out["count"] == loss_mask.sum() == masked[0].sum() + 3
    per_sample = (ce[0][loss_mask[0]].mean() + ce[1][loss_mask[1]].mean()) / 2
    assert abs(per_sample - ce[loss_mask].mean()) > 0.05  # the two averages differ here


def test_chunked_loss_backward_twice_is_an_error():
    b = batch()
    idx, loss_mask = masked_inputs(b)
    out = tiny_model().train()(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
    out["loss_sum"].backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward runs once"):
        out["loss_sum"].backward()


def test_chunked_loss_in_bf16_matches_the_bf16_logits_reference():
    """The bf16 path (autocast on a GPU: bf16 rows, fp32 head weight): chunk by chunk it gives
    the loss and gradients of cross-entropy on the full bf16 logits taken to fp32."""
    from model import MaskedRowCrossEntropy
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, 16, generator=g).bfloat16().requires_grad_()
    w = (0.3 * torch.randn(40, 16, generator=g)).requires_grad_()
    t = torch.randint(0, 40, (50,), generator=g)
    grads = []
    for impl in ("chunked", "reference"):
        if impl == "chunked":
            loss = MaskedRowCrossEntropy.apply(h, w, t, 16)[0] / 50
        else:
            loss = F.cross_entropy((h @ w.bfloat16().t()).float(), t, reduction="sum") / 50
        loss.backward()
        grads.append((loss.detach(), h.grad.float(), w.grad.clone()))
        h.grad, w.grad = None, None
    (l1, gh1, gw1), (l2, gh2, gw2) = grads
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(gh1, gh2, atol=1e-3, rtol=2e-2)
    torch.testing.assert_close(gw1, gw2, atol=1e-3, rtol=2e-2)

def loss_and_grads(model, b):
    idx, loss_mask = masked_inputs(b)
    out = model(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
    (out["loss_sum"] / out["count"]).backward()
    return out["loss_sum"].detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@needs_compiler
@pytest.mark.parametrize("variant", ["grad_checkpoint", "compiled", "compiled_frames"])
def test_checkpointed_and_compiled_training_match_eager(variant):
    """Activation checkpointing and the compiled body (the GPU training paths, on CPU here, so
    a compile break is caught without a GPU) give the eager loss and gradients; compiled
    per-frame attention gives the eager dense mask's."""
    b = batch()
    ref_loss, ref_grads = loss_and_grads(tiny_model().train(), b)
    if variant == "grad_checkpoint":
        model = tiny_model(grad_checkpoint=True).train()
    elif variant == "compiled":
        model = tiny_model().train().compile_body()
    else:
        model = tiny_model(attn_impl="frames").train().compile_body()
    loss, grads = loss_and_grads(model, b)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-3, msg=name)


@needs_compiler
def test_compiled_body_with_flex_attention_equals_eager_sdpa():
    """FlexAttention traced inside the compiled body (forward only: it has no CPU backward)."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    b = batch()
    flex = tiny_model(attn_impl="flex").compile_body()
    torch.testing.assert_close(logits(flex, b), logits(tiny_model(), b), atol=2e-5, rtol=1e-4)


def test_per_frame_loss_is_each_frames_cross_entropy():
    model, b = tiny_model(), batch()
    idx, loss_mask = masked_inputs(b)
    out = model(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
    assert out["frame_count"].sum() == out["count"] == loss_mask.sum()
    torch.testing.assert_close(out["frame_loss_sum"].sum(), out["loss_sum"].detach())
    with torch.no_grad():  # by hand: full logits, cross-entropy at frame f's masked tokens
        full = model(idx, b["frame"], b["row"], b["col"]).float()
    for f in range(FRAMES):
        rows = loss_mask & (b["frame"] == f)
        ce = F.cross_entropy(full[rows], b["idx"][rows] - VISUAL_OFFSET, reduction="sum")
        assert out["frame_count"][f] == rows.sum()
        torch.testing.assert_close(out["frame_loss_sum"][f], ce, atol=1e-4, rtol=1e-5)


def test_flop_count_has_each_part_once():
    """The useful-work count behind MFU: the body on every token, attention on the attended
    pairs only, the visual head on the masked rows, the text head on the prompt's rows."""
    f = batch()["frame"][0]
    plain, texty = tiny_model(), tiny_model(text_head=True)
    base = plain.flops_per_sequence(f, 0)
    body = plain.num_params() - plain.wte.weight.numel() - plain.head.weight.numel()
    pairs = int(attention_mask(f).sum())
    assert pairs < len(f) ** 2  # the frame-causal rule skips pairs
    assert base == 6 * body * len(f) + 12 * 2 * 2 * 32 * pairs  # 2 layers, 2 heads of 32
    assert plain.flops_per_sequence(f, 5) - base == 6 * 64 * 32 * 5
    prompt_rows = int(((f[:-1] == -1) & (f[1:] == -1)).sum())
    assert texty.flops_per_sequence(f, 0) - base == 6 * texty.text_head.weight.numel() * prompt_rows


@pytest.mark.parametrize("kind", ["1d", "mrope", "mmrope"])
@pytest.mark.parametrize("scales", [(4, 4, 4), (1, 1, 1), (2, 3, 5)])
def test_the_model_rotates_with_its_configured_rope(kind, scales):
    """The RoPE studies' arms differ only in GPTConfig: the model must use exactly that rope,
    its base included (not the default one here)."""
    from rope import rope_cos_sin, rope_positions
    model, b = tiny_model(rope_kind=kind, rope_scales=scales, rope_base=500.0), batch()
    cos, sin = model.rope(b["frame"], b["row"], b["col"])
    pos = rope_positions(b["frame"], b["row"], b["col"], kind, scales)
    want_cos, want_sin = rope_cos_sin(pos, model.cfg.head_dim, kind, model.cfg.rope_base)
    torch.testing.assert_close(cos, want_cos)
    torch.testing.assert_close(sin, want_sin)


def test_attention_normalises_q_and_k_per_head_before_rope():
    """One attention layer against the method written out: QK-norm over head_dim (with its
    learned weight), then RoPE, then frame-causal attention with the kv heads shared (GQA).
    The weights are perturbed from their init of 1, where norm and rotation would commute."""
    from rope import apply_rope
    model, b = tiny_model(), batch()
    attn, d, n_head = model.blocks[0].attn, model.cfg.head_dim, model.cfg.n_head
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.2, 3.0)
        attn.k_norm.weight.uniform_(0.2, 3.0)
    x = torch.randn(2, b["idx"].shape[1], model.cfg.n_embd)
    cos, sin = model.rope(b["frame"], b["row"], b["col"])
    mask = attention_mask(b["frame"])

    def reference(norm_first):
        B, L, _ = x.shape
        q, k, v = attn.qkv(x).split([n_head * d, d, d], -1)  # one kv head
        q, k, v = q.view(B, L, n_head, d).transpose(1, 2), k.view(B, L, 1, d).transpose(1, 2), \
            v.view(B, L, 1, d).transpose(1, 2)
        q_norm = lambda t: F.rms_norm(t, (d,), attn.q_norm.weight, model.cfg.norm_eps)
        k_norm = lambda t: F.rms_norm(t, (d,), attn.k_norm.weight, model.cfg.norm_eps)
        if norm_first:
            q, k = apply_rope(q_norm(q), cos, sin), apply_rope(k_norm(k), cos, sin)
        else:
            q, k = q_norm(apply_rope(q, cos, sin)), k_norm(apply_rope(k, cos, sin))
        scores = (q @ k.expand(B, n_head, L, d).mT) / d ** 0.5
        scores = scores.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
        y = (scores @ v.expand(B, n_head, L, d)).transpose(1, 2).reshape(B, L, n_head * d)
        return attn.proj(y)

    with torch.no_grad():
        out = attn(x, cos, sin, mask)
        torch.testing.assert_close(out, reference(norm_first=True), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(out, reference(norm_first=False), atol=1e-3)  # the order shows


@pytest.mark.parametrize("n_head,n_kv_head", [(2, 1), (4, 2)])
def test_model_is_the_llama_style_decoder_written_out(n_head, n_kv_head):
    """The backbone of sec. 1 written out from the textbook, on the model's weights: pre-norm
    RMSNorm, QK-norm then RoPE, grouped-query attention (query head j reads kv head
    j // (n_head / n_kv_head)) under the frame-causal mask, residuals, SwiGLU (silu(gate) * up),
    final RMSNorm, the visual head. Dense and per-frame attention both give it. The norms' weights
    are drawn away from their init of 1, so that each one shows."""
    from rope import apply_rope
    model, b = tiny_model(n_head=n_head, n_kv_head=n_kv_head, n_embd=32 * n_head), batch()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.copy_(0.2 + 2.8 * torch.rand(p.shape, generator=g))
    d, eps = model.cfg.head_dim, model.cfg.norm_eps
    rms_norm = lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    heads = lambda t, n: t.view(B, L, n, d).transpose(1, 2)  # (B, n, L, d)
    cos, sin = model.rope(b["frame"], b["row"], b["col"])
    allowed = attention_mask(b["frame"])[:, None]  # (B, 1, L, L)
    with torch.no_grad():
        x = model.wte(b["idx"])
        B, L, _ = x.shape
        for block in model.blocks:
            a, m = block.attn, block.mlp
            q, k, v = a.qkv(rms_norm(x, block.attn_norm.weight)).split(
                [n_head * d, n_kv_head * d, n_kv_head * d], -1)
            q = apply_rope(rms_norm(heads(q, n_head), a.q_norm.weight), cos, sin)
            k = apply_rope(rms_norm(heads(k, n_kv_head), a.k_norm.weight), cos, sin)
            k, v = (t.repeat_interleave(n_head // n_kv_head, 1) for t in (k, heads(v, n_kv_head)))
            att = (q @ k.mT / d ** 0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
            x = x + a.proj((att @ v).transpose(1, 2).reshape(B, L, n_head * d))
            gate, up = m.gate_up(rms_norm(x, block.mlp_norm.weight)).chunk(2, -1)
            x = x + m.down(F.silu(gate) * up)
        want = model.head(rms_norm(x, model.norm.weight))
    for impl in ("sdpa", "frames"):
        model.cfg.attn_impl = impl  # GPT.mask_for reads it at every call
        torch.testing.assert_close(logits(model, b), want, atol=1e-5, rtol=1e-4, msg=impl)


def test_residual_projections_start_smaller_with_depth():
    """GPT-2's init: every matrix N(0, 0.02) except the two that write into the residual stream
    (attention's output projection, the MLP's down projection), N(0, 0.02 / sqrt(2 * n_layer)),
    so the stream's variance at init does not grow with depth; the norms' gains start at 1."""
    model = tiny_model(n_layer=8, n_embd=128, ffn_hidden=384)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            assert (p == 1).all(), name
            continue
        want = 0.02 / 4 if name.endswith(("attn.proj.weight", "mlp.down.weight")) else 0.02
        assert abs(p.std().item() / want - 1) < 0.05, name


def test_train_config_turns_rope_scaling_off():
    import train
    meta = dict(compression=[2, 3, 5], codebook_size=32)
    for scaling, scales in ((True, (2, 3, 5)), (False, (1, 1, 1))):
        cfg = train.model_config(dict(train.DEFAULTS, rope_scaling=scaling, rope_kind="mrope"), meta)
        assert cfg.rope_scales == scales and cfg.rope_kind == "mrope"


def test_cached_frame_forward_equals_full_forward():
    """Frame by frame through the KV cache, history mask included, gives the full forward's rows."""
    model, b = tiny_model(), batch()
    hist = history_mask(N, 0.7)
    idx = b["idx"].clone()
    for f in range(FRAMES - 1):  # earlier frames enter the context history-masked
        s = TEXT_LEN + f * N
        idx[:, s:s + N] = idx[:, s:s + N].masked_fill(hist, MASK)
    last = TEXT_LEN + (FRAMES - 1) * N
    idx[:, last + 3] = MASK  # the current frame is partly masked, as mid-sampling
    full = logits(model, {**b, "idx": idx})

    L = idx.shape[1]
    model.setup_cache(batch_size=2, max_len=L)
    cos, sin = model.rope(b["frame"], b["row"], b["col"])
    spans = [torch.arange(TEXT_LEN)] + [torch.arange(TEXT_LEN + f * N, TEXT_LEN + (f + 1) * N)
                                        for f in range(FRAMES)]
    with torch.no_grad():
        for slots in spans:
            out = model.forward_cached(idx[:, slots], cos[:, slots], sin[:, slots],
                                       attention_mask(b["frame"], slots), slots)
    torch.testing.assert_close(out, full[:, last:], atol=1e-5, rtol=1e-5)


def test_setup_cache_keeps_same_shape_buffers_cleared_and_remakes_others():
    """The same shape and dtype again: the same buffers (a compiled step stays valid), zeroed;
    another batch size or dtype: new buffers of that shape and dtype."""
    model = tiny_model()
    model.setup_cache(batch_size=2, max_len=20)
    cache = model.blocks[0].attn.kv_cache
    assert cache.k.shape == (2, 1, 20, 32) and cache.k.dtype == torch.float32
    cache.k.fill_(1.0), cache.v.fill_(1.0)
    model.setup_cache(batch_size=2, max_len=20)
    assert model.blocks[0].attn.kv_cache is cache and not cache.k.any() and not cache.v.any()
    model.setup_cache(batch_size=3, max_len=20)
    assert model.blocks[0].attn.kv_cache.k.shape == (3, 1, 20, 32)
    model.setup_cache(batch_size=3, max_len=20, dtype=torch.bfloat16)
    assert all(b.attn.kv_cache.v.dtype == torch.bfloat16 for b in model.blocks)


def test_tiny_model_overfits_one_clip():
    """The loss path trains: a fixed masked clip is memorised (loss falls tenfold)."""
    model = tiny_model().train()
    b = batch()
    idx, loss_mask = masked_inputs(b)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(200):
        out = model(idx, b["frame"], b["row"], b["col"], targets=b["idx"], loss_mask=loss_mask)
        loss = out["loss_sum"] / out["count"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_bad_config_is_a_clear_value_error():
    with pytest.raises(ValueError, match="multiple of 32"):
        GPT(GPTConfig(n_embd=96, n_head=2, n_kv_head=1))  # head_dim 48 can't be split by mmrope
    with pytest.raises(ValueError, match="divisible"):
        GPT(GPTConfig(n_embd=128, n_head=4, n_kv_head=3))
    with pytest.raises(ValueError, match="unknown rope kind"):
        GPT(GPTConfig(rope_kind="xyz"))
    with pytest.raises(ValueError, match="attn_impl must be .* got 'dense'"):
        GPT(GPTConfig(attn_impl="dense"))
    with pytest.raises(ValueError, match="loss_impl must be 'chunked' or 'full', got 'fused'"):
        GPT(GPTConfig(loss_impl="fused"))


def test_text_loss_is_next_byte_prediction_on_the_prompt_only():
    """text_head (train.py's text_loss): each prompt token predicts the next one, BOS to EOT. It
    sees only the prompt before it (text is causal), so no visual token changes it, and a sample
    without text adds nothing."""
    model = tiny_model(text_head=True)
    b = batch(text="a red cat")  # row 0 with text, row 1 the same clip without
    loss_mask = torch.zeros_like(b["idx"], dtype=torch.bool)
    loss_mask[:, TEXT_LEN:] = True
    targets = b["idx"].clone()
    out = model(b["idx"], b["frame"], b["row"], b["col"], targets=targets, loss_mask=loss_mask)
    ids = encode_text("a red cat")
    assert out["text_count"] == len(ids) - 1
    with torch.no_grad():
        h = model.hidden(b["idx"][:1], *model.rope(b["frame"][:1], b["row"][:1], b["col"][:1]),
                         attention_mask(b["frame"][:1]))
    start = TEXT_LEN - len(ids)
    expected = F.cross_entropy(model.text_head(h[0, start:TEXT_LEN - 1]), torch.tensor(ids[1:]),
                               reduction="sum")
    torch.testing.assert_close(out["text_loss_sum"], expected)
    other = b["idx"].clone()
    other[:, TEXT_LEN:] = VISUAL_OFFSET + (other[:, TEXT_LEN:] - VISUAL_OFFSET + 7) % 32
    out2 = model(other, b["frame"], b["row"], b["col"], targets=other, loss_mask=loss_mask)
    torch.testing.assert_close(out2["text_loss_sum"], out["text_loss_sum"])
    assert not torch.allclose(out2["loss_sum"], out["loss_sum"])


def test_config_defaults_are_the_tiny_preset():
    """GPTConfig() is the default job's model: its shape fields are PRESETS["tiny"]."""
    default = GPTConfig()
    assert {k: getattr(default, k) for k in PRESETS["tiny"]} == PRESETS["tiny"]


def test_checkpoint_config_with_unknown_settings():
    """A checkpoint's model_args with a setting this code lacks: dropped when it is off (the
    model is the same), a clear error when it is on (the model would not be the one trained)."""
    d = dict(vars(GPTConfig()), rope_scales=[4, 4, 4])
    assert GPTConfig.from_dict(dict(d, some_future_option=0)) == GPTConfig()
    with pytest.raises(ValueError, match="some_future_option"):
        GPTConfig.from_dict(dict(d, some_future_option=64))
