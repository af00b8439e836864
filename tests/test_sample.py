"""AR-DF inference (sample.py): cached == uncached, guidance, history mask, tasks, files."""
import hashlib
import os
import shutil

import numpy as np
import pytest
import torch

from masking import confidence_temperature, history_mask
from model import GPT, GPTConfig
from sample import FrameRunner, compile_for_sampling, generate, guided, save_video, unmask_frame
from tokenizer import (MASK, PAD, VISUAL_OFFSET, TokenizerConfig, VideoTokenizer, collate, encode_text,
                       layout, save_tokenizer)
from conftest import needs_compiler

FRAMES, H, W, TEXT_LEN, V = 3, 4, 4, 24, 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=2, n_kv_head=1, n_embd=64, ffn_hidden=128, n_visual=V)
    return GPT(cfg).eval()


def prompts():
    return [encode_text("a red circle"), encode_text("a blue square moves")]


def run(model, **kw):
    args = dict(steps=4, cfg_scale=3.0, temperature=1.0, history_ratio=0.7, seed=0, progress=False)
    args.update(kw)
    return generate(model, prompts(), FRAMES, H, W, TEXT_LEN, **args)


def test_cached_sampling_equals_uncached(model):
    assert torch.equal(run(model, use_cache=True), run(model, use_cache=False))


@needs_compiler
def test_compiled_sampling_equals_eager():
    """The compiled sampling step (CUDA graphs on a GPU; plain inductor here) gives the eager
    tokens, and a second video reuses the same cache buffers and graph."""
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=2, n_kv_head=1, n_embd=64, ffn_hidden=128, n_visual=V)
    eager = GPT(cfg).eval()
    compiled = compile_for_sampling(GPT(cfg).eval())
    compiled.load_state_dict(eager.state_dict())
    assert torch.equal(run(compiled), run(eager))
    assert torch.equal(run(compiled, seed=3), run(eager, seed=3))


def test_same_seed_same_video_and_seed_matters(model):
    assert torch.equal(run(model, seed=1), run(model, seed=1))
    assert not torch.equal(run(model, seed=1), run(model, seed=2))


def test_guidance_formula():
    cond, uncond = torch.randn(2, 5, V), torch.randn(2, 5, V)
    both = torch.cat([cond, uncond])
    torch.testing.assert_close(guided(both, 2, 1.0), cond)
    torch.testing.assert_close(guided(both, 2, 0.0), uncond)
    torch.testing.assert_close(guided(both, 2, 3.0), uncond + 3 * (cond - uncond))


def test_guidance_changes_the_video(model):
    assert not torch.equal(run(model, cfg_scale=1.0), run(model, cfg_scale=5.0))


def test_unconditional_rows_are_the_sequences_without_text(model, monkeypatch):
    """Guidance batches B conditional rows and B rows without the prompt (sec. 3.3); at scale 1
    only the conditional rows run."""
    import sample
    seen = []

    class Spy(FrameRunner):
        def __init__(self, model, seq, *args):
            seen.append(seq)
            super().__init__(model, seq, *args)

    monkeypatch.setattr(sample, "FrameRunner", Spy)
    run(model, cfg_scale=3.0)
    run(model, cfg_scale=1.0)
    guided_seq, plain_seq = seen
    want = collate([layout(p, FRAMES, H, W, TEXT_LEN) for p in prompts()] +
                   [layout(None, FRAMES, H, W, TEXT_LEN)] * 2)
    for key in ("idx", "frame", "row", "col"):
        assert torch.equal(guided_seq[key], want[key]), key
        assert torch.equal(plain_seq[key], want[key][:2]), key
    assert (guided_seq["idx"][2:, :TEXT_LEN] == PAD).all()  # no prompt at all


def runner(model, use_cache=True):
    seqs = [layout(p, FRAMES, H, W, TEXT_LEN) for p in prompts()]
    return FrameRunner(model, collate(seqs), TEXT_LEN, H * W, use_cache)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.7])
