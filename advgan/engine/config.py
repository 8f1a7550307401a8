"""The engine's settings (:class:`EngineConfig`) and the two-player (GAN-family) settings (:class:`TrainConfig`).

Every model config derives from one of them: one-player configs (classifier training, fine-tuning) from
``EngineConfig``, the GAN family (GAN, cGAN, pix2pix, AdvGAN) from ``TrainConfig``, which adds the
learning rates of G and D, Adam's betas, weight decay and the discriminator steps per generator step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from ..config import FLAG, LEARNING_RATE, RUN, SEED, Betas, Config, Custom, Flag, Integer, Real, Text

SCHEDULES = ("constant", "linear", "cosine")


def _compile_option(value: Any, name: str) -> bool | str:
    if not isinstance(value, (bool, str)) or value == "":
        raise TypeError(f"{name} must be True/False or a torch.compile backend name, got {value!r}.")
    return value


def _schedule(value: Any, name: str) -> str:
    from attacks.checks import check_choice

    return check_choice(value, name, SCHEDULES)


SCHEDULE = Custom(_schedule, "constant, linear or cosine")
COMPILE = Custom(_compile_option, "True/False or a backend name")


@dataclass(frozen=True)
class EngineConfig(Config):
    """Settings of the min-max engine (mixed precision, clipping, EMA, schedule, cadence, device, ...)."""

    batch_size: Annotated[int, Integer(1)] = 64                     #: items per batch
    lr_schedule: Annotated[str, SCHEDULE] = "constant"     #: constant | linear (to 0) | cosine
    amp: Annotated[bool, FLAG] = False                  #: mixed precision (bf16 where supported, else fp16 + GradScaler)
    grad_clip: Annotated[float | None, Real(0, optional=True)] = None  #: max gradient norm per player step
    #: EMA decay of the generator weights used for sampling (e.g. 0.999)
    ema_decay: Annotated[float | None, Real(0, 1, optional=True), Flag("ema")] = None
    checkpoint_every: Annotated[int, Integer(0), RUN] = 0  #: generator steps between checkpoints (0: end of each epoch only)
    sample_every: Annotated[int, Integer(0), RUN] = 0    #: generator steps between sample PNGs (0: each epoch)
    log_every: Annotated[int, Integer(1), RUN] = 10      #: generator steps between host syncs for logging / NaN guard
    seed: Annotated[int, SEED] = 0                       #: random seed (runs are repeatable on one machine)
    device: Annotated[str, Text(), RUN] = "auto"         #: cpu, cuda, cuda:1 or auto (cuda when available)
    progress: Annotated[bool, FLAG, RUN] = True          #: show progress bars
    channels_last: Annotated[bool, FLAG, RUN] = False    #: nets and 4-D image batches in channels-last memory format (GPU speed-up)
    compile: Annotated[bool | str, COMPILE, RUN] = False  #: torch.compile the trainable nets (True: inductor, or a backend name)
    ddp_find_unused: Annotated[bool, FLAG, RUN] = False  #: DDP find_unused_parameters (a net with parameters its loss does not use)


@dataclass(frozen=True)
class TrainConfig(EngineConfig):
    """The GAN family's settings: the engine's plus G's and D's learning rates, Adam betas, D steps."""

    lr_g: Annotated[float, LEARNING_RATE] = 2e-4         #: generator learning rate
    lr_d: Annotated[float, LEARNING_RATE] = 2e-4         #: discriminator learning rate
    betas: Annotated[tuple[float, float], Betas(), Flag("beta1", "beta2")] = (0.5, 0.999)  #: Adam betas (WGAN-GP: 0.0, 0.9)
    weight_decay: Annotated[float, Real(0, closed=True)] = 0.0  #: weight decay of both players
    d_steps: Annotated[int, Integer(1)] = 1              #: discriminator steps per generator step (WGAN: 5)
