"""AdvGAN's settings (:class:`AdvGANConfig`) and the generator they build (:func:`generator_shape`,
:func:`build_generator`); the attacker itself is :mod:`advgan.attacker.model`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from torch import nn

from attacks.checks import check_eps
from attacks.threat import ThreatModel

from ..config import FLAG, RUN, Choice, Custom, Integer, Real
from ..engine import TrainConfig
from ..gans import losses

GENERATORS = ("resnet", "unet")
NONNEG = Real(0, closed=True)


def _gan_loss(value: Any, name: str) -> Any:
    losses.resolve(value)
    return value


@dataclass(frozen=True)
class AdvGANConfig(TrainConfig):
    """AdvGAN settings (plus the engine's :class:`TrainConfig` fields).

    ``kappa = 10`` (a confident margin, not the paper's 0) is measured, not guessed: on MNIST-5k
    against ``small_cnn`` after 3 epochs it gives white-box L-inf 0.3 ASR 98.3 % (kappa 1: 90.5 %),
    0.2 ASR 78 % (kappa 1: 70 %), and it is what makes black-box transfer work: a static surrogate's
    attack fools the black box 96 % of the time with kappa 10 against 67 % with kappa 1.
    lr 3e-3 beat the paper-like 1e-3. See benchmarks/advgan.py for the full table.

    The class-spread term (``spread_weight`` 1, ``spread_floor`` 1.5 nats, a hinge ``relu(floor - H)`` on the entropy
    of the batch's mean adversarial class distribution) keeps an untargeted generator from sending every fooled input
    to one class: on MNIST-5k at eps 0.3 the entropy of the adversarial classes is 1.40-1.45 nats with it (PGD-40:
    2.07) and 0.70-0.89 without, for 1.2-1.7 points of ASR at eps 0.2 (90.0 % on two seeds, 91.2-91.7 % without);
    the term without a floor costs more at 0.2 (89.4-89.6 %). ``benchmarks/advgan_spread.py`` has the runs."""

    eps: Annotated[float, Real(0)] = 0.3                     #: budget in pixel units [0, 1] (e.g. 0.3, or 8/255=0.0314)
    norm: Annotated[str, Choice(("linf", "l2"))] = "linf"    #: linf | l2
    targeted: Annotated[bool, FLAG] = False                  #: one generator conditioned on the target class
    kappa: Annotated[float, NONNEG] = 10.0                   #: C&W confidence margin on logits
    alpha: Annotated[float, NONNEG] = 1.0                    #: GAN loss weight
    beta: Annotated[float, NONNEG] = 0.0                     #: hinge loss weight (0.1 default: 1)
    #: hinge bound on ||delta||_2; None: eps * sqrt(pixels) / 2 (L-inf) or eps (L2)
    c: Annotated[float | None, Real(0, closed=True, optional=True, what="a finite number >= 0 (the hinge bound on ||delta||_2)")] = None
    gan_loss: Annotated[str, Custom(_gan_loss, "a GAN loss name")] = "lsgan"   #: GAN loss (least squares, as in the paper)
    generator: Annotated[str, Choice(GENERATORS)] = "resnet"  #: resnet (paper's encoder-decoder) | unet
    width: Annotated[int, Integer(1)] = 8                    #: first-layer channels of G and D (paper: 8)
    #: image side G is sized for (None: the paper's 28-px net); see generator_shape
    image_size: Annotated[int | None, Integer(1, optional=True)] = None
    g_steps: Annotated[int, Integer(1)] = 2                  #: generator steps per discriminator step (on the same batch)
    #: weight of the diversity term, the batch's shared energy ||mean delta||^2 / mean ||delta||^2
    #: (None: 0.5 untargeted, 0 targeted, where the targets already make the perturbations differ)
    div_weight: Annotated[float | None, Real(0, closed=True, optional=True)] = None
    #: untargeted: weight of the class-spread term (pushes the fooled inputs to spread over classes; 0: off)
    spread_weight: Annotated[float, NONNEG] = 1.0
    #: untargeted: the class-spread term pushes only while the batch's adversarial-class entropy is below this many
    #: nats (None: always)
    spread_floor: Annotated[float | None, Real(0, optional=True, what="a number of nats > 0 (or None)")] = 1.5
    shift: Annotated[int, Integer(0)] = 0                    #: random shift augmentation: up to this many pixels per axis
    #: targeted: draw hard targets more often (weight 1 + s * running miss rate of the target; 0: uniform)
    target_curriculum: Annotated[float, NONNEG] = 0.0
    #: targeted: weight of an auxiliary target classifier on D (AC-GAN style, after AI-GAN): D learns the true class
    #: of x and the target of x_adv, and G is pushed to make x_adv read as its target to D too (0: off)
    aux_weight: Annotated[float, NONNEG] = 0.0
    #: keep the epoch with the best validation ASR (needs a validation set; else the last epoch is kept)
    best_epoch: Annotated[bool, FLAG, RUN] = True
    lr_g: float = 3e-3
    lr_d: float = 3e-3
    batch_size: int = 32
    ema_decay: float | None = 0.999

    def validate(self) -> None:
        object.__setattr__(self, "eps", check_eps(self.eps, self.norm))
        if self.aux_weight and not self.targeted:
            raise ValueError(f"aux_weight={self.aux_weight:g} needs targeted=True: the auxiliary classifier on D learns "
                             "the targets of the adversarial images; use aux_weight=0 for an untargeted AdvGAN.")
        if self.targeted:  # the class-spread term is untargeted only: a targeted config stores it off
            object.__setattr__(self, "spread_weight", 0.0)
        if not self.spread_weight:  # no term, no floor (so older checkpoints without the floor resume)
            object.__setattr__(self, "spread_floor", None)

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps)

    @property
    def diversity_weight(self) -> float:
        """The diversity term's weight in use: ``div_weight``, or its default for the mode when None.

        Untargeted generators tend to collapse onto one perturbation (and one adversarial class), which the
        term counters; for a targeted generator it fights the target conditioning (2 epochs on MNIST-5k:
        19 % target hits with 0.5 against 63 % with 0), so its default there is 0."""
        if self.div_weight is not None:
            return self.div_weight
        return 0.0 if self.targeted else 0.5

    def hinge_bound(self, pixels: int) -> float:
        """c, or its default for images of ``pixels`` values (C*H*W)."""
        if self.c is not None:
            return float(self.c)
        return self.eps * math.sqrt(pixels) / 2 if self.norm == "linf" else self.eps


def generator_shape(width: int, image_size: int | None) -> tuple[int, int]:
    """``(width, downsamplings)`` of the generator for images of side ``image_size`` (the documented default).

    Up to 64 px (and ``None``): ``(width, 2)``, the paper's net (bottleneck at 1/4 of the side). Up to 128 px:
    ``(2 * width, 3)``; larger (e.g. 224): ``(2 * width, 4)`` (bottleneck 14x14 at 224, with 16x the first-layer
    channels). The receptive field grows with the image, so a perturbation can follow object-sized structure,
    while the cost per pixel stays within about 3x of the paper's net. The U-Net uses ``downsamplings + 1`` levels."""
    if image_size is None or image_size <= 64:
        return width, 2
    return 2 * width, (3 if image_size <= 128 else 4)


def build_generator(cfg: AdvGANConfig, in_chans: int, num_classes: int) -> nn.Module:
    cond = num_classes if cfg.targeted else 0
    width, n_down = generator_shape(cfg.width, cfg.image_size)
    if cfg.generator == "resnet":
        from ..gans.nets.encdec import ResNetGenerator

        return ResNetGenerator(in_chans, width=width, num_classes=cond, n_down=n_down)
    from ..gans.nets.encdec import UNetPerturbation

    return UNetPerturbation(in_chans, width=width, num_classes=cond, depth=n_down + 1)
