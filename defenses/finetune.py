"""Robust fine-tuning of any ``attacks.Classifier`` (timm models included): a one-player game on the engine.

``robust, history = finetune(clf, train_loader, FinetuneConfig(method="pgd-at", eps=0.3), val_loader=test_loader)``

The classifier is fine-tuned on the shared :class:`advgan.engine.MinMaxTrainer`, so it gets checkpoints
with exact resume, AMP, gradient clipping, LR schedules, tqdm progress, the NaN guard and DDP for free.
``finetune`` works on a **deep copy**: the classifier passed in is never modified.

After every epoch: clean and robust accuracy on ``val_loader`` under a seeded PGD at the config's ε
(``val_pgd_steps``; plus each source when given), best-epoch selection by robust accuracy (the mean over
PGD and the sources, ties to the higher clean accuracy; saved as a
Classifier to ``out_dir/best`` and returned), and — for ``fgsm-rs`` by default — the catastrophic-
overfitting guard: PGD robust accuracy on a held-out batch; when it drops by more than
``overfit_drop`` below the last accepted epoch, the weights and optimizer state are rolled back to
that epoch and a warning is issued (training then continues; the best epoch is what is returned).
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from advgan import data as data_mod
from advgan.engine import MinMaxGame, MinMaxTrainer, Player, TrainConfig
from advgan.engine.history import History
from advgan.training import accuracy
from attacks import PGD, Classifier
from attacks.checks import check_choice, check_eps, check_fraction, check_labels, check_positive_int
from attacks.threat import ThreatModel

from . import methods, validation
from .augmentation import MODES, AdversarialAugmentation, check_sources
from .methods import METHODS

OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Robust fine-tuning settings (plus the engine's :class:`TrainConfig`: amp, grad_clip, seed, device...)."""

    method: str = "pgd-at"             #: augment | pgd-at | fgsm-rs | trades | clean
    epochs: int = 5
    eps: float = 0.3                   #: budget in pixel units ([0, 1] images); 8/255, not 8
    norm: str = "linf"                 #: linf | l2
    fraction: float = 0.5              #: augment: share of each batch replaced by adversarial examples
    mode: str = "weighted"             #: augment: weighted | round_robin choice of the source per item
    source_weights: tuple[float, ...] | None = None
    pgd_steps: int = 10                #: pgd-at / trades inner steps (Madry MNIST: 40)
    pgd_step_size: float | None = None #: default 2.5 * eps / pgd_steps
    eps_ramp_epochs: float = 0.0       #: ramp eps linearly from ~0 to eps over this many epochs (0: off)
    trades_beta: float = 6.0
    optimizer: str = "adamw"           #: adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9              #: sgd only
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "cosine"
    batch_size: int = 128
    overfit_guard: bool | None = None  #: None: on for fgsm-rs only
    overfit_drop: float = 0.2          #: rollback when guard robust accuracy falls by more than this
    guard_batch_size: int = 256
    guard_pgd_steps: int = 10
    val_pgd_steps: int = 10            #: PGD steps of the per-epoch robust validation
    val_batches: int | None = None     #: limit validation to this many batches (None: all)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid methods: {', '.join(METHODS)}.")
        check_positive_int(self.epochs, "epochs")
        check_choice(self.norm, "norm", ("linf", "l2"))
        object.__setattr__(self, "eps", check_eps(self.eps, self.norm))
        check_fraction(self.fraction, "fraction")
        if self.method == "augment" and self.fraction == 0:
            raise ValueError("fraction=0 replaces nothing: method 'augment' would be plain training. Use fraction in (0, 1].")
        check_choice(self.mode, "mode", MODES)
        if self.source_weights is not None:
            object.__setattr__(self, "source_weights", tuple(float(w) for w in self.source_weights))
        check_positive_int(self.pgd_steps, "pgd_steps")
        check_positive_int(self.guard_batch_size, "guard_batch_size")
        check_positive_int(self.guard_pgd_steps, "guard_pgd_steps")
        check_positive_int(self.val_pgd_steps, "val_pgd_steps")
        if self.val_batches is not None:
            check_positive_int(self.val_batches, "val_batches")
        for name in ("pgd_step_size",):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}.")
        for name in ("eps_ramp_epochs", "trades_beta", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}.")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive learning rate, got {self.lr!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}.")
        if not 0 < self.overfit_drop <= 1:
            raise ValueError(f"overfit_drop must be in (0, 1] (an absolute drop in robust accuracy), got {self.overfit_drop!r}.")
        if self.overfit_guard is not None and not isinstance(self.overfit_guard, bool):
            raise TypeError(f"overfit_guard must be True, False or None (auto: fgsm-rs only), got {self.overfit_guard!r}.")

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps)

    @property
    def guard_on(self) -> bool:
        return self.method == "fgsm-rs" if self.overfit_guard is None else self.overfit_guard


