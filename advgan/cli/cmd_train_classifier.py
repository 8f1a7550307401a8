"""advgan train-classifier: train a target classifier (built-in or any timm model) and save it."""
from __future__ import annotations

import argparse

from .common import add_device, add_seed, positive_float, positive_int

NAME = "train-classifier"
HELP = "train a target classifier on a dataset and save it (model.safetensors + config.json)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet18", help="built-in (small_cnn, tiny_cnn, mlp) or any timm model name")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (mnist5k, digits, mnist, fashion_mnist, cifar10, imagefolder)")
    p.add_argument("--data-root", default=None, help="root folder for torchvision datasets / imagefolder")
    p.add_argument("--epochs", type=positive_int, default=4)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--pretrained", action="store_true", help="start from timm's pretrained weights (needs internet)")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 where supported)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output directory (re-running resumes)")
    add_device(p)
    add_seed(p)


def run(args: argparse.Namespace) -> int:
    from advgan import data
    from advgan.training import ClassifierConfig, train_classifier
    from attacks import Classifier

    kwargs = {"root": args.data_root} if args.data_root else {}
    train, test = data.load(args.dataset, **kwargs)
    x0, _ = train[0]
    chans = int(x0.shape[0])
    num_classes = getattr(train, "num_classes", None) or 10
    clf = Classifier.create(args.model, num_classes, in_chans=chans, pretrained=args.pretrained)
    cfg = ClassifierConfig(lr=args.lr, batch_size=args.batch_size, seed=args.seed, device=args.device,
                           amp=args.amp, progress=not args.no_progress)
    clf, hist = train_classifier(clf, train, test, cfg, epochs=args.epochs, out_dir=args.out)
    from advgan.engine import distributed as D

    if not D.current().is_main:
        return 0
    acc = hist.epochs[-1].get("test_accuracy")
    print(f"trained {args.model} on {args.dataset}: test accuracy {acc:.4f} after {args.epochs} epochs -> {args.out}")
    hist.plot(f"{args.out}/loss.png", title=f"{args.model} on {args.dataset}")
    return 0
