"""Training a target classifier: a one-player game on the same engine (resume, AMP, DDP, NaN guard).

``clf, history = train_classifier(Classifier.create("resnet18", 10, in_chans=1), train, test, epochs=5)``
returns the trained, frozen classifier and the history (per-step loss, per-epoch test accuracy).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from attacks import Classifier, measure
from attacks.checks import check_images, check_labels

from ..config import LEARNING_RATE, Betas, Real
from ..data.loaders import as_loader
from ..engine import Accuracy, EngineConfig, MinMaxGame, Player, Run
from ..engine.datacheck import BatchSpec
from ..engine.game import Batch, LossParts, Nets
from ..engine.history import History


@dataclass(frozen=True)
class ClassifierConfig(EngineConfig):
    """Supervised training settings (AdamW with weight decay, cosine schedule by default)."""

    lr: Annotated[float, LEARNING_RATE] = 2e-3                     #: learning rate (AdamW)
    weight_decay: Annotated[float, Real(0, closed=True)] = 5e-4    #: AdamW weight decay
    betas: Annotated[tuple[float, float], Betas()] = (0.9, 0.999)  #: AdamW betas
    lr_schedule: str = "cosine"
    batch_size: int = 128
    label_smoothing: Annotated[float, Real(0, 1, closed=(True, False))] = 0.0  #: cross-entropy label smoothing


class ClassifierGame(MinMaxGame):
    """A one-player game of a Classifier ``C`` whose first batch is checked (pixels, channels, labels)."""

    clf: Classifier
    _checked: bool = False

    def batch_spec(self) -> BatchSpec:
        """Every batch: pixels in [0, 1] with the classifier's channels, labels in [0, num_classes)."""
        return BatchSpec(num_classes=self.clf.num_classes, channels=self.clf.data_chans)

    def check_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The first batch of a run: pixels in [0, 1] with the classifier's channels, labels in range."""
        if not self._checked:
            self.clf.check_input(x)
            check_labels(y, x.shape[0], self.clf.num_classes)


class SupervisedGame(ClassifierGame):
    """One player, the classifier ``C``, trained with cross-entropy (its first batch and logits checked)."""

    kind = "classifier-training"

    def __init__(self, clf: Classifier, config: ClassifierConfig) -> None:
        self.clf, self.cfg = clf, config
        self.nets = {"C": clf}
        self._checked = False

    def players(self) -> list[Player]:
        c = self.cfg
        return [Player("C", c.lr, 1, c.betas, c.weight_decay, optimizer="adamw")]

    def loss(self, player: str, nets: Nets, batch: Batch, step: int) -> tuple[torch.Tensor, LossParts]:
        x, y = batch[0], batch[1]
        self.check_batch(x, y)
        logits = nets["C"](x)
        if not self._checked:
            self.clf.check_output(logits.detach())
            self._checked = True
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        return loss, {"acc": (logits.argmax(1) == y).float().mean()}

    def config_dict(self) -> dict[str, Any]:
        return {"classifier": self.clf.config()}


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: DataLoader, *, device: torch.device | str | None = None) -> float:
    """Top-1 accuracy over a loader of (x, y) (``attacks.measure``); restores the model's train/eval mode."""
    return measure(model, loader, device=device).clean_accuracy


def train_classifier(
    clf: Classifier,
    train: Dataset | DataLoader,
    test: Dataset | DataLoader | None = None,
    config: ClassifierConfig | None = None,
    *,
    epochs: int = 5,
    out_dir: str | Path | None = None,
    resume: bool = True,
    **overrides: Any,
) -> tuple[Classifier, History]:
    """Train ``clf`` with cross-entropy; returns it frozen (eval, no grads) and the history.

    ``overrides`` set config fields directly (``lr=1e-3, seed=1``). With ``out_dir`` the run writes
    checkpoints there and re-running resumes; the final classifier is saved to ``out_dir`` (``Classifier.load(out_dir)``).
    """
    if not isinstance(clf, Classifier):
        raise TypeError(f"clf must be an attacks.Classifier, got {type(clf).__name__}; wrap your module first.")
    cfg = config or ClassifierConfig(**overrides)
    if config is not None and overrides:
        cfg = replace(config, **overrides)
    train_loader = as_loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed, what="train")
    test_loader = as_loader(test, 512, shuffle=False, seed=cfg.seed, what="test") if test is not None else None
    if isinstance(train, Dataset) and hasattr(train, "images"):
        check_images(train.images[:1], name="training images", channels=clf.data_chans)
    torch.manual_seed(cfg.seed)
    run = Run(SupervisedGame(clf, cfg), cfg)
    callbacks = [Accuracy(clf, test_loader, key="test_accuracy")] if test_loader is not None else []
    with clf.unfrozen():
        history = run.train(train_loader, epochs, Path(out_dir) / "checkpoint" if out_dir is not None else None,
                            resume=resume, callbacks=callbacks)
    clf.freeze()
    if out_dir is not None and run.trainer is not None and run.trainer.dist.is_main:
        clf.save(out_dir, extra={"history": history.epochs, "train_config": cfg.to_dict()})
    return clf, history
