# The tiny preset with half the temporal compression: a 2x4x4 tokenizer, so 9 frames become 5
# latent frames of 8x8 codes (320 visual tokens, against 192), with 1000 codes (8,5,5,5) and
# byte-level prompts, as measured. Its video reconstructions reach 30 dB (the default 4x4x4
# tokenizer of 125 codes: 26 dB), at 1.6x to 1.7x the language model's time per step.
#   python train.py config/shapes_tiny_t2.py
# Everything else is the default job's (config/shapes_tiny.py); README, "The video tokenizer".
out_dir = "out_t2"
data_dir = "data/shards/shapes_t2"
tokenizer_path = "out_t2/tokenizer.pt"
tokenizer_args = '--compression="(2,4,4)" --levels="(8,5,5,5)"'
text_vocab = "bytes"           # and the byte-level prompts with the next-byte loss it was measured with
text_loss = 1.0
