# The paper's 3B shape (28 layers, d=3072, 24 q heads / 8 kv heads, head_dim 128), for real data on
# GPUs. Prepare your own data first:
#   python data/prepare.py --folder=path/to/clips --out=data/shards/mine --height=256 --width=256 \
#       --frames=25 --fps=12 --tokenizer_path=out_3b/tokenizer.pt \
#       --tokenizer_args='--channels=(64,128,128) --compression=(4,8,8) --levels=(8,8,8,5,5,5) --norm=group'
# (prepare.py trains that tokenizer first if it is missing; tokenizer.py trains on shapes clips
# only, at this size, so for real footage expect a tokenizer that reconstructs it poorly)
# Official recipe (the paper and its code): AdamW (0.9, 0.95), weight decay 0.1, grad clip 4.0,
# bf16, 25-frame clips at 12 fps (7 latent frames), the 64000-code (8,8,8,5,5,5) codebook.
out_dir = "out_3b"
dataset = "folder"
data_dir = "data/shards/mine"
tokenizer_path = "out_3b/tokenizer.pt"
height, width, frames, fps = 256, 256, 25, 12  # the shards' geometry: train.py checks it
prompt_template = "official"
image_ratio = 0.5              # half the micro-batches images: the paper's joint stage alternates
                               # image and video batches
image_iters = 0                # its first stage trains on images alone: set as many steps as your
                               # image data warrants; 0: joint from the start
text_len = 256
text_loss = 0.0                # the paper: no text loss (1.0 helps --text_vocab=bytes; README)
optimizer = "adamw"             # the paper (the shapes presets use Muon, README)
model_size = "3b"
batch_size = 4
gradient_accumulation_steps = 16
max_iters = 100000
learning_rate = 1e-4
min_lr = 1e-5
warmup_iters = 2000
eval_interval = 2000
compile = True
attn_impl = "flex"
sample_prompts = ()
