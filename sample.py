"""
AR-DF inference (Lumos-1, sec. 3.3): frames one after another, the tokens of each frame in
parallel by MaskGIT-style iterative unmasking, with classifier-free guidance and the history
mask, against a static KV cache. Text-to-image is a 1-frame video; image-to-video puts the given
image in frame 0.

    python sample.py --out_dir=out --prompt="a red circle moves right"
    python sample.py --out_dir=out --prompt="a blue square" --frames=1          # text-to-image
    python sample.py --out_dir=out --prompt="a red circle moves right" --image=first.png
    (first.png: any image at the model's resolution, e.g. from data/shapes.py --caption="a red circle")
"""
import hashlib
import math
import os

import numpy as np
import torch
from tqdm import tqdm

from masking import attention_mask, confidence_temperature, history_mask, num_masked_after
from tokenizer import MASK, VISUAL_OFFSET, collate, layout

# Sampling defaults, here and nowhere else (sample.py, eval.py, ablate.py and train.py's
# end-of-run samples read them). The official code uses 50 steps, guidance 15 and temperature 4.5;
# a tiny model needs few steps, and stronger guidance hurts it: it grows objects and starts
# extra ones. Guidance 2 beat 2.5 on all four models tried, 2000 to 6000 steps (README, "Guidance").
STEPS, CFG_SCALE, TEMPERATURE, HISTORY_RATIO = 8, 2.0, 4.5, 0.7
# Temperature of the token draws themselves (ours; the paper draws at 1.0). 0 takes each masked
# position's most likely code; the Gumbel noise on the confidence still varies which positions
# are decided first. The tiny model's independent draws at 1.0 give ragged edges: single_object
# 0.21 at 1.0 (guidance 3), 0.53 at 0 (guidance 2.5) (EXPERIMENTS.md, "Sampling the most likely code").
TOKEN_TEMPERATURE = 0.0

DEFAULTS = dict(  # python sample.py --key=value; python sample.py --help lists them
    out_dir="out",                  # the training run's folder: its checkpoint, tokenizer, samples/
    ckpt="ckpt.pt",                 # the checkpoint in out_dir ('best.pt': lowest validation loss)
    prompt="a red circle moves right",
    prompt_file="",                 # a text file of prompts, one a line (instead of --prompt)
    image="",                       # image-to-video: frame 0 from this image (the model's resolution)
    frames=0,                       # pixel frames, 1 + k*s_t; 1: text-to-image; 0: the training clips'
    num_samples=1,                  # per prompt
    seed=0,
    steps=STEPS,                    # MaskGIT steps a frame
    cfg=CFG_SCALE,                  # classifier-free guidance scale; 1: the conditional alone
    temperature=TEMPERATURE,        # Gumbel temperature on the confidence, annealed within a frame
    token_temperature=TOKEN_TEMPERATURE,  # of the code draws; 0: each position's most likely code
    history_ratio=HISTORY_RATIO,    # share of each finished frame masked in the history; 0: none
    sample_dir="",                  # where the files go; empty: out_dir/samples
    compile=False,                  # torch.compile the sampling step (CUDA graphs on a GPU)
    tokenizer_path="",              # empty: the tokenizer the data was encoded with (in meta.json)
    device="cuda" if torch.cuda.is_available() else "cpu",
)


def gumbel(shape, generator, device):
    """Standard Gumbel noise from an explicit generator (reproducible sampling)."""
    u = torch.rand(shape, generator=generator, device=device).clamp(min=1e-20)
    return -torch.log((-torch.log(u)).clamp(min=1e-20))


