"""Fine-tuning's side concerns as engine callbacks: time per epoch, the overfitting guard, validation, best epoch.

In the order ``finetune`` uses them after every epoch:

- :class:`TrainTime`: ``train_seconds`` (the epoch's training, validation excluded);
- :class:`OverfitGuard`: PGD robust accuracy on a held-out batch; when it falls by more than
  ``overfit_drop`` below the best accepted epoch's, the weights and optimizer state go back to that epoch
  (the peak, not the last epoch: on MNIST at eps 0.3 fgsm-rs collapses over ~10 epochs, a few points each,
  which a comparison with the last epoch never catches);
- :class:`Validation`: clean accuracy, PGD robust accuracy and robust accuracy under each source on the
  validation loader (``attacks.measure``), and ``val_select``, their mean robust accuracy;
- :class:`BestEpoch`: keeps the epoch with the best ``(val_select, val_clean_acc)`` and saves it to ``best/``.

Each keeps what it needs in its ``state_dict``, so a resumed run selects and guards as an uninterrupted one.
"""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from advgan.engine import Callback, MinMaxTrainer
from attacks import PGD, Classifier, measure

from . import validation

if TYPE_CHECKING:
    from .finetune import FinetuneConfig


def source_name(src: Any, i: int) -> str:
    return f"{getattr(src, 'name', type(src).__name__)}{i}"


class TrainTime(Callback):
    """``train_seconds``: from the start of the epoch's training to its end (validation excluded)."""

    name = "train-time"

    def __init__(self) -> None:
        self._t0: float | None = None

    def on_epoch_start(self, trainer: MinMaxTrainer) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        seconds = time.perf_counter() - self._t0 if self._t0 is not None else float("nan")
        self._t0 = None
        return {"train_seconds": seconds}


class OverfitGuard(Callback):
    """The catastrophic-overfitting guard of fast adversarial training (see the module docstring)."""

    name = "overfit-guard"

    def __init__(self, clf: Classifier, batch: tuple[torch.Tensor, torch.Tensor], config: FinetuneConfig) -> None:
        self.clf, self.batch, self.cfg = clf, batch, config
        self.ref: float | None = None           # the best guard accuracy of an accepted epoch (the snapshot's)
        self.ref_epoch: int | None = None       # that epoch (1-based; None: unknown, e.g. a 0.1 checkpoint)
        self.snapshot: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        self._restored = False

    def on_fit_start(self, trainer: MinMaxTrainer) -> None:
        if not self._restored and trainer.state.epoch:  # a 0.1 checkpoint: the reference is in the history
            self.ref = next((e["guard_robust_acc"] for e in reversed(trainer.history.epochs)
                             if not e.get("rolled_back") and "guard_robust_acc" in e), None)
        if self.snapshot is None:
            self._take(trainer)

    def _take(self, trainer: MinMaxTrainer) -> None:
        opt = trainer.state.optimizers["C"]
        self.snapshot = ({k: v.detach().clone() for k, v in self.clf.state_dict().items()}, copy.deepcopy(opt.state_dict()))

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        cfg = self.cfg
        x, y = self.batch
        acc = validation.guard_accuracy(self.clf, x, y, eps=cfg.eps, norm=cfg.norm, steps=cfg.guard_pgd_steps, seed=cfg.seed)
        if self.ref is not None and acc < self.ref - cfg.overfit_drop and self.snapshot is not None:
            weights, opt_state = self.snapshot
            self.clf.load_state_dict(weights)
            trainer.state.optimizers["C"].load_state_dict(copy.deepcopy(opt_state))
            back = f"epoch {self.ref_epoch}'s" if self.ref_epoch else "the best accepted epoch's"
            warnings.warn(
                f"catastrophic overfitting in epoch {trainer.state.epoch}: PGD robust accuracy on the held-out batch fell from "
                f"{self.ref:.1%} (its best so far) to {acc:.1%}; rolled back to {back} weights. Consider a lower lr, "
                "eps_ramp_epochs, or method='pgd-at'.", RuntimeWarning, stacklevel=2)
            return {"guard_robust_acc": acc, "rolled_back": True}
        if self.ref is None or acc >= self.ref:  # a new best: it becomes the reference and the snapshot
            self.ref, self.ref_epoch = acc, trainer.state.epoch
            self._take(trainer)
        return {"guard_robust_acc": acc, "rolled_back": False}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"ref": self.ref, "ref_epoch": self.ref_epoch}
        if self.snapshot is not None:
            state["weights"], state["optimizer"] = self.snapshot
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ref, self.ref_epoch = state.get("ref"), state.get("ref_epoch")
        if "weights" in state:
            opt = dict(state["optimizer"])
            opt["state"] = {int(k): v for k, v in opt.get("state", {}).items()}
            self.snapshot = (dict(state["weights"]), opt)
        self._restored = True


