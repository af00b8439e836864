"""
Train Lumos-1 with AR-DF (sec. 3.3): temporal tube masking, loss at masked visual tokens only.
One process on CPU or GPU, or DDP under torchrun (NCCL on CUDA, gloo on CPU).

    python train.py                                     # the default job: tiny preset on CPU
    python train.py config/shapes_gpu.py --compile=True
    torchrun --standalone --nproc_per_node=8 train.py config/shapes_gpu.py
"""
import contextlib
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from configurator import (AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, check_ranges, configure,
                          first_sentence, print_config, run, save_atomic, writable_dir)
from masking import MASK_KINDS, training_mask
from model import GPT, PRESETS, GPTConfig, device_peak_flops, prompt_pairs
from optim import Combined, Muon, cosine_lr
from sample import CFG_SCALE, STEPS
from tokenizer import (MASK, PAD_FRAME, TEMPLATES, VISUAL_OFFSET, build_sequence, collate, encode_text,
                       format_prompt, learn_words)

# -----------------------------------------------------------------------------
# default config: the tiny preset, end to end on a laptop CPU
_before = set(globals())
out_dir = "out"
init_from = "scratch"          # 'scratch' | 'resume' (from out_dir/ckpt.pt)
seed = 1337
# data
data_dir = "data/shards/shapes"  # token shards (data/prepare.py); made on first use for shapes
dataset = "shapes"             # 'shapes' (prepared automatically) or 'folder' (prepare it first)
tokenizer_path = "out/tokenizer.pt"  # trained first if missing (shapes) ...
tokenizer_args = ""            # ... with these tokenizer.py overrides (config/shapes_gpu.py sets them)
height = 32                    # shapes clips: resolution, frames (1 + k*s_t) and fps
width = 32
frames = 9
fps = 8
image_ratio = 0.25             # fraction of micro-batches that are images (1-frame videos)
image_iters = 0                # the paper's stage 1: this many steps of images alone first; 0: none
                               # (text-to-image first, then joint batches at image_ratio)
text_len = 88                  # text budget in tokens (left-padded); longer prompts are an error
prompt_template = "short"      # 'short' | 'official' (tokenizer.TEMPLATES)
text_vocab = "words"           # 'words': the training captions' words are tokens, the rest bytes
                               # (tokenizer.learn_words) | 'bytes': UTF-8 bytes only
# model
model_size = "tiny"            # model.PRESETS
n_layer = 0                    # 0: take the preset's value
n_head = 0
n_kv_head = 0
n_embd = 0
ffn_hidden = 0
rope_kind = "mmrope"           # '1d' | 'mrope' | 'mmrope' (the paper's M-RoPE baseline: with rope_scaling=False)
rope_scaling = True            # scale visual positions by the tokenizer's compression
attn_impl = "sdpa"             # 'sdpa' (dense mask) | 'flex' (FlexAttention, CUDA) | 'frames' (SDPA a frame)
grad_checkpoint = False        # activation checkpointing: recompute each block in backward
loss_chunk = 0                 # rows per chunk of the masked-row loss; 0: automatic (model.loss_chunk_rows)
# AR-DF
mask_kind = "tube"             # 'tube' | 'random' | 'diffusion_forcing'
mask_floor = 0.7               # rho = max(cos(pi u / 2), mask_floor)
text_drop = 0.1                # drop the text of this fraction of samples (classifier-free guidance)
text_loss = 0.0                # ours: weight of a next-token loss on the prompt; 0 = the paper (no
                               # text loss). It helps byte-level prompts (text_vocab='bytes'; README)
# optimisation
batch_size = 16                # per micro-batch and rank
gradient_accumulation_steps = 1
max_iters = 2000
learning_rate = 2.5e-3         # with Muon; AdamW (the paper) ran best at 5e-3 here (README)
min_lr = 2.5e-4
warmup_iters = 100
lr_decay_iters = 0             # 0: max_iters
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
optimizer = "muon"             # 'muon' (ours: Muon for the blocks' matrices, AdamW for the rest;
                               # README) | 'adamw' (the paper)
grad_clip = 4.0                # clip the global gradient norm at this; 0: no clipping (as nanoGPT)
# evaluation, logging, checkpoints
eval_interval = 500
eval_iters = 10
log_interval = 25
always_save_checkpoint = True
wandb_log = False
wandb_project = "nanolumos"
# samples written at the end of training
sample_prompts = ("a red circle moves right", "a blue square moves up",
                  "a green triangle moves left", "a yellow circle stays still", "a magenta square")
sample_steps = STEPS           # MaskGIT steps and guidance for them (sample.py's defaults)
sample_cfg = CFG_SCALE
# system
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
compile = False
# -----------------------------------------------------------------------------
DEFAULTS = {k: v for k, v in globals().items() if k not in _before and k != "_before"}


def setup_distributed(cfg):
    """(rank, local_rank, world_size, device); initialises the process group under torchrun."""
    if int(os.environ.get("RANK", -1)) == -1:
        return 0, 0, 1, cfg["device"]
    backend = "nccl" if cfg["device"].startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    rank, local_rank, world = dist.get_rank(), int(os.environ["LOCAL_RANK"]), dist.get_world_size()
    device = f"cuda:{local_rank}" if backend == "nccl" else cfg["device"]
    if backend == "nccl":
        torch.cuda.set_device(device)
    return rank, local_rank, world, device