def test_history_mask_applied_to_the_context_only(model, ratio):
    """cond and uncond rows (2 + 2) get the same masked positions in the context; the output
    keeps the clean frame."""
    seqs = [layout(p, FRAMES, H, W, TEXT_LEN) for p in prompts()] + [layout(None, FRAMES, H, W, TEXT_LEN)] * 2
    r = FrameRunner(model, collate(seqs), TEXT_LEN, H * W, True)
    tokens = (torch.randint(0, V, (2, H * W)) + VISUAL_OFFSET).repeat(2, 1)
    hist = history_mask(H * W, ratio)
    r.commit(0, tokens, hist)
    ctx = r.idx[:, r.slots(0)]
    assert ((ctx == MASK) == hist).all()  # the same positions in every row
    assert (ctx == MASK).sum(-1).tolist() == [round(ratio * H * W)] * 4
    assert torch.equal(ctx[ctx != MASK], tokens[ctx != MASK])  # the rest is the clean frame
    out = run(model, history_ratio=ratio)
    assert ((out >= 0) & (out < V)).all()  # the output holds codes only, never MASK


def test_generate_writes_the_history_with_the_asked_ratio(model, monkeypatch):
    """generate passes its history_ratio to the history mask; the ratio changes later frames."""
    import sample
    asked = []
    spy = lambda n, ratio: asked.append(ratio) or history_mask(n, ratio)
    monkeypatch.setattr(sample, "history_mask", spy)
    clean, masked = run(model, history_ratio=0.0), run(model, history_ratio=0.9)
    assert asked == [0.0, 0.9]
    assert torch.equal(clean[:, 0], masked[:, 0]) and not torch.equal(clean[:, 1:], masked[:, 1:])


def test_every_token_is_decided_by_the_last_step(model):
    for steps in (1, 3, 8):
        x = unmask_frame(runner(model), 0, 2, steps, 1.0, 2.0, torch.Generator().manual_seed(0))
        assert not (x == MASK).any()
        assert ((x >= VISUAL_OFFSET) & (x < VISUAL_OFFSET + V)).all()


def test_token_temperature_zero_takes_the_most_likely_code(model):
    """One step decides the whole frame from all-MASK: at token temperature 0 (or near it) each
    position gets its argmax code; at 1 the codes are draws, which differ from it."""
    masked = torch.full((2, H * W), MASK)
    best = runner(model).logits(0, masked).argmax(-1) + VISUAL_OFFSET
    def decide(tt, seed=0):
        return unmask_frame(runner(model), 0, 2, 1, 1.0, 2.0, torch.Generator().manual_seed(seed),
                            token_temperature=tt)
    assert torch.equal(decide(0.0), best)
    assert torch.equal(decide(1e-4), best)
    assert not torch.equal(decide(1.0), best)


def test_image_to_video_keeps_frame_zero_and_conditions_on_it(model):
    first = torch.randint(0, V, (2, H, W), generator=torch.Generator().manual_seed(1))
    out = run(model, first_frame=first, history_ratio=0.0)
    assert torch.equal(out[:, 0], first)
    assert out.shape == (2, FRAMES, H, W)
    # the given frame is in the context: another first frame, same seed, changes what follows
    other = run(model, first_frame=(first + 1) % V, history_ratio=0.0)
    assert not torch.equal(other[:, 1:], out[:, 1:])


def test_confidence_temperature_restarts_every_frame(model, monkeypatch):
    import sample
    seen = []
    def spy(step, steps, temperature):
        seen.append(step)
        return confidence_temperature(step, steps, temperature)
    monkeypatch.setattr(sample, "confidence_temperature", spy)
    run(model, steps=4)
    assert seen == [0, 1, 2, 3] * FRAMES
    taus = [confidence_temperature(s, 4, 2.0) for s in range(4)]
    assert taus == sorted(taus, reverse=True) and taus[0] > 1.0 and taus[-1] == 0.0