class Validation(Callback):
    """Clean, PGD-robust and per-source robust accuracy on the validation loader; ``val_select`` = mean robust."""

    name = "validation"

    def __init__(self, clf: Classifier, loader: Any, sources: Sequence[Any], config: FinetuneConfig) -> None:
        self.clf, self.loader, self.sources, self.cfg = clf, loader, list(sources), config

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        cfg, out = self.cfg, {}
        out["val_clean_acc"] = measure(self.clf, self.loader, max_batches=cfg.val_batches, device=trainer.device).clean_accuracy
        pgd = PGD(eps=cfg.eps, norm=cfg.norm, steps=cfg.val_pgd_steps, seed=cfg.seed)
        robust = [measure(self.clf, self.loader, pgd, max_batches=cfg.val_batches).robust_accuracy]
        out["val_robust_acc"] = robust[0]
        for i, src in enumerate(self.sources):
            robust.append(measure(self.clf, self.loader, src, max_batches=cfg.val_batches).robust_accuracy)
            out[f"val_robust_acc/{source_name(src, i)}"] = robust[-1]
        # the best epoch: highest mean robust accuracy over PGD and the training sources, then highest clean
        # accuracy (with generator sources alone PGD robust accuracy is often 0 every epoch: not a choice)
        out["val_select"] = sum(robust) / len(robust)
        if cfg.method == "augmix":  # a corruption defense: chosen by accuracy under the sources (corruptions), else clean
            out["val_select"] = sum(robust[1:]) / len(robust[1:]) if robust[1:] else out["val_clean_acc"]
        return out


class BestEpoch(Callback):
    """Keeps the weights of the best epoch by ``(val_select, val_clean_acc)`` (``Validation``'s metrics), in
    memory and, with ``out_dir``, as a Classifier in ``out_dir/best``."""

    name = "best-epoch"

    def __init__(self, clf: Classifier, out_dir: Path | None, config: FinetuneConfig) -> None:
        self.clf, self.out_dir, self.cfg = clf, out_dir, config
        self.best: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self._restored = False

    def on_fit_start(self, trainer: MinMaxTrainer) -> None:
        if not self._restored and trainer.history.epochs:  # a 0.1 checkpoint: the best so far is in the history
            self.best = max((e.get("val_select", e.get("val_robust_acc", -1.0)), e.get("val_clean_acc", -1.0))
                            for e in trainer.history.epochs)

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        m = trainer.metrics
        key = (m["val_select"], m["val_clean_acc"])
        if key <= (self.best if self.best is not None else (-1.0, -1.0)):
            return {}
        self.best = key
        self.best_state = {k: v.detach().clone() for k, v in self.clf.state_dict().items()}
        if self.out_dir is not None and trainer.dist.is_main:
            metrics = {**m, "best": True}
            self.clf.save(self.out_dir / "best", extra={"epoch": trainer.state.epoch, "metrics": metrics,
                                                        "finetune_config": self.cfg.to_dict()})
        return {"best": True}

    def state_dict(self) -> dict[str, Any]:
        return {"best": list(self.best) if self.best is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state.get("best")
        self.best = (float(best[0]), float(best[1])) if best is not None else None
        self._restored = True