def _name(src: Any, i: int) -> str:
    return f"{getattr(src, 'name', type(src).__name__)}{i}"


class FinetuneGame(MinMaxGame):
    """One player, the classifier ``C``; the loss is the method's batch loss."""

    kind = "robust-finetune"

    def __init__(self, clf: Classifier, cfg: FinetuneConfig, *, aug: AdversarialAugmentation | None,
                 sources: Sequence[Any], val_loader: DataLoader | None, guard_batch: tuple[torch.Tensor, torch.Tensor] | None,
                 out_dir: Path | None) -> None:
        self.clf, self.cfg, self.aug, self.sources = clf, cfg, aug, list(sources)
        self.val_loader, self.guard_batch, self.out_dir = val_loader, guard_batch, out_dir
        self.nets = {"C": clf}
        self.trainer: MinMaxTrainer | None = None
        self.steps_per_epoch = 1
        self.best_state: dict[str, torch.Tensor] | None = None
        self._snapshot: tuple[dict, dict] | None = None
        self._t0: float | None = None
        self._checked = False

    def players(self) -> list[Player]:
        c = self.cfg
        return [Player("C", c.lr, 1, c.betas, c.weight_decay, optimizer=c.optimizer, momentum=c.momentum)]

    def config_dict(self) -> dict[str, Any]:
        return {"classifier": self.clf.config(), "augmentation": self.aug.describe() if self.aug else None}

    def current_eps(self) -> float:
        """ε of this step: ramped linearly over ``eps_ramp_epochs`` (never 0), else the config's ε."""
        cfg, st = self.cfg, self.trainer.state
        if not cfg.eps_ramp_epochs:
            return cfg.eps
        progress = (st.epoch * self.steps_per_epoch + st.batch_in_epoch) / (cfg.eps_ramp_epochs * self.steps_per_epoch)
        return cfg.eps * min(1.0, max(progress, 1e-3))

    def loss(self, player: str, batch: tuple[torch.Tensor, ...], step: int):
        x, y = batch[0], batch[1]
        if not self._checked:
            self.clf.check_input(x)
            check_labels(y, x.shape[0], self.clf.num_classes)
            self._checked = True
        if self.cfg.guard_on and self._snapshot is None:
            self._take_snapshot()
        if self._t0 is None:
            self._t0 = time.perf_counter()
        eps = self.current_eps()
        threat = ThreatModel(self.cfg.norm, eps)
        loss, parts = methods.batch_loss(self.cfg.method, self.nets["C"], self.clf, x, y, threat=threat,
                                         pgd_steps=self.cfg.pgd_steps, pgd_step_size=self.cfg.pgd_step_size,
                                         trades_beta=self.cfg.trades_beta, aug=self.aug, step=step)
        if self.cfg.eps_ramp_epochs:
            parts["eps"] = torch.tensor(eps)
        return loss, parts

    # ------------------------------------------------------------------ epoch end: guard, validation, best
    def _take_snapshot(self) -> None:
        opt = self.trainer.optimizers["C"]
        self._snapshot = ({k: v.detach().clone() for k, v in self.clf.state_dict().items()}, copy.deepcopy(opt.state_dict()))

    def _rollback(self) -> None:
        weights, opt_state = self._snapshot
        self.clf.load_state_dict(weights)
        self.trainer.optimizers["C"].load_state_dict(copy.deepcopy(opt_state))

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, float]:
        cfg, out = self.cfg, {}
        out["train_seconds"] = time.perf_counter() - self._t0 if self._t0 is not None else float("nan")
        self._t0 = None
        epoch = trainer.state.epoch
        if cfg.guard_on and self.guard_batch is not None:
            x, y = self.guard_batch
            acc = validation.guard_accuracy(self.clf, x, y, eps=cfg.eps, norm=cfg.norm, steps=cfg.guard_pgd_steps, seed=cfg.seed)
            ref = next((e["guard_robust_acc"] for e in reversed(trainer.history.epochs)
                        if not e.get("rolled_back") and "guard_robust_acc" in e), None)
            out["guard_robust_acc"] = acc
            out["rolled_back"] = False
            if ref is not None and acc < ref - cfg.overfit_drop and self._snapshot is not None:
                self._rollback()
                out["rolled_back"] = True
                warnings.warn(
                    f"catastrophic overfitting in epoch {epoch}: PGD robust accuracy on the held-out batch fell from "
                    f"{ref:.1%} to {acc:.1%}; rolled back to the previous epoch's weights. Consider a lower lr, "
                    "eps_ramp_epochs, or method='pgd-at'.", RuntimeWarning, stacklevel=2)
            elif cfg.guard_on:
                self._take_snapshot()
        if self.val_loader is not None:
            out["val_clean_acc"] = accuracy(self.clf, self.val_loader, device=trainer.device) if cfg.val_batches is None else \
                validation.attack_stats(self.clf, self.val_loader, _Identity(), max_batches=cfg.val_batches)["clean_acc"]
            pgd = PGD(eps=cfg.eps, norm=cfg.norm, steps=cfg.val_pgd_steps, seed=cfg.seed)
            out["val_robust_acc"] = validation.attack_stats(self.clf, self.val_loader, pgd, max_batches=cfg.val_batches)["robust_acc"]
            robust = [out["val_robust_acc"]]
            for i, src in enumerate(self.sources):
                robust.append(validation.attack_stats(self.clf, self.val_loader, src, max_batches=cfg.val_batches)["robust_acc"])
                out[f"val_robust_acc/{_name(src, i)}"] = robust[-1]
            # the best epoch: highest mean robust accuracy over PGD and the training sources, then highest clean
            # accuracy (with generator sources alone PGD robust accuracy is often 0 every epoch: not a choice)
            out["val_select"] = sum(robust) / len(robust)
            best = max(((e.get("val_select", e.get("val_robust_acc", -1.0)), e.get("val_clean_acc", -1.0))
                        for e in trainer.history.epochs), default=(-1.0, -1.0))
            if (out["val_select"], out["val_clean_acc"]) > best:
                out["best"] = True
                self.best_state = {k: v.detach().clone() for k, v in self.clf.state_dict().items()}
                if self.out_dir is not None and trainer.dist.is_main:
                    self.clf.save(self.out_dir / "best", extra={"epoch": epoch, "metrics": dict(out), "finetune_config": cfg.to_dict()})
        return out