class FixedLogits:
    """A stand-in for FrameRunner: the same logits every step, position i more confident the
    larger i is; records the tokens each step is given."""
    def __init__(self, n):
        self.n, self.idx, self.seen = n, torch.zeros(1, 1, dtype=torch.long), []
        self.out = torch.zeros(1, n, V)
        self.out[0, torch.arange(n), torch.arange(n) % V] = torch.arange(n, dtype=torch.float) / 4

    def logits(self, k, tokens):
        self.seen.append(tokens.clone())
        return self.out


def test_the_least_confident_tokens_are_masked_again():
    stub = FixedLogits(8)
    x = unmask_frame(stub, 0, 1, 2, 1.0, 0.0, torch.Generator().manual_seed(0))  # no Gumbel noise
    # after step 0 of 2, floor(8 cos(pi/4)) = 5 stay masked: the 5 least confident, positions 0-4
    assert (stub.seen[1][0] == MASK).nonzero().flatten().tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(stub.seen[1][0, 5:], x[0, 5:])  # decided tokens stay as they were
    assert not (x == MASK).any()


def test_the_gumbel_temperature_is_the_same_in_every_frame():
    """The confidence noise restarts with every frame: a later frame is unmasked in the same
    noisy order as frame 0 (the official code compounds the temperature to 0 after frame 0,
    a bug)."""
    def remasked_after_step_0(k, temperature):
        stub = FixedLogits(8)
        unmask_frame(stub, k, 1, 2, 1.0, temperature, torch.Generator().manual_seed(0))
        return (stub.seen[1][0] == MASK).nonzero().flatten().tolist()
    noisy = remasked_after_step_0(0, 100.0)
    assert noisy != remasked_after_step_0(0, 0.0)  # the noise, not the confidence, picks them
    assert remasked_after_step_0(2, 100.0) == noisy


class RandomLogits:
    """A stand-in for FrameRunner with fresh random logits every step; records its inputs."""
    def __init__(self, n, rows, seed=0):
        self.n, self.idx, self.seen = n, torch.zeros(rows, 1, dtype=torch.long), []
        self.g = torch.Generator().manual_seed(seed)

    def logits(self, k, tokens):
        self.seen.append(tokens.clone())
        return 3 * torch.randn(tokens.shape[0], self.n, V, generator=self.g)


@pytest.mark.parametrize("token_temperature", [0.0, 1.0])
def test_decided_tokens_stay_decided(token_temperature):
    """Once a step keeps a token, later steps neither redraw it nor mask it again, however the
    new logits disagree: each step only shrinks the masked set, on the cosine schedule."""
    stub = RandomLogits(64, rows=2)
    x = unmask_frame(stub, 0, 2, 8, 1.0, 4.5, torch.Generator().manual_seed(0),
                     token_temperature=token_temperature)
    states = stub.seen + [x]
    for before, after in zip(states, states[1:]):
        decided = before != MASK
        assert torch.equal(after[decided], before[decided])
        assert ((after != MASK).sum(1) > decided.sum(1)).all()
    assert not (x == MASK).any()


def test_text_to_image_is_one_frame(model):
    out = generate(model, prompts(), 1, H, W, TEXT_LEN, steps=3, progress=False)
    assert out.shape == (2, 1, H, W)


