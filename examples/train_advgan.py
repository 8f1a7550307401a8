"""Train an AdvGAN attacker against a frozen classifier, then attack new images with one forward pass."""
import sys

import torch

from advgan import AdvGAN, AdvGANConfig, data
from advgan.training import train_classifier
from attacks import Classifier

SMOKE = "--smoke" in sys.argv
train, test = data.load("mnist5k")
if SMOKE:
    train, test = train.subset(600), test.subset(100)

clf, _ = train_classifier(Classifier.create("small_cnn", 10, in_chans=1), train, test, epochs=1 if SMOKE else 4)

atk = AdvGAN(clf, AdvGANConfig(eps=0.3, norm="linf"))          # the classifier stays frozen
history = atk.fit(train, epochs=1 if SMOKE else 5, out_dir="runs/example_advgan")   # resumable
atk.save("runs/example_advgan/attacker")

x, y = test.images[:256], test.labels[:256]
x_adv = atk.as_attack()(clf, x, y)                # one generator forward per batch
with torch.no_grad():
    ok = clf(x).argmax(1) == y
    fooled = clf(x_adv).argmax(1) != y
print(f"clean accuracy {ok.float().mean():.3f}; AdvGAN success on correctly classified: "
      f"{(fooled & ok).sum().item() / max(1, ok.sum().item()):.3f}; max |delta| {(x_adv - x).abs().max():.3f}")
