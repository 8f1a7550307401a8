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
``overfit_drop`` below the best accepted epoch's, the weights and optimizer state are rolled back to
that epoch and a warning is issued (training then continues; the best epoch is what is returned).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from advgan.config import LEARNING_RATE, RUN, Betas, Boolean, Choice, Custom, Integer, NumberTuple, Real
from advgan.data import as_loader
from advgan.engine import Callback, EngineConfig, Player, Run
from advgan.engine.game import Batch, LossParts, Nets
from advgan.engine.history import History
from advgan.training import ClassifierGame
from attacks import Classifier
from attacks.checks import check_eps, unpack_pair
from attacks.corruptions import corruption_names
from attacks.threat import ThreatModel

from . import methods
from .augmentation import MODES, AdversarialAugmentation, check_sources
from .augmix import AugMix
from .callbacks import BestEpoch, OverfitGuard, TrainTime, Validation
from .corruption_source import is_corruption_source
from .methods import AWP_BASES, METHODS

OPTIMIZERS = ("adamw", "sgd")
POSITIVE = Integer(1)
NONNEG = Real(0, closed=True)


def _spec(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string ('' for none, 'all', a family or comma-separated names), "
                        f"got {type(value).__name__}.")
    return value


@dataclass(frozen=True)
class FinetuneConfig(EngineConfig):
    """Robust fine-tuning settings (plus the engine's :class:`EngineConfig`: amp, grad_clip, seed, device...)."""

    method: Annotated[str, Choice(METHODS, message="unknown method {value!r}; valid methods: {choices}.")] = "pgd-at"  #: fine-tuning method
    epochs: Annotated[int, POSITIVE, RUN] = 5          #: epochs (per round with --rounds); a resumed run may add epochs
    eps: Annotated[float, Real(0)] = 0.3               #: budget in pixel units (8/255 = 0.0314, not 8)
    norm: Annotated[str, Choice(("linf", "l2"))] = "linf"  #: linf | l2
    fraction: Annotated[float, Real(0, 1, closed=True)] = 0.5  #: augment: share of each batch replaced
    mode: Annotated[str, Choice(MODES)] = "weighted"   #: augment: how sources are picked
    source_weights: Annotated[tuple[float, ...] | None, NumberTuple(optional=True)] = None  #: augment: one weight per source
    pgd_steps: Annotated[int, POSITIVE] = 10           #: training PGD steps (pgd-at, trades, pgd source; Madry MNIST: 40)
    pgd_step_size: Annotated[float | None, Real(0, optional=True)] = None  #: default 2.5 * eps / pgd_steps
    eps_ramp_epochs: Annotated[float, NONNEG] = 0.0    #: ramp eps up linearly over this many epochs (fgsm-rs: 1 stops its overfitting)
    trades_beta: Annotated[float, NONNEG] = 6.0        #: TRADES: weight of the KL term (also awp on trades)
    mart_beta: Annotated[float, NONNEG] = 6.0          #: MART: weight of the misclassification-aware KL term
    nfgsm_k: Annotated[float, NONNEG] = 2.0            #: N-FGSM: noise magnitude k (uniform in [-k*eps, k*eps]); step = eps
    #: AWP: relative size of the weight perturbation
    awp_gamma: Annotated[float, Real(0, closed=True, must=">= 0 (0 turns the weight perturbation off)")] = 5e-3
    awp_base: Annotated[str, Choice(AWP_BASES)] = "pgd-at"  #: AWP: the method it perturbs (pgd-at | trades)
    awp_warmup_epochs: Annotated[float, NONNEG] = 0.0  #: AWP: epochs of the base method before the weights are perturbed
    optimizer: Annotated[str, Choice(OPTIMIZERS)] = "adamw"  #: adamw | sgd
    lr: Annotated[float, LEARNING_RATE] = 1e-3         #: learning rate
    momentum: Annotated[float, Real(0, 1, closed=(True, False))] = 0.9  #: sgd only
    weight_decay: Annotated[float, NONNEG] = 5e-4      #: weight decay
    betas: Annotated[tuple[float, float], Betas()] = (0.9, 0.999)  #: AdamW betas
    lr_schedule: str = "cosine"
    batch_size: int = 128
    overfit_guard: Annotated[bool | None, Boolean(optional=True, what="True or False (None: on for fgsm-rs only)")] = None  #: the guard
    overfit_drop: Annotated[float, Real(0, 1, closed=(False, True))] = 0.2  #: rollback when guard robust acc. falls this far below its best
    guard_batch_size: Annotated[int, POSITIVE] = 256   #: held-out items of the guard
    guard_pgd_steps: Annotated[int, POSITIVE] = 10     #: PGD steps of the guard
    val_pgd_steps: Annotated[int, POSITIVE] = 10       #: PGD steps of the per-epoch robust validation
    val_batches: Annotated[int | None, Integer(1, optional=True)] = None  #: validate on this many test batches per epoch
    augmix_width: Annotated[int, POSITIVE] = 3         #: augmix: chains mixed per image
    augmix_depth: Annotated[int, Integer(-1)] = -1     #: augmix: operations per chain (-1: random 1..3)
    augmix_severity: Annotated[int, Integer(1, 10)] = 3  #: augmix: operation strength 1..10
    augmix_alpha: Annotated[float, Real(0)] = 1.0      #: augmix: Dirichlet / Beta concentration
    jsd_lambda: Annotated[float, NONNEG] = 12.0        #: augmix: weight of the Jensen-Shannon consistency term
    augmix_corruptions: Annotated[str, Custom(_spec, "a string")] = ""  #: augmix: also chain these corruptions (all, a family, a,b)
    # advgan-at (defenses.advgan_at): a generator trained online against the classifier
    gen_steps: Annotated[int, POSITIVE] = 1            #: advgan-at: generator steps per classifier step
    gen_noise: Annotated[int, Integer(0)] = 0          #: advgan-at: noise channels fed to the generator (0: none)
    gen_mix: Annotated[float, Real(0, 1, closed=True)] = 0.0  #: advgan-at: share of each batch from fgsm-rs instead of the generator
    gen_clean: Annotated[float, Real(0, 1, closed=(True, False))] = 0.0  #: advgan-at: weight of the clean CE (1 - it: generated)
    gen_kl: Annotated[float, NONNEG] = 0.0             #: advgan-at: weight of the TRADES-style KL(f(x) || f(x_adv))
    gen_alpha: Annotated[float, NONNEG] = 0.0          #: advgan-at: weight of the discriminator's GAN loss (0: no D)
    gen_kappa: Annotated[float, NONNEG] = 10.0         #: advgan-at: C&W confidence margin of the generator's loss
    gen_lr: Annotated[float, LEARNING_RATE] = 3e-3     #: advgan-at: learning rate of G and D
    gen_width: Annotated[int, POSITIVE] = 2            #: advgan-at: first-layer channels of G and D
    gen_fraction: Annotated[float, Real(0, 1, closed=(False, True))] = 1.0  #: advgan-at: share of each batch G and D train on (cost)
    gen_grad: Annotated[bool, Boolean()] = False      #: advgan-at: G also reads the classifier's input-gradient sign (L2L)
    gen_init: Annotated[bool, Boolean()] = True       #: advgan-at: G's example starts one FGSM step (learned init)
    gen_init_step: Annotated[float, Real(0, 2, closed=(False, True))] = 0.5  #: advgan-at, gen_init: the step, x eps
    #: advgan-at: G ascends C's own loss in C's step (gradient reversal; None: on when G needs no step of its own,
    #: i.e. gen_alpha 0, gen_steps 1 and gen_fraction 1)
    gen_reverse: Annotated[bool | None, Boolean(optional=True)] = None

    def validate(self) -> None:
        object.__setattr__(self, "eps", check_eps(self.eps, self.norm))
        if self.augmix_depth == 0:
            raise ValueError("augmix_depth must be -1 (random 1..3) or >= 1, got 0.")
        if not isinstance(self.augmix_corruptions, str):
            raise TypeError(f"augmix_corruptions must be a string ('' for none, 'all', a family or comma-separated names), "
                            f"got {type(self.augmix_corruptions).__name__}.")
        if self.augmix_corruptions:
            corruption_names(_names(self.augmix_corruptions))
        if self.gen_reverse and not self._g_needs_no_step:
            raise ValueError(f"gen_reverse=True trains G inside C's step, on C's loss for every generated row, with no "
                             f"discriminator: set gen_alpha=0, gen_steps=1 and gen_fraction=1 (got gen_alpha={self.gen_alpha:g}, "
                             f"gen_steps={self.gen_steps}, gen_fraction={self.gen_fraction:g}), or gen_reverse=None "
                             "(G then takes its own steps).")
        if self.method == "augment" and self.fraction == 0:
            raise ValueError("fraction=0 replaces nothing: method 'augment' would be plain training. Use fraction in (0, 1].")

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps)

    @property
    def _g_needs_no_step(self) -> bool:
        return not self.gen_alpha and self.gen_steps == 1 and self.gen_fraction == 1.0

    @property
    def gen_reverse_on(self) -> bool:
        """advgan-at: whether G is C's gradient-reversal partner (``gen_reverse``, or its default when None)."""
        return self._g_needs_no_step if self.gen_reverse is None else self.gen_reverse

    @property
    def guard_on(self) -> bool:
        return self.method == "fgsm-rs" if self.overfit_guard is None else self.overfit_guard


