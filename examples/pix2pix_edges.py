"""pix2pix on a paired task built from shipped data: Sobel edges -> MNIST digit (U-Net G, PatchGAN D, cGAN + 100·L1)."""
import sys

import torch

from advgan import Pix2Pix, Pix2PixConfig, data, pairs

SMOKE = "--smoke" in sys.argv
train, test = data.load("mnist5k")
if SMOKE:
    train, test = train.subset(300), test.subset(50)
train_pairs, test_pairs = pairs.build("edges", train), pairs.build("edges", test)   # (edge map, digit) pairs
model = Pix2Pix.from_pairs(train_pairs, Pix2PixConfig(mode="l1+cgan", lambda_l1=100.0, batch_size=16))
model.fit(train_pairs, epochs=1 if SMOKE else 4, out_dir="runs/example_pix2pix")   # samples/*.png, resumable

x, y = (torch.stack(t) for t in zip(*[test_pairs[i] for i in range(8)]))
fake = model.translate(x)
print(f"test L1 on 8 pairs: {(fake - y).abs().mean():.4f}")
