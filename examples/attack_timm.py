"""Attack a timm classifier from Python: train it briefly on MNIST-5k, then FGSM / PGD / foolbox at eps 0.3."""
import sys

from advgan import data
from advgan.training import train_classifier
from attacks import FGSM, PGD, Classifier, FoolboxAttack, evaluate

SMOKE = "--smoke" in sys.argv                     # tiny sizes for the test suite
train, test = data.load("mnist5k")                # 4,000 / 1,000 real MNIST digits, pixels in [0, 1]
if SMOKE:
    train, test = train.subset(600), test.subset(100)

clf = Classifier.from_timm("resnet18", num_classes=10, in_chans=1)   # normalization lives inside
clf, _ = train_classifier(clf, train, test, epochs=1 if SMOKE else 4, batch_size=32 if SMOKE else 128)

steps = 5 if SMOKE else 40
attacks = {"fgsm": FGSM(eps=0.3), f"pgd-{steps}": PGD(eps=0.3, steps=steps, early_stop=True),
           f"foolbox-pgd-{steps}": FoolboxAttack("LinfPGD", eps=0.3, steps=steps)}
report = evaluate(clf, data.loader(test, 250), attacks)
print(report.to_markdown())