class FinetuneGame(ClassifierGame):
    """One player, the classifier ``C``; the loss is the method's batch loss (``defenses.methods``).

    ``steps_per_epoch`` sizes the ε ramp (``eps_ramp_epochs``); ``finetune`` sets it from the loader."""

    kind = "robust-finetune"

    def __init__(self, clf: Classifier, cfg: FinetuneConfig, *, aug: AdversarialAugmentation | AugMix | None,
                 steps_per_epoch: int = 1) -> None:
        self.clf, self.cfg, self.aug = clf, cfg, aug
        self.nets = {"C": clf}
        self.steps_per_epoch = steps_per_epoch
        self._checked = False

    def players(self) -> list[Player]:
        c = self.cfg
        return [Player("C", c.lr, 1, c.betas, c.weight_decay, optimizer=c.optimizer, momentum=c.momentum)]

    def config_dict(self) -> dict[str, Any]:
        return {"classifier": self.clf.config(), "augmentation": self.aug.describe() if self.aug else None}

    def current_eps(self, step: int) -> float:
        """ε of round ``step`` (0-based): ramped linearly over ``eps_ramp_epochs`` (never 0), else the config's ε."""
        return methods.ramped_eps(self.cfg.eps, self.cfg.eps_ramp_epochs, step, self.steps_per_epoch)

    def loss(self, player: str, nets: Nets, batch: Batch, step: int) -> tuple[torch.Tensor, LossParts]:
        x, y = batch[0], batch[1]
        self.check_batch(x, y)
        self._checked = True
        eps = self.current_eps(step)
        threat = ThreatModel(self.cfg.norm, eps)
        loss, parts = methods.batch_loss(self.cfg.method, nets["C"], self.clf, x, y, threat=threat,
                                         pgd_steps=self.cfg.pgd_steps, pgd_step_size=self.cfg.pgd_step_size,
                                         trades_beta=self.cfg.trades_beta, aug=self.aug, step=step,
                                         mart_beta=self.cfg.mart_beta, nfgsm_k=self.cfg.nfgsm_k,
                                         awp_gamma=self.awp_gamma(step), awp_base=self.cfg.awp_base)
        if self.cfg.eps_ramp_epochs:
            parts["eps"] = torch.tensor(eps)
        return loss, parts

    def awp_gamma(self, step: int) -> float:
        """γ of round ``step``: 0 during ``awp_warmup_epochs`` (plain ``awp_base``), then ``awp_gamma``."""
        return 0.0 if step < self.cfg.awp_warmup_epochs * self.steps_per_epoch else self.cfg.awp_gamma


