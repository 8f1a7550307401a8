"""A label-conditional GAN on MNIST-5k: ask for a digit, get that digit."""
import sys

import torch

from advgan import ConditionalGAN, ConditionalGANConfig, data

SMOKE = "--smoke" in sys.argv
train, _ = data.load("mnist5k")
if SMOKE:
    train = train.subset(500)
cgan = ConditionalGAN.from_dataset(train, ConditionalGANConfig(batch_size=64))
cgan.fit(train, epochs=1 if SMOKE else 10, out_dir="runs/example_cgan")   # writes samples/*.png per epoch
digits = cgan.sample(20, labels=torch.arange(10).repeat(2), seed=0)        # (20, 1, 28, 28) in [0, 1]
print(digits.shape, float(digits.min()), float(digits.max()))
cgan.save("runs/example_cgan/model")