class FrameRunner:
    """
    Runs the current frame's tokens given everything before it, either against the static KV
    cache (the fast path: past frames never change, so their keys and values are computed once)
    or by re-running the whole prefix (the uncached baseline, same results).
    Rows [0, B) are conditional, rows [B, 2B) the same samples without text (for guidance).
    Every cached call has the same shapes (n tokens against the whole cache) and nothing in the
    loop reads a value back to the host, so a compiled body (GPT.compile_body) runs each MaskGIT
    step as one captured graph.
    """

    def __init__(self, model, seq, text_len, n, use_cache):
        self.model, self.seq, self.text_len, self.n, self.use_cache = model, seq, text_len, n, use_cache
        self.idx = seq["idx"].clone()  # (rows, L): the context as the model sees it
        self.cos, self.sin = model.rope(seq["frame"], seq["row"], seq["col"])  # (rows, L, hd)
        self.masks = {}  # frame -> its rows of the attention mask, built once
        if use_cache:
            model.setup_cache(self.idx.shape[0], self.idx.shape[1])
            prompt = torch.arange(text_len, device=self.idx.device)
            self._cached(prompt, attention_mask(seq["frame"], prompt))  # prefill the prompt

    def slots(self, k):
        start = self.text_len + k * self.n
        return torch.arange(start, start + self.n, device=self.idx.device)

    def _cached(self, slots, mask):
        """The tokens at `slots` through the model against the KV cache (written there too)."""
        return self.model.forward_cached(self.idx[:, slots], self.cos[:, slots],
                                         self.sin[:, slots], mask, slots)

    def _run(self, k):
        """Visual logits [rows, n, V] of frame k's tokens (with the cache: also writing their keys
        and values there)."""
        slots = self.slots(k)
        if self.use_cache:
            if k not in self.masks:
                self.masks[k] = attention_mask(self.seq["frame"], slots)  # (rows, n, L)
            return self._cached(slots, self.masks[k])
        end = self.text_len + (k + 1) * self.n  # uncached: the whole prefix (later tokens can't matter)
        s = {key: v[:, :end] for key, v in self.seq.items()}
        return self.model(self.idx[:, :end], s["frame"], s["row"], s["col"])[:, slots]

    def logits(self, k, tokens):
        """Put `tokens` [rows, n] (MASK where undecided) in frame k's slots; their logits."""
        self.idx[:, self.slots(k)] = tokens
        return self._run(k)

    def commit(self, k, tokens, hist):
        """Write finished frame k into the context with the history mask `hist` [n] applied."""
        self.idx[:, self.slots(k)] = tokens.masked_fill(hist, MASK)
        if self.use_cache:
            self._run(k)


def guided(logits, batch_size, cfg_scale):
    """Classifier-free guidance on the visual logits: u + g * (c - u)."""
    if logits.shape[0] == batch_size:
        return logits
    cond, uncond = logits[:batch_size], logits[batch_size:]
    return uncond + cfg_scale * (cond - uncond)


