"""An unconditional GAN on the ring of 8 Gaussians (PacGAN's mode-collapse benchmark): modes captured."""
import sys

from advgan import GAN, GANConfig, data, metrics

SMOKE = "--smoke" in sys.argv
train, test = data.load("ring8", n_train=5_000 if SMOKE else 100_000)
gan = GAN.from_dataset(train, GANConfig(loss="lsgan", batch_size=256, lr_g=1e-3, lr_d=1e-3))
gan.fit(train, epochs=1 if SMOKE else 5, out_dir="runs/example_ring")        # samples + checkpoints there
cov = metrics.mode_coverage(gan.sample(2500, seed=0), train.modes, train.std)
print(cov)
