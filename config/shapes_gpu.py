# One GPU: the small model (75M parameters in its blocks, 174M with the 64000-code embedding and
# head) on 64x64 shapes clips of 17 frames, compiled, bf16, FlexAttention, in one command:
#   python train.py config/shapes_gpu.py
# It trains the 4x8x8 tokenizer for 64x64 first (tokenizer_args; --norm=group: without it this
# wider tokenizer diverged within 300 steps in a CPU check), encodes the shards, then the model.
out_dir = "out_gpu"
data_dir = "data/shards/shapes64"
tokenizer_path = "out_gpu/tokenizer.pt"
tokenizer_args = ('--channels="(64,128,128)" --compression="(4,8,8)" --levels="(8,8,8,5,5,5)" '
                  '--norm=group')
height, width, frames, fps = 64, 64, 17, 8
model_size = "small"
optimizer = "muon"             # as the tiny preset (not yet measured on a GPU)
batch_size = 64
max_iters = 5000
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 200
eval_interval = 500
compile = True
text_len = 32                  # compiled graphs pad every prompt to this; shapes prompts are at most
                               # 16 tokens of learned words (88 is the eager default's room for bytes)
attn_impl = "flex"
