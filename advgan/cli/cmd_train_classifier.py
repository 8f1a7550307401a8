"""advgan train-classifier: train a target classifier (built-in or any timm model) and save it."""
from __future__ import annotations

import argparse

from ..training import ClassifierConfig
from .common import RUN_FLAGS, positive_int
from .flags import add_config_flags, config_values

NAME = "train-classifier"
HELP = "train a target classifier on a dataset and save it (model.safetensors + config.json)"
FIELDS = ("batch_size", "lr", "amp") + RUN_FLAGS   #: ClassifierConfig fields as flags (their defaults)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet18", help="built-in (small_cnn, tiny_cnn, mlp) or any timm model name")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (mnist5k, digits, mnist, fashion_mnist, cifar10, imagefolder)")
    p.add_argument("--data-root", default=None, help="root folder for torchvision datasets / imagefolder")
    p.add_argument("--epochs", type=positive_int, default=4, help="epochs in total (train_classifier(epochs=)); re-running resumes")
    p.add_argument("--pretrained", action="store_true", help="start from timm's pretrained weights (needs internet)")
    p.add_argument("--out", required=True, help="output directory (re-running resumes)")
    add_config_flags(p, ClassifierConfig, FIELDS)


def run(args: argparse.Namespace) -> int:
    from advgan import data
    from advgan.engine import distributed as D
    from advgan.training import train_classifier
    from attacks import Classifier

    cfg = ClassifierConfig(**config_values(args, ClassifierConfig, FIELDS))
    kwargs = {"root": args.data_root} if args.data_root else {}
    train, test = data.load(args.dataset, **kwargs)
    x0, _ = train[0]
    chans = int(x0.shape[0])
    num_classes = getattr(train, "num_classes", None) or 10
    if args.pretrained:
        from .guard import offline_pretrained

        with offline_pretrained(args.model):  # offline: the local cache or one clear line, not a minute of retries
            clf = Classifier.create(args.model, num_classes, in_chans=chans, pretrained=True)
    else:
        clf = Classifier.create(args.model, num_classes, in_chans=chans)
    clf, hist = train_classifier(clf, train, test, cfg, epochs=args.epochs, out_dir=args.out)
    if not D.current().is_main:
        return 0
    acc = hist.epochs[-1].get("test_accuracy")
    print(f"trained {args.model} on {args.dataset}: test accuracy {acc:.4f} after {args.epochs} epochs -> {args.out}")
    hist.plot(f"{args.out}/loss.png", title=f"{args.model} on {args.dataset}")
    return 0
