"""Writes tests/data/v0_1/: training checkpoints made by advgan 0.1 (run with PYTHONPATH pointing at a 0.1 checkout).

    git archive 1c3890a advgan attacks defenses | tar -x -C /tmp/v01
    PYTHONPATH=/tmp/v01 python tests/make_v01_checkpoints.py tests/data/v0_1

test_compat.py resumes each of them with the current code for one more epoch and checks the result is
bit-identical to an uninterrupted run of the current code.
"""
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
out = Path(sys.argv[1])

from advgan import data  # noqa: E402
from attacks import Classifier  # noqa: E402

train, _ = data.load("mnist5k")
ds = data.ImageDataset(train.images[:96], train.labels[:96], 10, "mnist5k-96")
common = dict(batch_size=32, seed=3, device="cpu", progress=False)


def clf():
    torch.manual_seed(0)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


from advgan.training import train_classifier  # noqa: E402

train_classifier(clf(), ds, epochs=1, out_dir=out / "classifier", **common)

from advgan.attacker import AdvGAN, AdvGANConfig  # noqa: E402

AdvGAN(clf(), AdvGANConfig(eps=0.3, width=4, **common)).fit(ds, epochs=1, out_dir=out / "advgan")

from defenses import FinetuneConfig, finetune  # noqa: E402

finetune(clf(), ds, FinetuneConfig(method="clean", overfit_guard=True, epochs=1, **common), val_loader=ds, out_dir=out / "finetune")

from advgan.gan import GAN, GANConfig  # noqa: E402

pts = data.load("ring8", n_train=256)[0]
GAN(GANConfig(z_dim=2, g_width=16, d_width=16, ema_decay=0.9, **common), (2,)).fit(pts, 1, out_dir=out / "gan")
print("written", sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()))
