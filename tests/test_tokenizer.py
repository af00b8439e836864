"""Properties of the tokenizers: the sequence layout round-trips, FSQ is a bijection with a
straight-through gradient, the video tokenizer is causal in time and an image is a 1-frame video."""
import math

import numpy as np
import pytest
import torch

from tokenizer import (BOS, EOT, MASK, MAX_WORDS, N_BYTES, N_TEXT, PAD, PAD_FRAME, TEXT_FRAME,
                       VISUAL_OFFSET, FSQ, TokenizerConfig, VideoTokenizer, build_sequence, collate,
                       decode_text, encode_text, format_prompt, layout, learn_words, load_tokenizer,
                       save_tokenizer, unknown_words, visual_codes)


# --- text and sequence layout -------------------------------------------------------------------

def test_text_round_trip():
    text = "a red circle moves left, 32x32 9f 8fps: ünïcode"
    ids = encode_text(text)
    assert ids[0] == BOS and ids[-1] == EOT
    assert decode_text(ids) == text


def test_learned_words_are_single_tokens_and_the_rest_is_spelled_in_bytes():
    captions = ["32x32 9f 8fps: a red circle moves left", "32x32 9f 8fps: a blue circle moves up",
                "32x32 1f 8fps: a red square"]
    words = learn_words(captions)
    # pieces seen twice or more, most frequent first, each with the spaces before it
    assert words[:3] == (" 8fps:", " a", "32x32") and " red" in words and " blue" not in words
    assert learn_words(captions, max_words=2) == words[:2]
    text = "32x32 9f 8fps: a red triangle moves  left"  # an unseen word and a double space
    ids = encode_text(text, words)
    assert decode_text(ids, words) == text
    assert ids[1:4] == [N_BYTES + words.index(w) for w in ("32x32", " 9f", " 8fps:")]
    assert all(i < N_TEXT for i in ids[1:-1])
    assert list(" triangle".encode()) == ids[6:15]  # unknown: its bytes, its space included
    assert unknown_words(text, words) == ["triangle", "left"]
    assert len(ids) == 2 + 6 + len(" triangle") + len("  left")  # BOS, EOT, 6 words
    assert encode_text(text) == [BOS] + list(text.encode()) + [EOT]  # no words: plain bytes
    assert PAD == N_TEXT and VISUAL_OFFSET == N_TEXT + 4  # words sit between bytes and specials
    with pytest.raises(ValueError, match="word ids"):
        encode_text("a", tuple(str(i) for i in range(N_TEXT)))


def test_build_sequence_round_trip_and_ids():
    F_, h, w, text_len = 3, 2, 4, 20
    codes = torch.randint(0, 1000, (F_, h, w))
    text = encode_text("a blue square")
    seq = build_sequence(text, codes, text_len)
    assert torch.equal(visual_codes(seq["idx"], text_len, F_, h, w), codes)
    # text left-padded, then frames in temporal order, row-major inside a frame
    n_pad = text_len - len(text)
    assert (seq["idx"][:n_pad] == PAD).all() and (seq["frame"][:n_pad] == PAD_FRAME).all()
    assert seq["idx"][n_pad:text_len].tolist() == text
    assert (seq["frame"][n_pad:text_len] == TEXT_FRAME).all()
    f, r, c = np.unravel_index(np.arange(F_ * h * w), (F_, h, w))
    assert seq["frame"][text_len:].tolist() == f.tolist()
    assert seq["row"][text_len:].tolist() == r.tolist()
    assert seq["col"][text_len:].tolist() == c.tolist()
    assert (seq["idx"][text_len:] >= VISUAL_OFFSET).all()


def test_unconditional_layout_has_no_text():
    seq = layout(None, 2, 2, 2, text_len=5)
    assert (seq["idx"][:5] == PAD).all() and (seq["frame"][:5] == PAD_FRAME).all()
    assert (seq["idx"][5:] == MASK).all()
    assert not (seq["frame"] == TEXT_FRAME).any()


