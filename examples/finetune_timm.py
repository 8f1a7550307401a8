"""Robust fine-tuning of a timm model, end to end and offline, with a before/after table.

1. train a timm ResNet-18 (1 input channel, random init: no download) on MNIST-5k for one epoch;
2. train an AdvGAN attacker against it (optional, ``--advgan``) to use as an augmentation source;
3. fine-tune a copy for robustness (PGD adversarial training by default, any method of ``defenses``);
4. print clean accuracy and robust accuracy under PGD-40 / FGSM (/ AdvGAN) before and after.

Small defaults so it runs in a few minutes on a CPU; scale up with the flags:

    python examples/finetune_timm.py                                   # resnet18, pgd-at, eps 0.1
    python examples/finetune_timm.py --method augment --advgan         # AdvGAN + PGD augmentation
    python examples/finetune_timm.py --model resnet18 --eps 0.3 --epochs 5 --train-size 4000 --pgd-steps 10
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import Subset

from advgan import data
from advgan.training import ClassifierConfig, train_classifier
from attacks import PGD, Classifier
from defenses import FinetuneConfig, before_after, finetune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18", help="any timm model name (random init, in_chans=1)")
    ap.add_argument("--method", default="pgd-at", choices=["augment", "pgd-at", "fgsm-rs", "trades"])
    ap.add_argument("--eps", type=float, default=0.1, help="L-inf budget in pixel units")
    ap.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    ap.add_argument("--pgd-steps", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=1000, help="training images used (of 4,000)")
    ap.add_argument("--test-size", type=int, default=500)
    ap.add_argument("--advgan", action="store_true", help="also train an AdvGAN attacker (source for augment, column in the table)")
    ap.add_argument("--out", default=None, help="optional output directory (checkpoints, best model, report)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite's smoke run)")
    args = ap.parse_args()
    if args.smoke:
        args.train_size, args.test_size, args.pgd_steps = 300, 100, 2
    torch.manual_seed(0)

    # --- data: MNIST-5k ships with the library (no download); the test split is sorted by label, so shuffle once
    train, test = data.load("mnist5k")
    g = torch.Generator().manual_seed(0)
    train = Subset(train, torch.randperm(len(train), generator=g)[: args.train_size].tolist())
    test = Subset(test, torch.randperm(len(test), generator=g)[: args.test_size].tolist())
    train_loader = data.loader(train, 64, shuffle=True, seed=0)
    test_loader = data.loader(test, 250)

    # --- 1. a timm classifier; the Classifier wrapper holds normalization, so everything is pixels in [0, 1]
    clf = Classifier.from_timm(args.model, num_classes=10, in_chans=1, pretrained=False)
    t = time.time()
    clf, _ = train_classifier(clf, train_loader, test_loader, ClassifierConfig(lr=2e-3, progress=True), epochs=1)
    print(f"trained {args.model} in {time.time() - t:.0f}s")

    # --- 2. sources of adversarial examples
    sources = [PGD(eps=args.eps, steps=args.pgd_steps)]
    attacker = None
    if args.advgan:
        from advgan import AdvGAN, AdvGANConfig

        atk = AdvGAN(clf, AdvGANConfig(eps=args.eps))
        atk.fit(train_loader, epochs=1)
        attacker = atk.as_attack()
        sources.insert(0, attacker)

    # --- 3. robust fine-tuning of a copy (clf itself is left as it is)
    cfg = FinetuneConfig(method=args.method, eps=args.eps, epochs=args.epochs, pgd_steps=args.pgd_steps, lr=1e-3,
                         batch_size=64, val_pgd_steps=5)
    t = time.time()
    robust, history = finetune(clf, train_loader, cfg, sources=sources if args.method == "augment" else None,
                               val_loader=test_loader, out_dir=args.out)
    print(f"fine-tuned ({args.method}) in {time.time() - t:.0f}s; per epoch: "
          + ", ".join(f"clean {e['val_clean_acc']:.3f} / robust {e['val_robust_acc']:.3f}" for e in history.epochs))

    # --- 4. before / after
    report = before_after({"before": clf, f"after ({args.method})": robust}, test_loader, eps=args.eps,
                          original_attacker=attacker, pgd_steps=40, histories={f"after ({args.method})": history},
                          out_dir=args.out)
    print()
    print(report.to_markdown())


if __name__ == "__main__":
    main()