def unmask_frame(runner, k, batch_size, steps, cfg_scale, temperature, generator,
                 token_temperature=TOKEN_TEMPERATURE):
    """
    MaskGIT decoding of frame k (sec. 3.3): every step samples all masked tokens (at
    token_temperature; 0 = argmax), keeps the most confident and re-masks the rest, on the cosine
    schedule; the Gumbel temperature on the confidence anneals within the frame (restarted every
    frame). Returns tokens [B, n].
    """
    n, device = runner.n, runner.idx.device
    rows = runner.idx.shape[0]
    x = torch.full((batch_size, n), MASK, dtype=torch.long, device=device)
    num_masked = n
    for s in range(steps):
        logits = guided(runner.logits(k, x.repeat(rows // batch_size, 1)).float(),
                        batch_size, cfg_scale)  # (B, n, V)
        logp = logits.log_softmax(-1)
        if token_temperature > 0:  # a draw from p ** (1 / token_temperature)
            sampled = (logp / token_temperature + gumbel(logp.shape, generator, device)).argmax(-1)
        else:
            sampled = logp.argmax(-1)
        masked = x == MASK
        tau = confidence_temperature(s, steps, temperature)
        confidence = logp.gather(-1, sampled[..., None]).squeeze(-1)
        confidence = confidence + tau * gumbel(confidence.shape, generator, device)
        confidence = confidence.masked_fill(~masked, math.inf)  # decided tokens stay decided
        x = torch.where(masked, sampled + VISUAL_OFFSET, x)
        num_masked = num_masked_after(s, steps, n, num_masked)
        if num_masked == 0:  # every token decided: the last step, or more steps than tokens
            break
        lowest = confidence.argsort(-1)[:, :num_masked]  # least confident go back to MASK
        x = x.scatter(1, lowest, MASK)
    return x


@torch.no_grad()
def generate(model, prompts, latent_frames, h, w, text_len, steps=STEPS, cfg_scale=CFG_SCALE,
             temperature=TEMPERATURE, history_ratio=HISTORY_RATIO, first_frame=None, seed=0,
             use_cache=True, progress=True, token_temperature=TOKEN_TEMPERATURE):
    """
    AR-DF generation of len(prompts) videos of latent_frames frames of h x w codes each.
    prompts: list of token-id lists (tokenizer.encode_text). first_frame: optional codes
    [B, h, w] for image-to-video (frame 0 is given, frames 1.. are generated).
    Returns visual codes [B, latent_frames, h, w]. (sample.py's --frames counts pixel frames.)
    """
    device = next(model.parameters()).device
    B, n = len(prompts), h * w
    seqs = [layout(p, latent_frames, h, w, text_len) for p in prompts]
    if cfg_scale != 1.0:  # the unconditional rows: the same sequences without the text
        seqs += [layout(None, latent_frames, h, w, text_len)] * B
    seq = {k: v.to(device) for k, v in collate(seqs).items()}
    runner = FrameRunner(model, seq, text_len, n, use_cache)
    hist = history_mask(n, history_ratio).to(device)
    generator = torch.Generator(device).manual_seed(seed)
    out = torch.empty(B, latent_frames, n, dtype=torch.long, device=device)
    for k in tqdm(range(latent_frames), desc="frames", disable=not progress, leave=False):
        if k == 0 and first_frame is not None:
            x = first_frame.reshape(B, n).to(device) + VISUAL_OFFSET
        else:
            x = unmask_frame(runner, k, B, steps, cfg_scale, temperature, generator, token_temperature)
        out[:, k] = x - VISUAL_OFFSET
        if k < latent_frames - 1:
            runner.commit(k, x.repeat(runner.idx.shape[0] // B, 1), hist)
    return out.view(B, latent_frames, h, w)


# -----------------------------------------------------------------------------
# files

def save_video(video, stem, fps, scale=4):
    """Write video uint8 [T, H, W, 3] as stem.gif and stem.png (frames side by side), upscaled
    for viewing; also stem.mp4 when PyAV is installed; fps: the data's. Returns the paths written."""
    from PIL import Image
    video = np.asarray(video).repeat(scale, axis=1).repeat(scale, axis=2)  # (T, sH, sW, 3)
    frames = [Image.fromarray(f) for f in video]
    paths = [stem + ".png"]
    Image.fromarray(np.concatenate(list(video), axis=1)).save(paths[0])
    if len(frames) > 1:
        paths.append(stem + ".gif")
        frames[0].save(paths[1], save_all=True, append_images=frames[1:], duration=1000 // fps, loop=0)
        try:
            import av
        except ImportError:
            return paths
        paths.append(stem + ".mp4")
        with av.open(paths[2], "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
            for f in video:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            container.mux(stream.encode())
    return paths


def file_stem(prompt):
    """A file name for a prompt's samples: its words joined by '_', other characters (a '/'
    above all) dropped, at most 60 characters."""
    name = "_".join("".join(c for c in word if c.isalnum() or c in "-,.") for word in prompt.split())
    return name.strip("._")[:60] or "no_prompt"


def settings_tag(cfg, defaults, shorts):
    """'_{short}{value}' for each (key, short) of `shorts` whose setting is off its default: the part
    of an output's file name that keeps one setting's results from overwriting another's (the
    videos here, eval.py's scores)."""
    return "".join(f"_{short}{cfg[k]}" for k, short in shorts if cfg[k] != defaults[k])


def check_sampling_args(cfg):
    """Sampling settings that would run but mean nothing stop here, with the range to use (and
    the counts of sample.py and eval.py: samples, batch size, prompts per category)."""
    from configurator import AT_LEAST_0, AT_LEAST_1, FRACTION, check_ranges
    check_ranges(cfg, [(("steps", "num_samples", "batch_size", "n_per_category"), AT_LEAST_1),
                       (("temperature", "cfg", "frames"), AT_LEAST_0),
                       (("token_temperature",), (AT_LEAST_0[0], "0 (most likely code) or more")),
                       (("history_ratio",), FRACTION)])


def load_image_codes(path, tok, width, height):
    """Image-to-video: the image at path as frame-0 codes [h, w], or a clear error."""
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError) as e:
        raise SystemExit(f"error: cannot read image {path!r}: {e}")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # convert("RGB") would clip these to white
        raise SystemExit(f"error: {path} has {img.mode} pixels (16-bit or float): save it as an 8-bit "
                         f"RGB image")
    alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if alpha and img.convert("RGBA").getextrema()[3][0] < 255:
        raise SystemExit(f"error: {path} has transparent pixels: flatten it onto a background, or "
                         f"save it without transparency")
    img = img.convert("RGB")
    if img.size != (width, height):
        raise SystemExit(f"error: {path} is {img.size[0]}x{img.size[1]} but the model generates "
                         f"{width}x{height}: resize it to {width}x{height}")
    return tok.encode(np.array(img)[None])[0]  # (h, w)


def load_model(out_dir, name="ckpt.pt", device="cpu", compile=False):
    """The trained model and its checkpoint dict (config and data meta inside). compile: each
    sampling step becomes one compiled graph, replayed as a CUDA graph on the GPU."""
    from train import load_checkpoint, model_from_checkpoint
    path = os.path.join(out_dir, name)
    ckpt = load_checkpoint(path, device)
    model = model_from_checkpoint(ckpt, path).to(device).eval()
    if compile:
        compile_for_sampling(model)
    return model, ckpt


def load_codes_tokenizer(meta, device="cpu", path=""):
    """The video tokenizer whose codes a checkpoint's model was trained on, or one clear error: no
    other tokenizer decodes those codes. It is read from meta["tokenizer"] (the path the data was
    encoded with, relative to where that ran), or from `path` if given (a copy moved elsewhere);
    either way its weights must match meta["tokenizer_fingerprint"]."""
    from tokenizer import load_tokenizer
    given, path = bool(path), path or meta["tokenizer"]
    try:
        tok = load_tokenizer(path, device)
    except (FileNotFoundError, RuntimeError) as e:
        why = "no such file" if isinstance(e, FileNotFoundError) else "not a video tokenizer"
        where = f"--tokenizer_path={path} ({why})" if given else f"{path!r} ({why})"
        raise SystemExit(f"error: the model decodes only with the video tokenizer its data was encoded "
                         f"with, {meta['tokenizer']!r}; {where} cannot be loaded. Restore that file, "
                         f"or pass --tokenizer_path=PATH to where it is now: a newly trained tokenizer "
                         f"has other codes") from None
    want, have = meta.get("tokenizer_fingerprint"), tok.fingerprint()  # older shards have none
    if want and have != want:
        raise SystemExit(f"error: {path} is not the video tokenizer this model's data was "
                         f"encoded with (its weights are {have}, the data's {want}): "
                         f"its codes would decode to other pixels. Restore that tokenizer, or train "
                         f"the model again on shards made with this one")
    return tok


def compile_for_sampling(model):
    """Compile the body for sampling: on CUDA with mode='reduce-overhead' (CUDA graphs), so a
    MaskGIT step is one graph replay with no kernel-launch overhead."""
    on_gpu = next(model.parameters()).is_cuda
    return model.compile_body(**(dict(mode="reduce-overhead") if on_gpu else {}))


def main(argv=None):
    from configurator import configure, print_config, writable_dir
    from tokenizer import encode_text, format_prompt, unknown_words
    cfg = configure(DEFAULTS, argv)
    print_config(cfg)
    check_sampling_args(cfg)
    torch.set_flush_denormal(True)  # CPU: denormal floats are 10x slower and no more useful than 0
    model, ckpt = load_model(cfg["out_dir"], cfg["ckpt"], cfg["device"], cfg["compile"])
    sample_dir = writable_dir(cfg["sample_dir"] or os.path.join(cfg["out_dir"], "samples"),
                              "sample_dir" if cfg["sample_dir"] else "out_dir")
    meta, train_cfg = ckpt["meta"], ckpt["config"]
    tok = load_codes_tokenizer(meta, cfg["device"], cfg["tokenizer_path"])
    s_t = tok.compression[0]
    trained = 1 + (meta["latent_shape"]["video"][0] - 1) * s_t  # pixel frames of the training clips
    frames = cfg["frames"] or trained
    if (frames - 1) % s_t:
        raise SystemExit(f"error: frames must be 1 + k*{s_t} for this tokenizer (1, {1 + s_t}, "
                         f"{1 + 2 * s_t}, ...), got {frames}")
    prompts = [cfg["prompt"].strip()]
    if not prompts[0] and not cfg["prompt_file"]:
        raise SystemExit('error: --prompt is empty: give a caption, such as --prompt="a red circle moves '
                         'right" (guidance compares the model with and without it)')
    if cfg["prompt_file"]:
        try:
            with open(cfg["prompt_file"]) as f:
                prompts = [line.strip() for line in f if line.strip()]
        except OSError as e:
            raise SystemExit(f"error: cannot read --prompt_file: {e}")
        except UnicodeDecodeError:
            raise SystemExit(f"error: --prompt_file={cfg['prompt_file']} is not UTF-8 text: save it "
                             f"as UTF-8, one prompt a line") from None
        if not prompts:
            raise SystemExit(f"error: {cfg['prompt_file']} holds no prompt (one a line)")
    h, w = meta["latent_shape"]["video"][1:]
    if frames > trained:
        print(f"note: {frames} frames, more than the {trained} of the training clips: frames past "
              f"those were never trained on")
    first = None
    if cfg["image"]:
        first = load_image_codes(cfg["image"], tok, meta["width"], meta["height"])
        if frames == 1:
            print("note: --image with --frames=1 gives back the image (as its codes decode): "
                  "nothing is generated")
    # settings off their defaults name the files too (as eval.py's), so no run overwrites another's
    tag = settings_tag(cfg, DEFAULTS, (("frames", "f"), ("steps", "steps"), ("cfg", "cfg"), ("temperature", "t"),
                                       ("token_temperature", "tt"), ("history_ratio", "h")))
    if cfg["ckpt"] != DEFAULTS["ckpt"]:
        tag += "_" + file_stem(os.path.splitext(os.path.basename(cfg["ckpt"]))[0])
    if cfg["image"]:  # its name, and its content's hash: first.png and other/first.png differ
        with open(cfg["image"], "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()[:6]
        tag += f"_from_{file_stem(os.path.splitext(os.path.basename(cfg['image']))[0])}-{digest}"
    names = {}  # file name -> prompts that have it, in this run
    for prompt in prompts:
        text = format_prompt(prompt, meta["width"], meta["height"], frames, meta["fps"],
                             train_cfg["prompt_template"])
        words = meta.get("words", [])
        ids = encode_text(text, words)
        unknown = list(dict.fromkeys(unknown_words(text, words)))  # each once
        if words and unknown:  # a words model saw bytes only for its captions' rare words
            print(f"note: {', '.join(map(repr, unknown))} not among the {len(words)} words this model "
                  f"was trained on; spelled in bytes, which it rarely saw")
        if len(ids) > train_cfg["text_len"]:
            raise SystemExit(f"error: the prompt is {len(ids)} tokens, over the model's text budget "
                             f"of {train_cfg['text_len']}: shorten it")
        n = cfg["num_samples"]
        codes = generate(model, [ids] * n, 1 + (frames - 1) // s_t, h, w, train_cfg["text_len"],
                         steps=cfg["steps"], cfg_scale=cfg["cfg"], temperature=cfg["temperature"],
                         token_temperature=cfg["token_temperature"],
                         history_ratio=cfg["history_ratio"], seed=cfg["seed"],
                         first_frame=None if first is None else first[None].expand(n, -1, -1))
        name = file_stem(prompt)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # "a red circle" and "a red circle!": both kept
            name += f"_{names[name]}"
        for i in range(n):
            stem = os.path.join(sample_dir, f"{name}{tag}_{cfg['seed']}_{i}")
            print("wrote " + ", ".join(save_video(tok.decode(codes[i]), stem, meta["fps"])))


if __name__ == "__main__":
    from configurator import run
    run(main)