def test_video_files_are_valid(tmp_path):
    from PIL import Image
    video = np.random.randint(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    paths = save_video(video, str(tmp_path / "clip"), fps=12, scale=2)
    gif = Image.open(tmp_path / "clip.gif")
    assert gif.n_frames == 5 and gif.size == (16, 16)
    assert abs(gif.info["duration"] - 1000 / 12) < 10  # the data's fps (GIF keeps centiseconds)
    assert Image.open(tmp_path / "clip.png").size == (16 * 5, 16)
    assert str(tmp_path / "clip.png") in paths


def test_gumbel_max_draws_from_the_softmax():
    from sample import gumbel
    g = torch.Generator().manual_seed(0)
    noise = gumbel((200000,), g, "cpu")
    assert torch.isfinite(noise).all() and abs(noise.mean().item() - 0.5772) < 0.01  # Euler's gamma
    logp = torch.tensor([0.6, 0.3, 0.1]).log()
    draws = (logp + gumbel((100000, 3), g, "cpu")).argmax(-1)
    freq = torch.bincount(draws, minlength=3) / 100000
    torch.testing.assert_close(freq, logp.exp(), atol=0.01, rtol=0)


# -----------------------------------------------------------------------------
# the command line on a trained run: files written, bad input reported clearly

def test_cli_writes_gif_and_png(trained_run, tmp_path):
    from PIL import Image
    import sample
    from tokenizer import load_tokenizer
    sample.main([f"--out_dir={trained_run}", "--prompt=a red circle moves right", "--steps=2",
                 f"--sample_dir={tmp_path}"])
    (gif,) = tmp_path.glob("*.gif")
    assert Image.open(gif).n_frames == 9  # the model's 3 latent frames, decoded
    assert Image.open(gif.with_suffix(".png")).size == (9 * 32 * 4, 32 * 4)  # the strip, 4x
    sample.main([f"--out_dir={trained_run}", "--prompt=a blue square", "--steps=2", "--frames=1",
                 f"--sample_dir={tmp_path / 't2i'}"])
    assert [p.suffix for p in (tmp_path / "t2i").iterdir()] == [".png"]
    (tmp_path / "prompts.txt").write_text("a blue square\na blue square!\n")  # one file name, two prompts
    sample.main([f"--out_dir={trained_run}", f"--prompt_file={tmp_path / 'prompts.txt'}", "--steps=2",
                 "--frames=1", f"--sample_dir={tmp_path / 'both'}"])
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["a_blue_square_2_f1_steps2_0_0.png",
                                                                    "a_blue_square_f1_steps2_0_0.png"]
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "first.png")  # varied codes, even from the test's tokenizer
    sample.main([f"--out_dir={trained_run}", "--prompt=a red circle moves up", "--steps=2",
                 f"--image={tmp_path / 'first.png'}", f"--sample_dir={tmp_path / 'i2v'}"])
    digest = hashlib.sha1((tmp_path / "first.png").read_bytes()).hexdigest()[:6]  # name and content
    assert (tmp_path / "i2v" / f"a_red_circle_moves_up_steps2_from_first-{digest}_0_0.gif").is_file()
    # frame 0 of the strip is the given image through the tokenizer, upscaled 4x
    tok = load_tokenizer(torch.load(trained_run / "ckpt.pt", weights_only=True)["meta"]["tokenizer"])
    assert len(torch.unique(tok.encode(noise[None]))) > 4
    want = tok.decode(tok.encode(noise[None]))[0].numpy().repeat(4, 0).repeat(4, 1)
    strip = np.asarray(Image.open(next((tmp_path / "i2v").glob("*.png"))).convert("RGB"))
    assert np.array_equal(strip[:, :128], want)


def test_sample_file_names_are_safe_and_short():
    """A prompt names its files: never a path out of the samples folder, never too long for the
    file system, never empty; the usual prompts keep their readable names."""
    from sample import file_stem
    assert file_stem("a red circle moves right") == "a_red_circle_moves_right"
    for prompt in ["../../etc/passwd", "a/b\\c:d", "a red circle " * 40, "", "  ", "...", "ünï"]:
        name = file_stem(prompt)
        assert name and len(name) <= 60 and not set("/\\:") & set(name) and not name.startswith(".")