@pytest.mark.parametrize("text", ["  a red circle ", " ", "a\tred\n", "left  "])
def test_text_round_trip_keeps_every_space(text):
    """Leading, trailing and repeated whitespace survive encode/decode, with and without words."""
    words = learn_words([" red circle", " red circle", "a", "a"])
    for vocab in ((), words):
        assert decode_text(encode_text(text, vocab), vocab) == text


def test_learned_words_do_not_depend_on_caption_order():
    """Most frequent first, ties in string order: shuffled captions give the same vocabulary."""
    captions = ["x y", "y x", "x y", "y x", "z z z z"]
    assert learn_words(captions) == learn_words(captions[::-1]) == (" z", " x", " y", "x", "y")


def test_the_vocabulary_holds_at_most_max_words_and_all_of_them_encode():
    """With more frequent pieces than word ids the default keeps MAX_WORDS of them, and a full
    vocabulary is usable: each of its words is one token."""
    captions = [" ".join(f"w{i}" for i in range(2 * MAX_WORDS))] * 2
    words = learn_words(captions)
    assert len(words) == MAX_WORDS
    text = "".join(words)
    ids = encode_text(text, words)
    assert ids[1:-1] == list(range(N_BYTES, N_BYTES + MAX_WORDS))
    assert decode_text(ids, words) == text


def test_a_padded_prompt_decodes_to_its_text():
    """decode_text drops BOS, EOT and the left padding of a sequence's text slots."""
    text = "a red circle"
    words = learn_words([text, text])
    seq = build_sequence(encode_text(text, words), torch.zeros(1, 2, 2, dtype=torch.long), text_len=30)
    assert decode_text(seq["idx"][:30].tolist(), words) == text
    assert decode_text(seq["idx"].tolist(), words) == text  # visual ids and MASK are dropped too


def test_prompt_templates_carry_resolution_frames_and_fps():
    """width x height (in that order), frame count and fps, then the caption; 'short' by default,
    'official' as in the official code."""
    args = ("a red circle", 64, 32, 9, 8)
    assert format_prompt(*args) == format_prompt(*args, template="short") == "64x32 9f 8fps: a red circle"
    assert format_prompt(*args, template="official") == (
        "Generate a video with a resolution of 64x32, consisting of 9 frames at 8 frames per second, "
        "according to the following prompt: a red circle")
    with pytest.raises(ValueError, match="unknown prompt template"):
        format_prompt(*args, template="long")


def test_a_prompt_may_fill_the_whole_text_budget():
    """A prompt of exactly text_len tokens has no padding; one token more is an error."""
    ids = encode_text("a red")
    seq = layout(ids, 1, 2, 2, text_len=len(ids))
    assert seq["idx"][:len(ids)].tolist() == ids and (seq["frame"][:len(ids)] == TEXT_FRAME).all()
    with pytest.raises(ValueError, match="text budget"):
        layout(ids, 1, 2, 2, text_len=len(ids) - 1)


def test_collated_rows_start_the_video_at_the_same_column():
    """Prompts of different lengths (and none) in one batch: each row keeps its own prompt,
    left-padded, and every row's video starts at text_len."""
    codes = torch.arange(8).reshape(2, 2, 2)
    texts = [encode_text("a"), encode_text("a much longer prompt"), None]
    b = collate([build_sequence(t, codes + i, 24) for i, t in enumerate(texts)])
    assert b["idx"].shape == (3, 24 + 8)
    for i, t in enumerate(texts):
        assert torch.equal(visual_codes(b["idx"][i], 24, 2, 2, 2), codes + i)
        n = 0 if t is None else len(t)
        assert b["idx"][i, 24 - n:24].tolist() == (t or [])
        assert (b["frame"][i, :24 - n] == PAD_FRAME).all()


# --- FSQ ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (8, 8, 8, 5, 5, 5), (2, 3, 4)])
def test_fsq_index_code_bijection(levels):
    fsq = FSQ(levels)
    assert fsq.codebook_size == int(np.prod(levels))
    idx = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(idx)
    assert torch.equal(fsq.codes_to_indices(codes), idx)
    assert len(torch.unique(codes, dim=0)) == fsq.codebook_size  # distinct codes
    assert codes.min() >= -1 and codes.max() <= 1
    # every quantised output is a valid code, and the levels are all reachable
    out = fsq(torch.randn(20000, len(levels)) * 3)
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(out)), out)
    for i, L in enumerate(levels):
        assert len(torch.unique(out[:, i])) == L