class _Identity:
    """A no-op 'attack' (clean accuracy over a limited number of batches)."""

    def __call__(self, model, x, y, *, target=None):
        return x


def _as_loader(ds: Dataset | DataLoader | None, batch_size: int, shuffle: bool, seed: int, what: str) -> DataLoader | None:
    if ds is None or isinstance(ds, DataLoader):
        return ds
    if not isinstance(ds, Dataset):
        raise TypeError(f"{what} must be a torch Dataset or DataLoader of (image, label) pairs, got {type(ds).__name__}.")
    return data_mod.loader(ds, batch_size, shuffle=shuffle, seed=seed)


def held_out_batch(loader: DataLoader, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` items of the loader's dataset drawn with a private seeded generator (no global RNG consumed;
    random, because datasets are often sorted by label)."""
    from torch.utils.data import default_collate

    ds = loader.dataset
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
    items = default_collate([ds[int(i)] for i in idx])
    return items[0], items[1]


def finetune(classifier: Classifier, train_loader: DataLoader | Dataset, config: FinetuneConfig | None = None,
             sources: Sequence[Any] | None = None, val_loader: DataLoader | Dataset | None = None,
             out_dir: str | Path | None = None, resume: bool = True, **overrides: Any) -> tuple[Classifier, History]:
    """Fine-tune a copy of ``classifier`` for robustness; returns ``(robust_classifier, history)``.

    ``classifier`` itself is not modified. ``sources`` (attacks) feed ``method="augment"``; for the
    other methods they are extra attacks whose robust accuracy is validated each epoch. With
    ``val_loader`` the epoch with the best robust accuracy (mean over PGD and the sources, ties to the
    higher clean accuracy) is returned (and saved to ``out_dir/best``);
    otherwise the last epoch. With ``out_dir`` the engine checkpoints into ``out_dir/checkpoint`` (re-running
    resumes exactly) and the returned classifier is saved to ``out_dir`` (``Classifier.load(out_dir)``).
    ``overrides`` set config fields (``finetune(clf, loader, method="trades", epochs=2)``).
    """
    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier must be an attacks.Classifier, got {type(classifier).__name__}; wrap your module: "
                        "Classifier(module, num_classes=10, mean=(0.5,), std=(0.5,)) or Classifier.from_timm(...).")
    if config is not None and not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}.")
    cfg = config or FinetuneConfig(**overrides)
    if config is not None and overrides:
        from dataclasses import replace

        cfg = replace(config, **overrides)
    sources = list(sources) if sources is not None else []
    aug = None
    if cfg.method == "augment":
        srcs = check_sources(sources)
        aug = AdversarialAugmentation(srcs, cfg.fraction, cfg.mode, cfg.source_weights, cfg.seed)
        bad = [s for s in srcs if s.eps > cfg.eps * (1 + 1e-6) or s.norm != cfg.norm]
        if bad:
            raise ValueError(f"sources {bad} lie outside the config's threat model ({cfg.norm}, eps={cfg.eps:g}); "
                             "build them at the same norm and an eps <= the config's.")
    elif sources:
        check_sources(sources)
    train = _as_loader(train_loader, cfg.batch_size, True, cfg.seed, "train_loader")
    val = _as_loader(val_loader, 512, False, cfg.seed, "val_loader")
    if len(train) == 0:
        raise ValueError("the training loader is empty.")
    robust = copy.deepcopy(classifier)  # the caller's classifier is never touched
    guard_batch = held_out_batch(val if val is not None else train, cfg.guard_batch_size, cfg.seed) if cfg.guard_on else None
    out = Path(out_dir) if out_dir is not None else None
    game = FinetuneGame(robust, cfg, aug=aug, sources=sources,
                        val_loader=val, guard_batch=guard_batch, out_dir=out)
    trainer = MinMaxTrainer(game, cfg, out / "checkpoint" if out is not None else None)
    game.trainer = trainer
    game.steps_per_epoch = max(1, math.ceil(len(train) / trainer.dist.world_size))
    torch.manual_seed(cfg.seed)
    with robust.unfrozen():
        history = trainer.fit(train, cfg.epochs, resume=resume)
    if game.best_state is not None:
        robust.load_state_dict(game.best_state)
    elif val is not None and out is not None and (out / "best" / "model.safetensors").is_file():
        from attacks.checkpoint import load_state_dict_into, load_tensors

        load_state_dict_into(robust.module, load_tensors(out / "best" / "model.safetensors", what="best classifier"),
                             what=f"best classifier {out / 'best'}")
    robust.freeze()
    if out is not None and trainer.dist.is_main:
        best = [e for e in history.epochs if e.get("best")]
        robust.save(out, extra={"history": history.epochs, "finetune_config": cfg.to_dict(),
                                "best_epoch": best[-1]["epoch"] if best else history.epochs[-1]["epoch"] if history.epochs else None})
    return robust, history
