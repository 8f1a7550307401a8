"""Shared pieces of the ``gan`` / ``cgan`` / ``pix2pix`` commands (argument groups, evaluation classifier, outputs)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..engine import TrainConfig
from .common import RUN_FLAGS, positive_int
from .flags import add_config_flags, config_values

#: the engine's and the GAN family's fields as flags, shared by gan, cgan and pix2pix
TRAIN_FIELDS = ("batch_size", "lr_g", "lr_d", "betas", "d_steps", "ema_decay", "amp", "sample_every") + RUN_FLAGS


def add_train_arguments(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float) -> None:
    """The training group; ``epochs``, ``batch_size`` and ``lr`` (of G and D) are the command's defaults."""
    g = p.add_argument_group("training (the min-max engine)")
    g.add_argument("--epochs", type=positive_int, default=epochs, help=f"epochs in total (default {epochs}); re-running resumes")
    add_config_flags(g, TrainConfig, TRAIN_FIELDS, defaults={"batch_size": batch_size, "lr_g": lr, "lr_d": lr})
    g.add_argument("--out", required=True, help="output directory: samples, loss curves, metrics.json, model/")


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields from the shared arguments."""
    return config_values(args, TrainConfig, TRAIN_FIELDS)


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