def test_cli_bad_input(trained_run, tmp_path):
    from PIL import Image
    import sample
    with pytest.raises(SystemExit, match="no checkpoint at"):
        sample.main([f"--out_dir={tmp_path}"])
    with pytest.raises(SystemExit, match=r"no checkpoint at .*nope.pt; .* holds best.pt, ckpt.pt: name one "
                                         r"with --ckpt"):
        sample.main([f"--out_dir={trained_run}", "--ckpt=nope.pt"])
    (tmp_path / "ckpt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(SystemExit, match="not a readable checkpoint") as e:
        sample.main([f"--out_dir={tmp_path}"])
    assert "\n" not in str(e.value.code)  # one line, not torch's paragraph
    Image.new("RGB", (20, 10)).save(tmp_path / "small.png")
    with pytest.raises(SystemExit, match="is 20x10 but the model generates 32x32"):
        sample.main([f"--out_dir={trained_run}", f"--image={tmp_path / 'small.png'}"])
    Image.new("I;16", (32, 32), 20000).save(tmp_path / "deep.png")  # RGB conversion clips it to white
    with pytest.raises(SystemExit, match="has I;16 pixels .*: save it as an 8-bit RGB image"):
        sample.main([f"--out_dir={trained_run}", f"--image={tmp_path / 'deep.png'}"])
    Image.new("RGBA", (32, 32), (255, 0, 0, 128)).save(tmp_path / "glass.png")
    with pytest.raises(SystemExit, match="has transparent pixels"):
        sample.main([f"--out_dir={trained_run}", f"--image={tmp_path / 'glass.png'}"])
    with pytest.raises(SystemExit, match="--prompt is empty: give a caption"):
        sample.main([f"--out_dir={trained_run}", "--prompt= "])
    with pytest.raises(SystemExit, match="over the model's text budget"):
        sample.main([f"--out_dir={trained_run}", "--prompt=" + "a red circle " * 40])
    with pytest.raises(SystemExit, match="unknown config key 'promt'"):
        sample.main([f"--out_dir={trained_run}", "--promt=x"])
    with pytest.raises(SystemExit, match="frames must be 1 \\+ k\\*4"):
        sample.main([f"--out_dir={trained_run}", "--frames=6"])
    with pytest.raises(SystemExit, match="--token_temperature=-1.0 is out of range"):
        sample.main([f"--out_dir={trained_run}", "--token_temperature=-1.0"])
    with pytest.raises(SystemExit, match="--cfg=inf is not a finite number"):
        sample.main([f"--out_dir={trained_run}", "--cfg=1e400"])
    with pytest.raises(SystemExit, match="--history_ratio=1.5 is out of range"):
        sample.main([f"--out_dir={trained_run}", "--history_ratio=1.5"])
    with pytest.raises(SystemExit, match="--num_samples=0 is out of range"):
        sample.main([f"--out_dir={trained_run}", "--num_samples=0"])
    with pytest.raises(SystemExit, match="cannot read --prompt_file"):
        sample.main([f"--out_dir={trained_run}", f"--prompt_file={tmp_path / 'none.txt'}"])
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(SystemExit, match="holds no prompt"):
        sample.main([f"--out_dir={trained_run}", f"--prompt_file={tmp_path / 'empty.txt'}"])
    (tmp_path / "latin1.txt").write_bytes("a red circle caf\xe9".encode("latin-1"))
    with pytest.raises(SystemExit, match="is not UTF-8 text"):
        sample.main([f"--out_dir={trained_run}", f"--prompt_file={tmp_path / 'latin1.txt'}"])
    with pytest.raises(SystemExit, match="--frames=-3 is out of range"):
        sample.main([f"--out_dir={trained_run}", "--frames=-3"])
    with pytest.raises(SystemExit, match="device='gpu': this project runs on 'cpu' or 'cuda'"):
        sample.main([f"--out_dir={trained_run}", "--device=gpu"])
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit, match="--sample_dir=.*afile is a file, not a folder"):
        sample.main([f"--out_dir={trained_run}", f"--sample_dir={tmp_path / 'afile'}"])
    assert (tmp_path / "afile").read_text() == "mine"
    tok = torch.load(trained_run / "ckpt.pt", weights_only=True)["meta"]["tokenizer"]
    with pytest.raises(SystemExit, match="is not a checkpoint of train.py"):  # a tokenizer, say
        sample.main([f"--out_dir={os.path.dirname(tok)}", f"--ckpt={os.path.basename(tok)}"])
    run = tmp_path / "moved"  # a model whose tokenizer file is gone
    run.mkdir()
    ckpt = torch.load(trained_run / "ckpt.pt", weights_only=True)
    data_tokenizer = ckpt["meta"]["tokenizer"]
    ckpt["meta"]["tokenizer"] = str(tmp_path / "gone.pt")
    torch.save(ckpt, run / "ckpt.pt")
    with pytest.raises(SystemExit, match="gone.pt.*cannot be loaded.*Restore that file, or pass "
                                         "--tokenizer_path"):
        sample.main([f"--out_dir={run}"])
    Image.new("RGB", (32, 32)).save(tmp_path / "pic.png")  # a wrong --tokenizer_path: named as given
    with pytest.raises(SystemExit, match="encoded with, '.*gone.pt'; --tokenizer_path=.*pic.png \\(not a "
                                         "video tokenizer\\) cannot be loaded"):
        sample.main([f"--out_dir={run}", f"--tokenizer_path={tmp_path / 'pic.png'}"])
    shutil.copy(data_tokenizer, tmp_path / "moved.pt")  # where it went: told, it is found
    sample.main([f"--out_dir={run}", f"--tokenizer_path={tmp_path / 'moved.pt'}", "--frames=1",
                 f"--sample_dir={tmp_path / 'from_moved'}"])
    assert len(list((tmp_path / "from_moved").glob("*.png"))) == 1
    other = VideoTokenizer(TokenizerConfig(levels=(8, 5, 5, 5), compression=(4, 4, 4)))
    save_tokenizer(other, str(tmp_path / "other.pt"))  # a tokenizer with other weights is refused
    with pytest.raises(SystemExit, match="other.pt is not the video tokenizer this model's data"):
        sample.main([f"--out_dir={run}", f"--tokenizer_path={tmp_path / 'other.pt'}"])
    ckpt["meta"]["tokenizer"] = data_tokenizer  # a tokenizer is there, but not the data's
    ckpt["meta"]["tokenizer_fingerprint"] = "0123456789abcdef"
    torch.save(ckpt, run / "ckpt.pt")
    with pytest.raises(SystemExit, match="is not the video tokenizer this model's data was encoded with"):
        sample.main([f"--out_dir={run}"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="sees no CUDA GPU here"):
            sample.main([f"--out_dir={trained_run}", "--device=cuda"])
    import eval as shapesbench
    for bad in ("--n_per_category=0", "--batch_size=0"):
        with pytest.raises(SystemExit, match="is out of range: use at least 1"):
            shapesbench.main([f"--out_dir={trained_run}", bad])
    with pytest.raises(SystemExit, match="--n_per_category=0 is out of range"):
        shapesbench.main(["--calibrate=True", "--n_per_category=0"])


# -----------------------------------------------------------------------------
# AR-DF inference: what enters the context, batching, confidence, the annealed noise

def test_image_to_video_writes_frame_zero_with_the_history_mask(model):
    """The given frame enters the context like a generated one (sec. 3.3): its positions under
    the history mask are MASK there, so changing only those leaves frames 1.. as they were;
    changing the others does not."""
    first = torch.randint(0, V, (2, H, W), generator=torch.Generator().manual_seed(1))
    hist = history_mask(H * W, 0.5).view(H, W)
    out = run(model, first_frame=first, history_ratio=0.5)
    hidden = run(model, first_frame=torch.where(hist, (first + 1) % V, first), history_ratio=0.5)
    shown = run(model, first_frame=torch.where(hist, first, (first + 1) % V), history_ratio=0.5)
    assert torch.equal(hidden[:, 1:], out[:, 1:])
    assert not torch.equal(shown[:, 1:], out[:, 1:])


def test_every_finished_frame_but_the_last_enters_the_context_as_generated(model, monkeypatch):
    """Frame k is written to the context once it is finished, as the output has it (cond and
    uncond rows alike), with the one history mask; the last frame has no later frame to serve."""
    import sample
    commits = []

    class Spy(FrameRunner):
        def commit(self, k, tokens, hist):
            commits.append((k, tokens.clone(), hist.clone()))
            super().commit(k, tokens, hist)

    monkeypatch.setattr(sample, "FrameRunner", Spy)
    out = run(model, history_ratio=0.5)
    assert [k for k, _, _ in commits] == list(range(FRAMES - 1))
    for k, tokens, hist in commits:
        assert torch.equal(tokens - VISUAL_OFFSET, out[:, k].reshape(2, H * W).repeat(2, 1))
        assert torch.equal(hist, history_mask(H * W, 0.5))


def test_each_sample_of_a_batch_is_generated_as_if_alone(model):
    """Without noise (temperature 0, most likely codes) sampling is deterministic, and a batch
    is only a speed-up: the conditional row i is guided by the unconditional row i, its own
    tokens, whatever else is in the batch. In float64, so that another batch size's kernels cannot
    flip a near-tie between codes."""
    import copy
    model = copy.deepcopy(model).double()
    kw = dict(temperature=0.0, token_temperature=0.0, steps=4, cfg_scale=3.0, history_ratio=0.5,
              progress=False)
    both = generate(model, prompts(), FRAMES, H, W, TEXT_LEN, **kw)
    for i, p in enumerate(prompts()):
        assert torch.equal(generate(model, [p], FRAMES, H, W, TEXT_LEN, **kw)[0], both[i]), i


def test_confidence_is_the_log_probability_of_the_drawn_code():
    """Confidence is log p(sampled) (sec. 3.3), not the raw logit: a flat position (high logits,
    p = 1/V) is less sure than a peaked one with lower logits, so it is the one masked again."""
    stub = FixedLogits(2)
    stub.out = torch.zeros(1, 2, V)
    stub.out[0, 0] = 10.0  # flat: every code 1/V
    stub.out[0, 1, 3] = 5.0  # peaked: code 3 at ~0.83
    unmask_frame(stub, 0, 1, 2, 1.0, 0.0, torch.Generator().manual_seed(0))
    assert stub.seen[1][0].tolist() == [MASK, 3 + VISUAL_OFFSET]  # 1 of 2 stays masked after step 0


def test_the_gumbel_temperature_anneals_within_a_frame(monkeypatch):
    """tau_s = tau * (1 - (s+1)/S): noise that reverses the confidence order leads the early
    steps and no longer the late ones. FixedLogits: position i's log p rises ~0.22 a position;
    the noise falls 1 a position, weighted 0.45, 0.3, 0.15 at steps 0-2 of 4 (tau = 0.6)."""
    import sample
    reversed_noise = lambda shape, g, device: -torch.arange(shape[-1]).float().expand(shape)
    monkeypatch.setattr(sample, "gumbel", reversed_noise)
    stub = FixedLogits(8)
    unmask_frame(stub, 0, 1, 4, 1.0, 0.6, torch.Generator().manual_seed(0))
    masked = [(t[0] == MASK).nonzero().flatten().tolist() for t in stub.seen]
    # 8 -> 7 -> 5 -> 3 masked: steps 0 and 1 decide the low positions (noise-led), step 2 the high
    assert masked == [list(range(8)), list(range(1, 8)), [3, 4, 5, 6, 7], [3, 4, 5]]


def test_cli_takes_a_prompt_of_exactly_the_text_budget(trained_run, tmp_path):
    """The budget is text_len tokens: a prompt of exactly that many is sampled; one more is refused."""
    import sample
    from tokenizer import format_prompt
    ckpt = torch.load(trained_run / "ckpt.pt", weights_only=True)
    meta, cfg = ckpt["meta"], ckpt["config"]
    def tokens(caption):
        text = format_prompt(caption, meta["width"], meta["height"], 1, meta["fps"], cfg["prompt_template"])
        return len(encode_text(text, meta.get("words", [])))
    caption = "a red circle "
    caption += "x" * (cfg["text_len"] - tokens(caption))  # unknown letters: one byte token each
    assert tokens(caption) == cfg["text_len"]
    sample.main([f"--out_dir={trained_run}", f"--prompt={caption}", "--steps=1", "--frames=1",
                 f"--sample_dir={tmp_path}"])
    assert len(list(tmp_path.glob("*.png"))) == 1
    with pytest.raises(SystemExit, match=f"the prompt is {cfg['text_len'] + 1} tokens"):
        sample.main([f"--out_dir={trained_run}", f"--prompt={caption}x", "--steps=1", "--frames=1",
                     f"--sample_dir={tmp_path}"])