def test_fsq_straight_through_gradient():
    fsq = FSQ((8, 5, 5, 5))
    z = (torch.randn(64, 4) * 0.5).requires_grad_()
    upstream = torch.randn(64, 4)
    (fsq(z) * upstream).sum().backward()
    # rounding is skipped in the backward pass: same gradient as the unrounded, bounded latent
    z2 = z.detach().clone().requires_grad_()
    ((fsq.bound(z2) / (fsq.L // 2)) * upstream).sum().backward()
    assert (z.grad != 0).all()
    assert torch.allclose(z.grad, z2.grad)


# --- video tokenizer ----------------------------------------------------------------------------

def tiny_tokenizer(compression=(4, 4, 4), seed=0, norm="none", encoder_kernel=3, temporal_kernel=2):
    """An untrained tokenizer with random weights at a gain where codes spread over the codebook
    (the default init starts residual branches at zero, which would give one code everywhere)."""
    torch.manual_seed(seed)
    model = VideoTokenizer(TokenizerConfig(levels=(8, 5, 5, 5), compression=compression,
                                           channels=(8, 8), temporal_kernel=temporal_kernel, norm=norm,
                                           encoder_kernel=encoder_kernel))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.5 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1)
    return model.eval()


def random_video(T, H=16, W=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("compression,norm", [((4, 4, 4), "none"), ((2, 8, 8), "none"),
                                              ((4, 4, 4), "group")])
def test_encoder_is_causal_in_time(compression, norm):
    model = tiny_tokenizer(compression, norm=norm)
    s_t, s_h, s_w = compression
    video = random_video(1 + 3 * s_t)
    full = model.encode(video)
    assert full.shape == (4, 16 // s_h, 16 // s_w)
    assert len(torch.unique(full)) > full.numel() // 4  # a meaningful test: codes vary
    for k in range(3):
        prefix = model.encode(video[:1 + k * s_t])
        assert torch.equal(prefix, full[:1 + k])
        # changing every frame after the prefix leaves the prefix's codes alone
        other = video.copy()
        other[1 + k * s_t:] = random_video(len(video) - 1 - k * s_t, seed=k + 1)
        assert torch.equal(model.encode(other)[:1 + k], full[:1 + k])


@pytest.mark.parametrize("norm", ["none", "group"])
def test_decoder_is_causal_in_time(norm):
    """Pixel frames 0 .. s_t*k come from latent frames 0 .. k only: decoding a prefix of the codes
    gives the prefix of the video, and an image's code decodes to the video's frame 0."""
    model = tiny_tokenizer(norm=norm)  # temporal_kernel=2: the decoder sees the previous latent frame
    codes = model.encode(random_video(13))  # 4 latent frames
    video = model.decode(codes)
    assert video.shape[0] == 13 and len(torch.unique(video)) > 50  # a meaningful test: pixels vary
    for k in range(4):
        assert torch.equal(model.decode(codes[:1 + k]), video[:1 + 4 * k])
    later = codes.clone()
    later[2:] = (later[2:] + 1) % model.codebook_size
    assert torch.equal(model.decode(later)[:5], video[:5])


def test_a_wider_temporal_kernel_is_causal_too():
    """temporal_kernel=3 mixes three latent frames: padded on the past side by kernel - 1 (not
    kernel // 2, which only agrees at 2), so every clip length still encodes and decodes, and a
    prefix of the clip gives the prefix of the codes and of the pixels."""
    model = tiny_tokenizer(temporal_kernel=3)
    video = random_video(13)
    codes = model.encode(video)
    assert codes.shape == (4, 4, 4) and len(torch.unique(codes)) > codes.numel() // 4
    decoded = model.decode(codes)
    assert decoded.shape == (13, 16, 16, 3)
    for k in range(3):
        assert torch.equal(model.encode(video[:1 + 4 * k]), codes[:1 + k])
        assert torch.equal(model.decode(codes[:1 + k]), decoded[:1 + 4 * k])


def test_encode_then_decode_is_the_training_pass_to_the_nearest_grey_level():
    """encode/decode (shards, sampling, ShapesBench) and forward (training) are one model: the same
    pixel scaling in, the same codes, and decode gives the uint8 nearest to forward's output."""
    from tokenizer import to_model_input
    model = tiny_tokenizer()
    video = torch.from_numpy(random_video(5))[None]
    with torch.no_grad():
        recon = model(to_model_input(video))  # (1, 3, T, H, W)
    target = ((recon.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 4, 1)  # (1, T, H, W, 3)
    assert ((target > 1) & (target < 254)).float().mean() > 0.3  # a meaningful test: many mid greys
    decoded = model.decode(model.encode(video)).float()
    assert (decoded - target).abs().max() <= 0.5 + 1e-3


def test_fingerprint_names_the_weights(tmp_path):
    """Shards record the fingerprint of the tokenizer that made them: the same for the same weights
    (after a save and load), another for other weights, even for one changed value."""
    model = tiny_tokenizer()
    fp = model.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    save_tokenizer(model, str(tmp_path / "tok.pt"))
    assert load_tokenizer(str(tmp_path / "tok.pt")).fingerprint() == fp
    assert tiny_tokenizer(seed=1).fingerprint() != fp
    with torch.no_grad():
        model.encoder.out.bias[0] += 1e-3
    assert model.fingerprint() != fp


def test_time_to_depth_round_trip():
    from tokenizer import depth_to_time, time_to_depth
    x = torch.randn(2, 3, 9, 4, 4)
    packed = time_to_depth(x, 4)
    assert packed.shape == (2, 12, 3, 4, 4)
    assert torch.equal(depth_to_time(packed, 4), x)
    # latent frame 0 holds pixel frame 0 alone; latent frame 1 holds pixel frames 1-4
    assert torch.equal(packed[:, :, 0].reshape(2, 3, 4, 4, 4)[:, :, -1], x[:, :, 0])
    assert torch.equal(packed[:, :, 1].reshape(2, 3, 4, 4, 4), x[:, :, 1:5])


@pytest.mark.parametrize("optimizer,max_iters", [("adam", 60), ("muon", 120)])
def test_a_short_training_run_learns_to_reconstruct(tmp_path, optimizer, max_iters):
    """train_tokenizer end to end on a few shapes clips: the checkpoint, the figure, and a PSNR
    far above the untrained tokenizer's, on the same validation clips. (Muon's first steps are
    smaller than Adam's, RMS 0.2 lr against about lr, so it gets more of them.)"""
    from tokenizer import TRAIN_DEFAULTS, TokenizerConfig, evaluate, make_pool, train_tokenizer
    cfg = dict(TRAIN_DEFAULTS, out_dir=str(tmp_path), height=16, width=16, frames=5,
               channels=(16, 16), n_videos=32, n_images=32, n_val=8, max_iters=max_iters,
               warmup_iters=5, log_interval=20, optimizer=optimizer)
    torch.manual_seed(cfg["seed"])
    arch = {f: cfg[f] for f in TokenizerConfig.__dataclass_fields__}
    untrained = VideoTokenizer(TokenizerConfig(**arch)).eval()
    val = (make_pool("val", "video", 8, 16, 16, 5), make_pool("val", "image", 8, 16, 16, 5))
    before = evaluate(untrained, *val)
    model = train_tokenizer(cfg)
    assert (tmp_path / "tokenizer.pt").is_file() and (tmp_path / "tokenizer_recon.png").is_file()
    assert model.stats["psnr_video"] > before["psnr_video"] + 5
    assert 0 < model.stats["code_usage"] <= 1 and model.stats["perplexity"] >= 1


@pytest.mark.parametrize("encoder_kernel", [1, 3])
def test_local_encoder_codes_see_only_their_own_block(encoder_kernel):
    # encoder_kernel=1: a code is a function of its s_t x s_h x s_w pixel block (and, causally,
    # of the same block in earlier latent frames); with 3 the neighbours leak in
    model = tiny_tokenizer(encoder_kernel=encoder_kernel)
    video = random_video(9)
    other = video.copy()
    other[:, 4:8, 4:8] = random_video(9, 4, 4, seed=5)     # repaint block (1, 1), every frame
    changed = (model.encode(video) != model.encode(other)).any(0)
    assert changed[1, 1]
    if encoder_kernel == 1:
        assert changed.sum() == 1
    else:
        assert changed.sum() > 1


def test_image_is_a_one_frame_video():
    model = tiny_tokenizer()
    video = random_video(9)
    image_codes = model.encode(video[:1])
    assert image_codes.shape == (1, 4, 4)
    assert torch.equal(image_codes[0], model.encode(video)[0])
    assert model.decode(image_codes).shape == (1, 16, 16, 3)


def test_encode_decode_shapes_batched_and_tensor_input():
    model = tiny_tokenizer()
    assert model.compression == (4, 4, 4) and model.codebook_size == 1000
    batch = np.stack([random_video(5, seed=s) for s in range(2)])
    codes = model.encode(torch.from_numpy(batch))
    assert codes.shape == (2, 2, 4, 4) and codes.dtype == torch.long
    assert torch.equal(codes[1], model.encode(batch[1]))
    video = model.decode(codes)
    assert video.shape == (2, 5, 16, 16, 3) and video.dtype == torch.uint8
    assert torch.equal(model.decode(codes[0]), video[0])


@pytest.mark.parametrize("video, message", [
    (np.zeros((8, 16, 16, 3), np.uint8), "1 \\+ k\\*4 frames"),
    (np.zeros((5, 18, 16, 3), np.uint8), "multiple of 4"),
    (np.zeros((5, 16, 18, 3), np.uint8), "multiple of 4"),  # width too
    (np.zeros((5, 16, 16, 3), np.float32), "uint8"),
    (np.zeros((5, 16, 16, 4), np.uint8), "RGB"),
])
def test_bad_input_is_a_clear_value_error(video, message):
    with pytest.raises(ValueError, match=message):
        tiny_tokenizer().encode(video)


@pytest.mark.parametrize("override,message", [("--norm='batch'", "unknown tokenizer norm"),
                                              ("--frames=8", "1 \\+ k\\*4 frames"),
                                              ("--encoder_kernel=2", "encoder_kernel must be odd"),
                                              ("--batch_size=0", "out of range: use at least 1"),
                                              ("--lr=-1.0", "out of range: use more than 0"),
                                              ("--optimizer='sgd'", "optimizer must be 'muon' or 'adam'"),
                                              ("--levels=(1,2)", "levels must each be at least 2"),
                                              ("--channels=()", "channels must be one or more widths"),
                                              ("--compression=(4,4)", "compression must be three factors")])
def test_bad_training_settings_stop_early_with_one_line(override, message, tmp_path, monkeypatch):
    """python tokenizer.py with a bad setting: one error line, before any data is generated."""
    import tokenizer
    monkeypatch.setattr(tokenizer, "make_pool", lambda *a: pytest.fail("data generated first"))
    with pytest.raises(SystemExit, match=message):
        tokenizer.main([override, f"--out_dir={tmp_path}"])


def test_video_weight_scales_the_video_batch_loss_only():
    import tokenizer
    model = tiny_tokenizer()
    v, i = (torch.from_numpy(random_video(t))[None] for t in (5, 1))
    cfg = dict(tokenizer.TRAIN_DEFAULTS, video_weight=1.0)
    video_loss = tokenizer.reconstruction_loss(model, v, cfg["l1_weight"])
    one, three = (tokenizer.training_loss(model, v, i, dict(cfg, video_weight=w)) for w in (1.0, 3.0))
    torch.testing.assert_close(three - one, 2 * video_loss)


def test_a_diverged_training_stops_with_one_line_and_saves_nothing(tmp_path, monkeypatch):
    """A NaN loss (as a too-high learning rate gives) stops the run at the next log step with
    what to change, instead of training on and saving a NaN tokenizer."""
    import tokenizer
    nan_loss = lambda model, clips, l1_weight: model(tokenizer.to_model_input(clips)).sum() * math.nan
    monkeypatch.setattr(tokenizer, "reconstruction_loss", nan_loss)
    cfg = dict(tokenizer.TRAIN_DEFAULTS, out_dir=str(tmp_path), height=16, width=16, frames=5,
               channels=(16, 16), n_videos=4, n_images=4, n_val=2, max_iters=10, log_interval=5)
    with pytest.raises(SystemExit, match="loss is nan at step 0; nothing was saved. Lower --lr"):
        tokenizer.train_tokenizer(cfg)
    assert not (tmp_path / "tokenizer.pt").exists()


def test_training_clips_are_the_pools_or_their_left_right_mirrors(tmp_path, monkeypatch):
    """The augmentation flips clips left-right only: upside down, a triangle would point down,
    which the data never shows (and ShapesBench's detector does not read as a triangle)."""
    import tokenizer
    seen = []
    def recording_loss(model, videos, images, cfg):
        seen.extend([*videos, *images])
        return model(tokenizer.to_model_input(videos)).float().mean() * 0
    monkeypatch.setattr(tokenizer, "training_loss", recording_loss)
    cfg = dict(tokenizer.TRAIN_DEFAULTS, out_dir=str(tmp_path), height=16, width=16, frames=5,
               channels=(8, 8), n_videos=4, n_images=4, n_val=2, batch_size=4, max_iters=6)
    tokenizer.train_tokenizer(cfg)
    pools = [tokenizer.make_pool("train", kind, 4, 16, 16, 5) for kind in ("video", "image")]
    clips = [c for pool in pools for c in pool]
    mirrors = [c.flip(2) for c in clips]  # [T, H, W, 3]: dim 2 is the width
    assert any(torch.equal(s, m) for s in seen for m in mirrors)  # some steps flip
    for s in seen:
        assert any(torch.equal(s, c) for c in clips + mirrors)


def test_training_never_overwrites_a_tokenizer(tmp_path, monkeypatch):
    """Shards encoded with a tokenizer decode only with it: python tokenizer.py keeps it. An
    out_dir it cannot write to stops it before the training, not after."""
    import tokenizer
    (tmp_path / "tokenizer.pt").write_bytes(b"old")
    with pytest.raises(SystemExit, match="tokenizer.pt exists"):
        tokenizer.main([f"--out_dir={tmp_path}", "--max_iters=1"])
    assert (tmp_path / "tokenizer.pt").read_bytes() == b"old"
    monkeypatch.setattr(tokenizer, "make_pool", lambda *a: pytest.fail("trained first"))
    with pytest.raises(SystemExit, match="--out_dir=.*tokenizer.pt/sub: cannot write there"):
        tokenizer.main([f"--out_dir={tmp_path / 'tokenizer.pt' / 'sub'}", "--max_iters=1"])


def test_decode_rejects_codes_out_of_range():
    with pytest.raises(ValueError, match="codes must lie in"):
        tiny_tokenizer().decode(torch.full((1, 4, 4), 1000))
    with pytest.raises(ValueError, match="codes must lie in"):
        tiny_tokenizer().decode(torch.full((1, 4, 4), -1))


def test_save_load_round_trip(tmp_path):
    model = tiny_tokenizer()
    path = str(tmp_path / "tok.pt")
    save_tokenizer(model, path, stats=dict(psnr_video=12.5))
    loaded = load_tokenizer(path)
    video = random_video(9)
    assert torch.equal(loaded.encode(video), model.encode(video))
    assert loaded.stats["psnr_video"] == 12.5 and loaded.compression == model.compression
    assert not (tmp_path / "tok.pt.tmp").exists()


def test_tokenizer_saved_before_encoder_kernel_loads_as_3x3(tmp_path):
    model = tiny_tokenizer(encoder_kernel=3)
    path = str(tmp_path / "old.pt")
    save_tokenizer(model, path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["encoder_kernel"]  # as written before the setting existed
    torch.save(ckpt, path)
    video = random_video(9)
    assert torch.equal(load_tokenizer(path).encode(video), model.encode(video))


def test_missing_or_corrupt_checkpoint_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="python tokenizer.py"):
        load_tokenizer(str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="bad.pt is not a video tokenizer this version can read "
                                           "\\(.*\\): restore it, or train one with `python tokenizer.py`") as e:
        load_tokenizer(str(bad))
    assert "\n" not in str(e.value)  # torch's many-line unpickling message cut to its first line
