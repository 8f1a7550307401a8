"""Make a classifier harder to fool: fine-tune on AdvGAN + PGD examples, compare before and after."""
import sys

from advgan import AdvGAN, AdvGANConfig, data
from advgan.training import train_classifier
from attacks import PGD, Classifier, evaluate
from defenses import FinetuneConfig, finetune

SMOKE = "--smoke" in sys.argv
train, test = data.load("mnist5k")
if SMOKE:
    train, test = train.subset(600), test.subset(100)
clf, _ = train_classifier(Classifier.create("small_cnn", 10, in_chans=1), train, test, epochs=1 if SMOKE else 4)
attacker = AdvGAN(clf, AdvGANConfig(eps=0.3))
attacker.fit(train, epochs=1 if SMOKE else 3)

cfg = FinetuneConfig(method="augment", eps=0.3, fraction=0.5, epochs=1 if SMOKE else 3, pgd_steps=5 if SMOKE else 10)
robust, history = finetune(clf, data.loader(train, 64, shuffle=True), cfg,
                           sources=[attacker.as_attack(), PGD(eps=0.3, steps=cfg.pgd_steps)], val_loader=data.loader(test, 250))

pgd = PGD(eps=0.3, steps=10 if SMOKE else 40)
for name, model in (("before", clf), ("after", robust)):
    rep = evaluate(model, data.loader(test, 250), {"pgd": pgd, "advgan": attacker.as_attack()}, progress=False)
    print(f"{name:6s} clean {rep.clean_accuracy:.3f} | robust PGD {rep['pgd'].robust_accuracy:.3f} | "
          f"robust AdvGAN {rep['advgan'].robust_accuracy:.3f}")
