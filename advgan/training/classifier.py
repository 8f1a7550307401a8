"""Training a target classifier: a one-player game on the same engine (resume, AMP, DDP, NaN guard).

``clf, history = train_classifier(Classifier.create("resnet18", 10, in_chans=1), train, test, epochs=5)``
returns the trained, frozen classifier and the history (per-step loss, per-epoch test accuracy).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from attacks import Classifier
from attacks.checks import check_images, check_labels

from .. import data as data_mod
from ..engine import MinMaxGame, MinMaxTrainer, Player, TrainConfig
from ..engine.history import History


@dataclass(frozen=True)
class ClassifierConfig(TrainConfig):
    """Supervised training settings (AdamW with weight decay, cosine schedule by default)."""

    lr: float = 2e-3
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "cosine"
    batch_size: int = 128
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive learning rate, got {self.lr!r}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")


class _Supervised(MinMaxGame):
    kind = "classifier-training"

    def __init__(self, clf: Classifier, cfg: ClassifierConfig, val_loader: DataLoader | None) -> None:
        self.clf, self.cfg, self.val_loader = clf, cfg, val_loader
        self.nets = {"C": clf}
        self._checked = False

    def players(self) -> list[Player]:
        c = self.cfg
        return [Player("C", c.lr, 1, c.betas, c.weight_decay, optimizer="adamw")]

    def loss(self, player: str, batch: tuple[torch.Tensor, ...], step: int):
        x, y = batch[0], batch[1]
        if not self._checked:
            self.clf.check_input(x)
            check_labels(y, x.shape[0], self.clf.num_classes)
        logits = self.nets["C"](x)
        if not self._checked:
            self.clf.check_output(logits.detach())
            self._checked = True
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        return loss, {"acc": (logits.argmax(1) == y).float().mean()}

    def config_dict(self) -> dict[str, Any]:
        return {"classifier": self.clf.config()}

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        return {"test_accuracy": accuracy(self.clf, self.val_loader, device=trainer.device)}


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: DataLoader, *, device: torch.device | str | None = None) -> float:
    """Top-1 accuracy over a loader of (x, y); restores the model's train/eval mode."""
    from attacks.base import frozen_eval

    from ..engine import distributed as D

    device = torch.device(device) if device is not None else next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = torch.zeros((), dtype=torch.long, device=device)
    with frozen_eval(model):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            correct += (model(x).argmax(1) == y).sum()
            total += y.numel()
    if total.item() == 0:
        raise ValueError("accuracy(): the loader is empty.")
    if D.current().active and isinstance(getattr(loader, "sampler", None), torch.utils.data.DistributedSampler):
        D.all_reduce_sum(correct)
        D.all_reduce_sum(total)
    return correct.item() / total.item()


def _as_loader(ds: Dataset | DataLoader | None, batch_size: int, shuffle: bool, seed: int) -> DataLoader | None:
    if ds is None or isinstance(ds, DataLoader):
        return ds
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a torch Dataset or DataLoader, got {type(ds).__name__}.")
    return data_mod.loader(ds, batch_size, shuffle=shuffle, seed=seed)


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
        from dataclasses import replace

        cfg = replace(config, **overrides)
    train_loader = _as_loader(train, cfg.batch_size, True, cfg.seed)
    test_loader = _as_loader(test, 512, False, cfg.seed)
    if isinstance(train, Dataset) and hasattr(train, "images"):
        check_images(train.images[:1], name="training images", channels=clf.data_chans)
    torch.manual_seed(cfg.seed)
    game = _Supervised(clf, cfg, test_loader)
    ckpt_dir = Path(out_dir) / "checkpoint" if out_dir is not None else None
    trainer = MinMaxTrainer(game, cfg, ckpt_dir)
    with clf.unfrozen():
        history = trainer.fit(train_loader, epochs, resume=resume)
    clf.freeze()
    if out_dir is not None and trainer.dist.is_main:
        clf.save(out_dir, extra={"history": history.epochs, "train_config": cfg.to_dict()})
    return clf, history