def run_header(cfg, device):
    """What every run log opens with: code version, libraries, device, resolved config.
    Printed, and returned for the first record of log.jsonl."""
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        git = ""
    on_gpu = str(device).startswith("cuda")
    dev = torch.cuda.get_device_name(device) if on_gpu else platform.processor() or "cpu"
    header = dict(git=git or "unknown", python=platform.python_version(), torch=torch.__version__,
                  numpy=np.__version__, device=str(device), device_name=dev,
                  threads=torch.get_num_threads(), config=cfg)
    print(f"nanolumos git {header['git']} | python {header['python']} | torch {header['torch']} | "
          f"numpy {header['numpy']} | device {device} ({dev}), {header['threads']} threads")
    print_config(cfg)
    return header


# -----------------------------------------------------------------------------
# data

VAL_SEED = 0  # validation batches: the same for every run on the same data, whatever its seed


class Batches:
    """
    Training and validation batches from token shards. Every draw is a pure function of
    (seed, split, rank, step, micro-step): exact resume needs only the step number.
    """

    def __init__(self, cfg, split, rank, words=None):
        """words: the text vocabulary (tokenizer.learn_words); None learns it from this split's
        captions if cfg['text_vocab'] is 'words' (the train split: validation takes train's)."""
        from data.prepare import load_meta, load_shards
        self.cfg, self.split, self.rank = cfg, split, rank
        try:
            self.meta = load_meta(cfg["data_dir"])
        except (FileNotFoundError, ValueError) as e:  # no shards, or damaged ones
            raise SystemExit(f"error: {e}")
        m = self.meta
        have, asked = (m["height"], m["width"], m["frames"], m["fps"]), tuple(
            cfg[k] for k in ("height", "width", "frames", "fps"))
        if have != asked:
            raise SystemExit(f"error: {cfg['data_dir']} holds {have[0]}x{have[1]} clips of {have[2]} "
                             f"frames at {have[3]} fps, but this run asks for {asked[0]}x{asked[1]}, "
                             f"{asked[2]} frames at {asked[3]} fps: give another --data_dir (shapes "
                             f"shards are made there on first use) or the data's settings")
        shards = {}  # kind -> (codes, formatted prompts)
        for kind in ("video", "image"):
            try:
                codes, records = load_shards(cfg["data_dir"], split, kind)
            except FileNotFoundError:  # no shards of this kind (a folder of images only, say)
                continue
            except ValueError as e:  # damaged shards
                raise SystemExit(f"error: {e}")
            if len(records):
                shards[kind] = (codes, [self.prompt_text(r["caption"], codes.shape[1]) for r in records])
        if words is None:
            words = () if cfg["text_vocab"] == "bytes" else learn_words(
                t for _, texts in shards.values() for t in texts)
        self.words = tuple(words)
        self.kinds = {kind: (codes, [self.prompt_ids(t) for t in texts])
                      for kind, (codes, texts) in shards.items()}
        if not self.kinds:
            raise SystemExit(f"error: no {split} clips in {cfg['data_dir']}: run python data/prepare.py "
                             f"(for a folder of your own, with enough files that val_fraction leaves "
                             f"some in each split)")
        if split == "train" and cfg["image_iters"] and "image" not in self.kinds:
            raise SystemExit(f"error: image_iters={cfg['image_iters']} trains on images first, but "
                             f"{cfg['data_dir']} holds no images: set --image_iters=0, or add images")

    def prompt_text(self, caption, latent_frames):
        m, st = self.meta, self.meta["compression"][0]
        frames = 1 + (latent_frames - 1) * st  # pixel frames
        return format_prompt(caption, m["width"], m["height"], frames, m["fps"], self.cfg["prompt_template"])

    def prompt_ids(self, text):
        ids = encode_text(text, self.words)
        if len(ids) > self.cfg["text_len"]:
            raise SystemExit(f"error: the prompt {text!r} is {len(ids)} tokens, over the text "
                             f"budget text_len={self.cfg['text_len']}: raise --text_len")
        return ids

    def generator(self, step, micro):
        # keyed by the global micro-batch index (rank * accumulation + micro): 2 ranks x 1
        # micro-step draw exactly the data of 1 rank x 2 micro-steps. Validation batches do not
        # depend on the run's seed: runs with different seeds are scored on the same clips and masks.
        g = torch.Generator()
        split_id = 0 if self.split == "train" else 1
        seed = self.cfg["seed"] if self.split == "train" else VAL_SEED
        index = self.rank * self.cfg["gradient_accumulation_steps"] + micro
        # hash() of a tuple of ints is the same in every process and run (only str hashes are
        # salted); its algorithm has been stable since Python 3.8
        return g.manual_seed(hash((seed, split_id, step, index)) % 2**62)

    def get(self, step, micro=0, text=True):
        """One micro-batch as a dict of [B, L] tensors: idx (MASK at the masked positions),
        targets (clean), loss_mask, frame, row, col. text=False: the same clips and masks with
        every prompt dropped (the unconditional sequences of classifier-free guidance)."""
        cfg, g = self.cfg, self.generator(step, micro)
        stage1 = self.split == "train" and step < cfg["image_iters"]  # the paper's stage 1: images only
        use_images = "image" in self.kinds and ("video" not in self.kinds or stage1
                                                or torch.rand(1, generator=g).item() < cfg["image_ratio"])
        codes, prompts = self.kinds["image" if use_images else "video"]
        pick = torch.randint(len(prompts), (cfg["batch_size"],), generator=g).tolist()
        # classifier-free guidance: text_drop of the samples (the paper: 10%) lose their prompt, so
        # one model also learns the unconditional side (the sequence without text). Validation
        # drops prompts too, so its loss is the training objective's (and changes with text_drop)
        drop = (torch.rand(len(pick), generator=g) < cfg["text_drop"]).tolist()
        clips = torch.from_numpy(np.stack([codes[i] for i in pick]).astype(np.int64))  # (B, F, h, w)
        batch = collate([build_sequence(None if d or not text else prompts[i], c, cfg["text_len"])
                         for i, d, c in zip(pick, drop, clips)])
        B, F, h, w = clips.shape
        mask = training_mask(cfg["mask_kind"], B, F, h * w, g, cfg["mask_floor"])  # (B, F, N): tube by default
        loss_mask = torch.zeros_like(batch["idx"], dtype=torch.bool)
        loss_mask[:, cfg["text_len"]:] = mask.flatten(1)  # the video starts at text_len in every row (layout)
        batch["targets"] = batch["idx"]
        batch["idx"] = batch["idx"].masked_fill(loss_mask, MASK)
        batch["loss_mask"] = loss_mask
        if not cfg["compile"] and cfg["attn_impl"] in ("sdpa", "frames"):
            # drop columns that are padding in every row: same result, less work (compiled
            # graphs and FlexAttention kernels want one fixed length instead)
            trim = int((batch["frame"] == PAD_FRAME).all(0).sum())  # left padding is a prefix
            batch = {k: v[:, trim:] for k, v in batch.items()}
        return batch


