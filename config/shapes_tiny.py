# The default job (python train.py with no arguments): the tiny model on 32x32 shapes clips of
# 9 frames (3 latent frames of 8x8 codes), on a laptop CPU. These are train.py's defaults,
# written out so a fork has one file to edit.
out_dir = "out"
data_dir = "data/shards/shapes"
tokenizer_path = "out/tokenizer.pt"
height, width, frames, fps = 32, 32, 9, 8
model_size = "tiny"
text_vocab = "words"           # the training captions' words are single tokens (README)
text_loss = 0.0                # no loss on the prompt (the paper); 1.0 helps byte-level prompts
optimizer = "muon"             # Muon for the blocks' matrices, AdamW for the rest (the paper: AdamW; README)
batch_size = 16
max_iters = 2000
learning_rate = 2.5e-3         # with Muon; AdamW (the paper) ran best at 5e-3 here (README)
min_lr = 2.5e-4
warmup_iters = 100
eval_interval = 500
