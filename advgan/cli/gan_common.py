"""Shared pieces of the ``gan`` / ``cgan`` / ``pix2pix`` commands (argument groups, evaluation classifier, outputs)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_device, add_seed, nonneg_int, positive_float, positive_int


def add_train_arguments(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float) -> None:
    g = p.add_argument_group("training (the min-max engine)")
    g.add_argument("--epochs", type=positive_int, default=epochs, help=f"epochs in total (default {epochs}); re-running resumes")
    g.add_argument("--batch-size", type=positive_int, default=batch_size)
    g.add_argument("--lr-g", type=positive_float, default=lr, help="generator learning rate")
    g.add_argument("--lr-d", type=positive_float, default=lr, help="discriminator learning rate")
    g.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (WGAN-GP: 0.0)")
    g.add_argument("--beta2", type=float, default=0.999, help="Adam beta2 (WGAN-GP: 0.9)")
    g.add_argument("--d-steps", type=positive_int, default=1, help="discriminator steps per generator step (WGAN: 5)")
    g.add_argument("--ema", type=float, default=None, help="EMA decay of the generator weights used for sampling (e.g. 0.999)")
    g.add_argument("--amp", action="store_true", help="mixed precision")
    g.add_argument("--sample-every", type=nonneg_int, default=0, help="generator steps between sample PNGs (0: each epoch)")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--out", required=True, help="output directory: samples, loss curves, metrics.json, model/")
    add_device(p)
    add_seed(p)


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields from the shared arguments."""
    return {"batch_size": args.batch_size, "lr_g": args.lr_g, "lr_d": args.lr_d, "betas": (args.beta1, args.beta2),
            "d_steps": args.d_steps, "ema_decay": args.ema, "amp": args.amp, "sample_every": args.sample_every,
            "progress": not args.no_progress, "seed": args.seed, "device": args.device}


def add_classifier_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", default=None,
                   help="directory of a saved Classifier for the Fréchet distance / class accuracy "
                        "(default: train a small_cnn on the training split into OUT/eval_classifier)")


def eval_classifier(args: argparse.Namespace, train, test, epochs: int = 3):
    """The feature extractor for metrics: ``--classifier`` if given, else a small_cnn trained here (resumable)."""
    from attacks import Classifier

    if args.classifier:
        return Classifier.load(args.classifier, device="cpu")
    from advgan.training import ClassifierConfig, train_classifier

    chans = int(train[0][0].shape[0])
    clf = Classifier.create("small_cnn", int(getattr(train, "num_classes", 10)), in_chans=chans)
    cfg = ClassifierConfig(seed=args.seed, device=args.device, progress=not args.no_progress, batch_size=128)
    clf, _ = train_classifier(clf, train, test, cfg, epochs=epochs, out_dir=Path(args.out) / "eval_classifier")
    return clf.to("cpu")


def write_outputs(out: str | Path, metrics: dict[str, Any], history) -> None:
    from attacks.checkpoint import save_json

    out = Path(out)
    save_json(out / "metrics.json", metrics)
    if len(history):
        history.plot(out / "losses.png")


def print_metrics(title: str, metrics: dict[str, Any], out: str | Path) -> None:
    print(title)
    for k, v in metrics.items():
        if isinstance(v, (int, float, str)):
            print(f"  {k:<28} {v:.4g}" if isinstance(v, float) else f"  {k:<28} {v}")
    print(f"  -> {out}/metrics.json, samples.png, losses.png, model/")