def _game(robust: Classifier, cfg: FinetuneConfig, aug: AdversarialAugmentation | AugMix | None, generator: Any) -> Any:
    """The method's game: one player (C) for the batch-loss methods, C + D + G for ``advgan-at``."""
    if cfg.method != "advgan-at":
        return FinetuneGame(robust, cfg, aug=aug)
    from .advgan_at import AdvGANATGame, check_generator

    G, D = check_generator(generator, cfg) if generator is not None else (None, None)
    return AdvGANATGame(robust, cfg, G=G, D=D)


def held_out_batch(loader: DataLoader, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` items of the loader's dataset drawn with a private seeded generator (no global RNG consumed;
    random, because datasets are often sorted by label)."""
    ds = loader.dataset
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
    items = default_collate([ds[int(i)] for i in idx])
    x, y = unpack_pair(items, "the validation data")
    return x, y


def _names(spec: str) -> str | list[str]:
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    return parts[0] if len(parts) == 1 else parts


def augmix_recipe(cfg: FinetuneConfig) -> AugMix:
    """The AugMix recipe of a config (``augmix_*`` fields and ``jsd_lambda``)."""
    return AugMix(cfg.augmix_width, cfg.augmix_depth, cfg.augmix_severity, cfg.augmix_alpha, cfg.jsd_lambda,
                  corruptions=_names(cfg.augmix_corruptions) if cfg.augmix_corruptions else None, seed=cfg.seed)


def _augmentation(cfg: FinetuneConfig, sources: list[Any]) -> AdversarialAugmentation | AugMix | None:
    """The batch mixer of ``augment`` (sources checked against the threat model), the recipe of ``augmix``;
    other methods: sources checked only."""
    if cfg.method == "augmix":
        if sources:
            check_sources(sources)
        return augmix_recipe(cfg)
    if cfg.method != "augment":
        if sources:
            check_sources(sources)
        return None
    srcs = check_sources(sources)
    bad = [s for s in srcs if not is_corruption_source(s) and (s.eps > cfg.eps * (1 + 1e-6) or s.norm != cfg.norm)]
    if bad:
        raise ValueError(f"sources {bad} lie outside the config's threat model ({cfg.norm}, eps={cfg.eps:g}); "
                         "build them at the same norm and an eps <= the config's.")
    return AdversarialAugmentation(srcs, cfg.fraction, cfg.mode, cfg.source_weights, cfg.seed)


def _callbacks(robust: Classifier, cfg: FinetuneConfig, train: DataLoader, val: DataLoader | None, sources: list[Any],
               out: Path | None) -> tuple[list[Callback], BestEpoch | None]:
    callbacks: list[Callback] = [TrainTime()]
    if cfg.guard_on:
        callbacks.append(OverfitGuard(robust, held_out_batch(val if val is not None else train, cfg.guard_batch_size, cfg.seed), cfg))
    best = None
    if val is not None:
        best = BestEpoch(robust, out, cfg)
        callbacks += [Validation(robust, val, sources, cfg), best]
    return callbacks, best


def finetune(classifier: Classifier, train_loader: DataLoader | Dataset, config: FinetuneConfig | None = None,
             sources: Sequence[Any] | None = None, val_loader: DataLoader | Dataset | None = None,
             out_dir: str | Path | None = None, resume: bool = True, generator: Any = None,
             **overrides: Any) -> tuple[Classifier, History]:
    """Fine-tune a copy of ``classifier`` for robustness; returns ``(robust_classifier, history)``.

    ``classifier`` itself is not modified. ``sources`` (attacks) feed ``method="augment"``; for the
    other methods they are extra attacks whose robust accuracy is validated each epoch. With
    ``val_loader`` the epoch with the best robust accuracy (mean over PGD and the sources, ties to the
    higher clean accuracy) is returned (and saved to ``out_dir/best``);
    otherwise the last epoch. With ``out_dir`` the engine checkpoints into ``out_dir/checkpoint`` (re-running
    resumes exactly) and the returned classifier is saved to ``out_dir`` (``Classifier.load(out_dir)``).
    ``overrides`` set config fields (``finetune(clf, loader, method="trades", epochs=2)``).
    ``generator`` (``advgan-at`` only): a trained ``AdvGAN`` or its ``GeneratorAttack`` at the config's ε to warm-start from.
    """
    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier must be an attacks.Classifier, got {type(classifier).__name__}; wrap your module: "
                        "Classifier(module, num_classes=10, mean=(0.5,), std=(0.5,)) or Classifier.from_timm(...).")
    if config is not None and not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}.")
    cfg = config or FinetuneConfig(**overrides)
    if config is not None and overrides:
        cfg = replace(config, **overrides)
    sources = list(sources) if sources is not None else []
    aug = _augmentation(cfg, sources)
    if generator is not None:
        from .advgan_at import check_generator

        check_generator(generator, cfg)
    train = as_loader(train_loader, cfg.batch_size, shuffle=True, seed=cfg.seed, what="train_loader")
    val = as_loader(val_loader, 512, shuffle=False, seed=cfg.seed, what="val_loader") if val_loader is not None else None
    if len(train) == 0:
        raise ValueError("the training loader is empty.")
    robust = copy.deepcopy(classifier)  # the caller's classifier is never touched
    out = Path(out_dir) if out_dir is not None else None
    callbacks, best = _callbacks(robust, cfg, train, val, sources, out)
    game = _game(robust, cfg, aug, generator)
    run = Run(game, cfg)
    trainer = run.trainer_for(out / "checkpoint" if out is not None else None)
    game.steps_per_epoch = max(1, math.ceil(len(train) / trainer.dist.world_size))
    torch.manual_seed(cfg.seed)
    with robust.unfrozen():
        history = run.train(train, cfg.epochs, trainer.out_dir, resume=resume, callbacks=callbacks)
    _keep_best(robust, best, val, out)
    robust.freeze()
    if out is not None and trainer.dist.is_main:
        chosen = [e for e in history.epochs if e.get("best")]
        robust.save(out, extra={"history": history.epochs, "finetune_config": cfg.to_dict(),
                                "best_epoch": chosen[-1]["epoch"] if chosen else history.epochs[-1]["epoch"] if history.epochs else None})
    return robust, history


def _keep_best(robust: Classifier, best: BestEpoch | None, val: DataLoader | None, out: Path | None) -> None:
    """Load the best epoch's weights into ``robust`` (from memory, or from ``out/best`` after a resume)."""
    if best is not None and best.best_state is not None:
        robust.load_state_dict(best.best_state)
    elif val is not None and out is not None and (out / "best" / "model.safetensors").is_file():
        from attacks.checkpoint import load_state_dict_into, load_tensors

        load_state_dict_into(robust.module, load_tensors(out / "best" / "model.safetensors", what="best classifier"),
                             what=f"best classifier {out / 'best'}")