# -----------------------------------------------------------------------------
# model, optimiser, schedule

def model_config(cfg, meta=None):
    """The GPTConfig of this run; without the data's meta (before it exists), with stand-in
    vocabulary and compression, to check the settings early."""
    meta = meta or dict(compression=(1, 1, 1), codebook_size=1)
    shape = dict(PRESETS[cfg["model_size"]])
    shape.update({k: cfg[k] for k in ("n_layer", "n_head", "n_kv_head", "n_embd", "ffn_hidden") if cfg[k]})
    scales = tuple(meta["compression"]) if cfg["rope_scaling"] else (1, 1, 1)
    return GPTConfig(**shape, n_visual=meta["codebook_size"], rope_kind=cfg["rope_kind"],
                     rope_scales=scales, attn_impl=cfg["attn_impl"],
                     grad_checkpoint=cfg["grad_checkpoint"], loss_chunk=cfg["loss_chunk"],
                     text_head=cfg["text_loss"] > 0)


def make_optimizer(model, cfg, device):
    """AdamW, weight decay on matrices only (not norms). optimizer='muon': the blocks' matrices
    take Muon steps instead (the embedding, the heads and the norms stay on AdamW)."""
    hidden, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            muon = cfg["optimizer"] == "muon" and p.dim() == 2 and name.startswith("blocks.")
            (hidden if muon else rest).append(p)
    groups = [dict(params=[p for p in rest if p.dim() >= 2], weight_decay=cfg["weight_decay"]),
              dict(params=[p for p in rest if p.dim() < 2], weight_decay=0.0)]
    adamw = torch.optim.AdamW(groups, lr=cfg["learning_rate"], betas=(cfg["beta1"], cfg["beta2"]),
                              fused=str(device).startswith("cuda"))
    if not hidden:
        return adamw
    return Combined([adamw, Muon(hidden, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])])


def lr_at(it, cfg):
    """This run's learning rate at step `it` (optim.cosine_lr): warmup, cosine decay to min_lr."""
    return cosine_lr(it, cfg["learning_rate"], cfg["min_lr"], cfg["warmup_iters"],
                     cfg["lr_decay_iters"] or cfg["max_iters"])


_body_flops = {}


def step_flops(model, frame, n_masked):
    """Training FLOPs of a micro-batch with frame ids [B, L] and n_masked loss rows in all,
    counted as computed (model.flops_per_sequence); the per-layout part is computed once per
    (model config, length, frames), from row 0: rows differ only in their prompt's length (about
    3% of the count between a long prompt and none), so MFU is that close, not exact."""
    key = (repr(model.cfg), frame.shape[1], int(frame[0].max()))
    if key not in _body_flops:
        _body_flops[key] = model.flops_per_sequence(frame[0].cpu(), 0)
    c = model.cfg
    return _body_flops[key] * len(frame) + 6 * c.n_embd * c.n_visual * n_masked


