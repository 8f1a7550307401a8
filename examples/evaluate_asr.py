"""Measure attack success rate, robust accuracy and images/s with an eps sweep; write a report folder."""
import sys

from advgan import data
from advgan.training import train_classifier
from attacks import FGSM, PGD, Classifier, RandomNoise, evaluate

SMOKE = "--smoke" in sys.argv
train, test = data.load("mnist5k")
if SMOKE:
    train, test = train.subset(600), test.subset(100)
clf, _ = train_classifier(Classifier.create("small_cnn", 10, in_chans=1), train, test, epochs=1 if SMOKE else 4)

attacks = {"noise": RandomNoise(eps=0.3), "fgsm": FGSM(eps=0.3), "pgd": PGD(eps=0.3, steps=5 if SMOKE else 40)}
report = evaluate(clf, data.loader(test, 250), attacks, epsilons=[0.05, 0.1, 0.2, 0.3])
r = report["pgd"]
print(f"clean {report.clean_accuracy:.3f} | PGD ASR {r.attack_success_rate:.3f} robust {r.robust_accuracy:.3f} "
      f"mean Linf {r.mean_linf:.3f} {r.images_per_second:.0f} img/s")
print(report.flags or "no sanity flags")
report.save("runs/example_eval")                  # report.json, report.md, eps_curve.png, grid.png