# -----------------------------------------------------------------------------
# checkpoints (written by configurator.save_atomic)

def load_checkpoint(path, device="cpu"):
    """The checkpoint at path, or one clear error saying what to do."""
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        there = sorted(f for f in os.listdir(folder) if f.endswith(".pt") and f != "tokenizer.pt"
                       ) if os.path.isdir(folder) else []
        if there:  # a mistyped name: say what is there
            raise SystemExit(f"error: no checkpoint at {path}; {folder} holds {', '.join(there)}: "
                             f"name one with --ckpt")
        raise SystemExit(f"error: no checkpoint at {path}: train one with python train.py "
                         f"--out_dir={folder}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated or foreign file: report it, never a traceback
        raise SystemExit(f"error: {path} is not a readable checkpoint ({type(e).__name__}: "
                         f"{first_sentence(e)}); "
                         f"it may be corrupt or from another program: retrain or restore it")
    if not (isinstance(ckpt, dict) and {"model", "model_args", "config", "meta"} <= ckpt.keys()):
        raise SystemExit(f"error: {path} is not a checkpoint of train.py (a video tokenizer, or "
                         f"another program's file?): give the ckpt.pt or best.pt of a training run")
    return ckpt


def model_from_checkpoint(ckpt, path, **overrides):
    """The GPT stored in a loaded checkpoint (run-time settings such as attn_impl in overrides),
    or one clear error: another version's model, or weights that do not fit it."""
    if ckpt.get("model_args", {}).get("visual_offset", VISUAL_OFFSET) != VISUAL_OFFSET:
        raise SystemExit(f"error: {path} comes from an older nanolumos whose vocabulary had its visual "
                         f"codes at token {ckpt['model_args']['visual_offset']} (now {VISUAL_OFFSET}): "
                         f"retrain it with this version, or sample it with the version that made it")
    try:
        model = GPT(GPTConfig.from_dict({**ckpt["model_args"], **overrides}))
    except ValueError as e:
        raise SystemExit(f"error: {path}: {e}")
    mine, theirs = model.state_dict(), ckpt["model"]
    wrong = sorted(set(mine) ^ set(theirs)) + [k for k in mine if k in theirs
                                               and getattr(theirs[k], "shape", None) != mine[k].shape]
    if wrong:  # torch's own message lists every key: name a few
        raise SystemExit(f"error: {path}: its weights do not fit the model its config describes "
                         f"({len(wrong)} missing, extra or misshapen, such as {', '.join(wrong[:3])}): "
                         f"the file is damaged or was edited; restore it or retrain")
    model.load_state_dict(theirs)
    return model


def rng_state():
    """The global RNGs (training draws from keyed generators, Batches.generator; these cover the
    rest, such as model init and sampling at the end). Rank 0's on every rank after a resume."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(torch=torch.get_rng_state(), numpy=[kind, keys.tolist(), pos, has_gauss, gauss],
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())
    if isinstance(state["numpy"], list) and len(state["numpy"]) == 5:  # older checkpoints saved keys only
        kind, keys, *rest = state["numpy"]
        np.random.set_state((kind, np.array(keys, np.uint32), *rest))
    if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# -----------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def evaluate(model, batches, cfg, device, ctx, text=True):
    """Validation loss overall and per frame, on fixed (seeded) batches and masks.
    text=False scores the same batches with every prompt dropped: the gap between the two is
    how much the model uses the prompt."""
    model.eval()
    loss, count, frame_loss, frame_count = 0.0, 0, {}, {}
    for k in range(cfg["eval_iters"]):
        b = {key: v.to(device) for key, v in batches.get(0, micro=k, text=text).items()}  # batch k, fixed
        with ctx:
            out = model(b["idx"], b["frame"], b["row"], b["col"], targets=b["targets"],
                        loss_mask=b["loss_mask"])
        loss += out["loss_sum"].item()
        count += out["count"].item()
        for f, (s, c) in enumerate(zip(out["frame_loss_sum"].tolist(), out["frame_count"].tolist())):
            frame_loss[f] = frame_loss.get(f, 0.0) + s
            frame_count[f] = frame_count.get(f, 0) + c
    model.train()
    per_frame = [frame_loss[f] / max(1, frame_count[f]) for f in sorted(frame_loss)]
    return loss / max(1, count), per_frame


def sample_prompt(prompt, cfg, meta):
    """An end-of-run sample prompt as (token ids, latent frames): an image (one frame) unless it
    asks for motion or stillness."""
    latent_frames = 1 if "moves" not in prompt and "still" not in prompt else meta["latent_shape"]["video"][0]
    frames = 1 + (latent_frames - 1) * meta["compression"][0]
    text = format_prompt(prompt, meta["width"], meta["height"], frames, meta["fps"], cfg["prompt_template"])
    ids = encode_text(text, meta["words"])
    if len(ids) > cfg["text_len"]:  # checked when the run starts, not after its training
        raise SystemExit(f"error: the sample prompt {prompt!r} is {len(ids)} tokens, over the text "
                         f"budget text_len={cfg['text_len']}: shorten it or raise --text_len")
    return ids, latent_frames


def write_samples(raw_model, tok, cfg, meta, device):
    """Sample videos (GIF + PNG strip) for the fixed prompts into out_dir/samples, decoded by
    `tok`, the tokenizer of the data's codes."""
    from sample import file_stem, generate, save_video
    h, w = meta["latent_shape"]["video"][1:]
    os.makedirs(os.path.join(cfg["out_dir"], "samples"), exist_ok=True)
    for prompt in cfg["sample_prompts"]:
        ids, F = sample_prompt(prompt, cfg, meta)
        codes = generate(raw_model, [ids], F, h, w, cfg["text_len"], steps=cfg["sample_steps"],
                         cfg_scale=cfg["sample_cfg"], seed=cfg["seed"], progress=False)
        video = tok.decode(codes[0])
        path = os.path.join(cfg["out_dir"], "samples", file_stem(prompt))
        print("wrote " + ", ".join(save_video(video, path, meta["fps"])))


# -----------------------------------------------------------------------------

RUN_FILES = ("ckpt.pt", "best.pt", "log.jsonl")  # what a run writes in out_dir; a new run writes none over
# the model's shape and positions: a resumed run takes them from its checkpoint, never from the command
SHAPE_KEYS = ("n_layer", "n_head", "n_kv_head", "n_embd", "ffn_hidden", "rope_kind", "rope_scales")


def check_config(cfg):
    """Settings that would crash deep inside the run, or train on nothing, stop here."""
    check_ranges(cfg, [
        (("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval",
          "text_len", "sample_steps"), AT_LEAST_1),
        (("max_iters", "warmup_iters", "lr_decay_iters", "min_lr", "weight_decay", "grad_clip",
          "text_loss", "loss_chunk", "sample_cfg", "image_iters", "n_layer", "n_head", "n_kv_head",
          "n_embd", "ffn_hidden"), AT_LEAST_0),
        (("image_ratio", "mask_floor", "text_drop"), FRACTION),
        (("beta1", "beta2"), (lambda x: 0 <= x < 1, "0 or more and below 1")),
        (("learning_rate",), POSITIVE)])
    for key, choices in (("init_from", ("scratch", "resume")), ("dataset", ("shapes", "folder")),
                         ("model_size", tuple(PRESETS)), ("mask_kind", MASK_KINDS),
                         ("prompt_template", tuple(TEMPLATES)), ("text_vocab", ("words", "bytes"))):
        if cfg[key] not in choices:
            raise SystemExit(f"error: {key} must be one of {', '.join(map(repr, choices))}, "
                             f"got {cfg[key]!r}")
    try:  # the model's shape, RoPE kind and attention: before minutes of data preparation
        model_config(cfg).validate()
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    if cfg["optimizer"] not in ("adamw", "muon"):
        raise SystemExit(f"error: optimizer must be 'adamw' or 'muon', got {cfg['optimizer']!r}")
    if cfg["dtype"] not in ("float32", "bfloat16"):  # float16 would need loss scaling, which is not here
        raise SystemExit(f"error: dtype must be 'float32' or 'bfloat16', got {cfg['dtype']!r} "
                         f"(on a GPU without bfloat16, use float32)")


def check_resumable(ckpt, ckpt_path, gpt_cfg, cfg, meta):
    """Stop unless this run can continue the checkpoint: the same model shape, text loss,
    optimizer, text vocabulary and tokenizer codes. How it runs (kernel, dtype, device) may change."""
    asked = model_config(cfg, meta)
    differ = [k for k in SHAPE_KEYS if getattr(gpt_cfg, k) != getattr(asked, k)]
    if differ:
        raise SystemExit(f"error: {ckpt_path} holds a model with "
                         + ", ".join(f"{k}={getattr(gpt_cfg, k)!r}" for k in differ)
                         + "; this run asks for "
                         + ", ".join(f"{k}={getattr(asked, k)!r}" for k in differ)
                         + ": resume it with the settings it was trained with (--model_size, its "
                           "shape keys, --rope_kind, --rope_scaling)")
    if gpt_cfg.text_head != (cfg["text_loss"] > 0):
        raise SystemExit(f"error: {ckpt_path} was trained {'with' if gpt_cfg.text_head else 'without'} "
                         f"the text loss: resume it with --text_loss="
                         f"{ckpt['config'].get('text_loss', 0.0)}")
    trained_with = ckpt["config"].get("optimizer", "adamw")
    if trained_with != cfg["optimizer"]:
        raise SystemExit(f"error: {ckpt_path} was trained with optimizer={trained_with!r}: resume "
                         f"it with --optimizer={trained_with} (under ablate.py: "
                         f"--train_args='--optimizer={trained_with}')")
    if ckpt["meta"].get("words", []) != meta["words"]:
        raise SystemExit(f"error: {ckpt_path} was trained with another text vocabulary than "
                         f"{cfg['data_dir']}'s captions and --text_vocab={cfg['text_vocab']} give: "
                         f"resume it with the data and --text_vocab it was trained with")
    trained_on = ckpt["meta"].get("tokenizer_fingerprint")  # load_checkpoint checked "meta"
    if trained_on and meta.get("tokenizer_fingerprint") not in (None, trained_on):
        raise SystemExit(f"error: {ckpt_path} was trained on the codes of another tokenizer than "
                         f"{cfg['data_dir']}'s: resume it with the data it was trained on "
                         f"(--data_dir={ckpt['config']['data_dir']})")


def accumulate_gradients(model, micro, cfg, device, ctx, world, n_frames):
    """
    Forward and backward over this rank's micro-batches, leaving in the parameters' .grad the
    gradient of the AR-DF loss averaged over the masked tokens of the whole global batch (all
    micro-batches, all ranks; sec. 3.3), plus text_loss times the mean next-token loss over the
    global batch's prompt tokens when the text head is on. Returns (stats, count, text_count),
    summed over the global batch: stats = [loss sum, text loss sum, per-frame loss sums
    (n_frames), per-frame counts (n_frames)]; count and text_count are the global normalisers.
    """
    counts = torch.tensor([float(sum(b["loss_mask"].sum() for b in micro)),
                           float(sum(prompt_pairs(b["frame"]).sum() for b in micro))], device=device)
    if world > 1:
        dist.all_reduce(counts)  # one collective for both
    count, text_count = counts
    stats = torch.zeros(2 + 2 * n_frames, device=device)
    for m, b in enumerate(micro):
        b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        last = m == len(micro) - 1
        sync = contextlib.nullcontext() if (last or world == 1) else model.no_sync()
        with sync:  # no gradient all-reduce until the last micro-step (forward and backward)
            with ctx:
                out = model(b["idx"], b["frame"], b["row"], b["col"], targets=b["targets"],
                            loss_mask=b["loss_mask"])
            # DDP averages gradients over ranks: scale by world to get the global-batch mean
            objective = out["loss_sum"] / count
            if "text_loss_sum" in out:
                objective = objective + cfg["text_loss"] * out["text_loss_sum"] / text_count.clamp(min=1)
            (objective * world).backward()
        n = len(out["frame_count"])  # 1 for an image micro-batch: it fills frame 0 only
        stats[0] += out["loss_sum"].detach()
        stats[1] += out["text_loss_sum"].detach() if "text_loss_sum" in out else 0.0
        stats[2:2 + n] += out["frame_loss_sum"]
        stats[2 + n_frames:2 + n_frames + n] += out["frame_count"]
    if world > 1:
        dist.all_reduce(stats)  # the statistics of every rank in one collective
    return stats, count, text_count


def main(argv=None):
    cfg = configure(DEFAULTS, argv)
    check_config(cfg)
    ckpt_path = os.path.join(cfg["out_dir"], "ckpt.pt")
    earlier = [f for f in RUN_FILES if os.path.exists(os.path.join(cfg["out_dir"], f))]
    if cfg["init_from"] == "scratch" and earlier:  # never overwrite a run, nor what is left of one
        raise SystemExit(f"error: {cfg['out_dir']} holds an earlier run ({', '.join(earlier)} "
                         f"exist{'s' if len(earlier) == 1 else ''}): "
                         f"continue it with --init_from=resume, or start a new one in another "
                         f"--out_dir (or delete the old run first)")
    if cfg["init_from"] == "resume" and not os.path.isfile(ckpt_path):  # before any data is prepared
        if "best.pt" in earlier:  # ckpt.pt deleted or renamed: the best one can be resumed
            raise SystemExit(f"error: {cfg['out_dir']} holds best.pt but no ckpt.pt: copy best.pt to "
                             f"ckpt.pt to resume from its best evaluation")
        if earlier:  # stopped before its first checkpoint: nothing to resume from
            raise SystemExit(f"error: the run in {cfg['out_dir']} stopped before its first checkpoint "
                             f"({', '.join(earlier)}, no ckpt.pt): delete {', '.join(earlier)} and "
                             f"start it again with --init_from=scratch")
        raise SystemExit(f"error: no checkpoint at {ckpt_path} to resume: point --out_dir at the run, "
                         f"or start one with --init_from=scratch")
    torch.set_flush_denormal(True)  # CPU: denormal floats are 10x slower and no more useful than 0
    rank, local_rank, world, device = setup_distributed(cfg)
    master = rank == 0
    if master:
        writable_dir(cfg["out_dir"], "out_dir")
        header = run_header(cfg, device)
    if os.path.isfile(cfg["data_dir"]):
        raise SystemExit(f"error: --data_dir={cfg['data_dir']} is a file, not a folder: give the folder of "
                         f"token shards (data/prepare.py writes one)")
    prepared = os.path.isfile(os.path.join(cfg["data_dir"], "meta.json"))
    if cfg["dataset"] == "shapes" and master and not prepared:
        from data.prepare import prepare_shapes
        try:
            prepare_shapes(out=cfg["data_dir"], tokenizer_path=cfg["tokenizer_path"], height=cfg["height"],
                           width=cfg["width"], frames=cfg["frames"], fps=cfg["fps"], device=str(device),
                           tokenizer_args=cfg["tokenizer_args"])
        except (ValueError, FileExistsError) as e:  # a geometry it cannot take, no tokenizer, files there
            raise SystemExit(f"error: {e}")
    if world > 1:
        dist.barrier()
    torch.manual_seed(cfg["seed"] + rank)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg["dtype"]]
    ctx = (contextlib.nullcontext() if ptdtype == torch.float32
           else torch.autocast(device_type=device_type, dtype=ptdtype))

    if cfg["attn_impl"] == "flex" and device_type == "cpu":
        raise SystemExit("error: attn_impl='flex' trains on CUDA only (FlexAttention has no CPU "
                         "backward); use --attn_impl=sdpa on CPU")
    train_data = Batches(cfg, "train", rank)
    val_data = Batches(cfg, "val", 0, words=train_data.words)
    meta = dict(train_data.meta, words=list(train_data.words))  # the checkpoint's text vocabulary
    from sample import load_codes_tokenizer  # here: sample.py imports train.py
    if not os.path.exists(meta["tokenizer"]) and os.path.isfile(cfg["tokenizer_path"]):
        load_codes_tokenizer(meta, "cpu", cfg["tokenizer_path"])  # the data's own, or one clear error
        meta["tokenizer"] = cfg["tokenizer_path"]  # moved: the checkpoint records where it is now
    elif (master and cfg["tokenizer_path"] != DEFAULTS["tokenizer_path"] and os.path.exists(meta["tokenizer"])
          and not (os.path.exists(cfg["tokenizer_path"])
                   and os.path.samefile(cfg["tokenizer_path"], meta["tokenizer"]))):
        print(f"note: --tokenizer_path={cfg['tokenizer_path']} is not used: the data in {cfg['data_dir']} "
              f"was encoded with {meta['tokenizer']}, which decodes it")
    tok = None
    if master and cfg["sample_prompts"]:  # the samples at the end need the data's tokenizer: load it now
        tok = load_codes_tokenizer(meta, device)  # checked against the data's fingerprint
        for prompt in cfg["sample_prompts"]:
            sample_prompt(prompt, cfg, meta)  # each fits the text budget (or one error, now)
    iter_num, best_val = 0, float("inf")
    if cfg["init_from"] == "resume":
        ckpt = load_checkpoint(ckpt_path, device)
        # how to run (attention kernel, checkpointing, loss chunks) may change on resume; shapes may not
        model = model_from_checkpoint(ckpt, ckpt_path, attn_impl=cfg["attn_impl"],
                                      grad_checkpoint=cfg["grad_checkpoint"],
                                      loss_chunk=cfg["loss_chunk"]).to(device)
        check_resumable(ckpt, ckpt_path, model.cfg, cfg, meta)
        gpt_cfg, iter_num, best_val = model.cfg, ckpt["iter_num"], ckpt["best_val_loss"]
        if iter_num > cfg["max_iters"]:
            raise SystemExit(f"error: {ckpt_path} is at iteration {iter_num} already, past this run's "
                             f"max_iters={cfg['max_iters']}: raise --max_iters to train on")
        if iter_num == cfg["max_iters"]:  # finished: nothing to train, no checkpoint rewritten
            if master:
                print(f"{ckpt_path} is at max_iters={iter_num} already: nothing to train "
                      f"(raise --max_iters to train on)")
                if cfg["sample_prompts"]:  # in case the run was stopped while it wrote them
                    write_samples(model, tok, cfg, meta, device)
            if dist.is_initialized():
                dist.destroy_process_group()
            return
    else:
        gpt_cfg = model_config(cfg, meta)
        model = GPT(gpt_cfg).to(device)
    optimizer = make_optimizer(model, cfg, device)
    if cfg["init_from"] == "resume":
        hyper = [{k: g[k] for k in ("weight_decay", "betas") if k in g} for g in optimizer.param_groups]
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, h in zip(optimizer.param_groups, hyper):  # this run's settings, not the old run's
            group.update(h)
        set_rng_state(ckpt["rng"])
        del ckpt
    if master:
        print(f"model: {model.num_params() / 1e6:.2f}M parameters "
              f"({model.num_params(embedding=False) / 1e6:.2f}M without the embedding)")
    raw_model = model
    if cfg["compile"]:  # the body, one static-shape graph; the masked-row loss stays eager
        model.compile_body()
    if world > 1:
        model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None)

    log = None
    if master:  # a new run starts a new log; a resumed one appends, from a new header record
        log = open(os.path.join(cfg["out_dir"], "log.jsonl"), "a" if cfg["init_from"] == "resume" else "w")
        log.write(json.dumps(dict(run=dict(header, init_from=cfg["init_from"], iter=iter_num))) + "\n")
        log.flush()
    if cfg["wandb_log"] and master:
        try:
            import wandb
        except ImportError:
            raise SystemExit("error: wandb_log=True needs wandb: pip install wandb")
        wandb.init(project=cfg["wandb_project"], config=cfg)
    peak = device_peak_flops(device)
    accum = cfg["gradient_accumulation_steps"]
    n_frames = max(shape[0] for shape in meta["latent_shape"].values())
    t_log, tokens_since, flops_since, first_step = time.time(), 0, 0.0, True
    bar = tqdm(total=cfg["max_iters"], initial=iter_num, disable=not master, desc="train")

    def checkpoint(val_loss, per_frame):
        state = dict(model=raw_model.state_dict(), optimizer=optimizer.state_dict(),
                     model_args=asdict(gpt_cfg), config=cfg, meta=meta, iter_num=iter_num,
                     best_val_loss=best_val, val_loss=val_loss, val_frame_loss=per_frame,
                     rng=rng_state())
        save_atomic(state, ckpt_path)  # a crash mid-write leaves the old checkpoint, never half a new one
        if val_loss <= best_val:
            save_atomic(state, os.path.join(cfg["out_dir"], "best.pt"))

    while True:
        if (iter_num % cfg["eval_interval"] == 0 and iter_num > 0) or iter_num == cfg["max_iters"]:
            if master:
                val_loss, per_frame = evaluate(raw_model, val_data, cfg, device, ctx)
                no_text, _ = evaluate(raw_model, val_data, cfg, device, ctx, text=False)
                best_val = min(best_val, val_loss)
                bar.write(f"iter {iter_num}: val loss {val_loss:.4f} | per frame "
                          + " ".join(f"{x:.3f}" for x in per_frame)
                          + f" | without the prompt {no_text:.4f} (text gain {no_text - val_loss:+.4f})")
                log.write(json.dumps(dict(iter=iter_num, val_loss=val_loss, val_frame_loss=per_frame,
                                          val_loss_no_text=no_text)) + "\n")
                log.flush()
                if cfg["always_save_checkpoint"] or val_loss <= best_val:
                    checkpoint(val_loss, per_frame)
            t_log = time.time()  # throughput counts training time only
        if iter_num >= cfg["max_iters"]:
            break

        lr = lr_at(iter_num, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [train_data.get(iter_num, m) for m in range(accum)]
        stats, count, text_count = accumulate_gradients(model, micro, cfg, device, ctx, world, n_frames)
        tokens_since += sum(b["idx"].numel() for b in micro)
        flops_since += sum(step_flops(raw_model, b["frame"], int(b["loss_mask"].sum())) for b in micro)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"] or math.inf)
        loss_sum, text_sum, frame_loss, frame_count = stats[0], stats[1], *stats[2:].split(n_frames)
        loss = (loss_sum / count).item()
        if not (math.isfinite(loss) and math.isfinite(float(grad_norm))):  # before the step spoils them
            raise SystemExit(f"error: loss {loss}, gradient norm {float(grad_norm)} at iter {iter_num}; "
                             f"stopping. The last good checkpoint is {ckpt_path}: resume from it "
                             f"with a lower learning_rate")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        iter_num += 1
        bar.update(1)
        if first_step:  # compile and warm-up time, reported apart from training time
            bar.write(f"first step (compile/warm-up included): {time.time() - t_log:.1f}s")
            t_log, tokens_since, flops_since, first_step = time.time(), 0, 0.0, False

        if iter_num % cfg["log_interval"] == 0:
            # every rank's tokens and FLOPs: image and video micro-batches differ in length, so
            # rank 0's count times world is not the global batch's
            if world > 1:
                sums = torch.tensor([tokens_since, flops_since], dtype=torch.float64, device=device)
                dist.all_reduce(sums)
                tokens_since, flops_since = sums.tolist()
            if master:
                dt = time.time() - t_log
                per_frame = [l / c if c else None for l, c in zip(frame_loss.tolist(), frame_count.tolist())]
                rec = dict(iter=iter_num, loss=loss, frame_loss=per_frame,
                           text_loss=float(text_sum / text_count.clamp(min=1)) if cfg["text_loss"] else None,
                           grad_norm=float(grad_norm),
                           lr=lr, tokens_per_s=tokens_since / dt,
                           mfu=flops_since / dt / peak if peak else None,
                           peak_mem_gb=(torch.cuda.max_memory_allocated() / 1e9
                                        if device_type == "cuda" else None))
                bar.write(f"iter {iter_num}: loss {loss:.4f} | frames "
                          + " ".join("-" if x is None else f"{x:.2f}" for x in per_frame)
                          + (f" | text {rec['text_loss']:.3f}" if cfg["text_loss"] else "")
                          + f" | grad {rec['grad_norm']:.2f} | lr {lr:.2e} | {rec['tokens_per_s']:.0f} tok/s"
                          + (f" | mfu {100 * rec['mfu']:.1f}%" if rec["mfu"] else "")
                          + (f" | mem {rec['peak_mem_gb']:.2f} GB" if rec["peak_mem_gb"] else ""))
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if cfg["wandb_log"]:
                    wandb.log(rec, step=iter_num)
            t_log, tokens_since, flops_since = time.time(), 0, 0.0
    bar.close()
    if master and cfg["sample_prompts"]:
        write_samples(raw_model, tok, cfg, meta, device)
    if dist.is_initialized():  # also under torchrun with one process
        dist.destroy_process_group()


if __name__ == "__main__":
    run(main, "the same command with --init_from=resume continues from the last checkpoint in its "
             "out_dir, if one was written (at each evaluation); if none was, it says how to start again")
