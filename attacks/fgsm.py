"""FGSM / FGM: one gradient step of size eps (Goodfellow et al. 2015), optionally from a random start.

L-inf takes the sign of the gradient (FGSM); L2 takes the unit-norm gradient direction (FGM).
With ``random_start=True`` the step starts from a uniform point in the ball and has size
``1.25 * eps`` by default (Wong et al. 2020, "Fast is better than free"); the base class projects back.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Attack, input_gradient, register_attack
from .checks import check_choice, check_number
from .losses import attack_loss
from .seeding import check_seed, make_generator


@register_attack("fgsm")
class FGSM(Attack):
    """Fast gradient sign method (L-inf) / fast gradient method (L2).

    Args:
        eps: budget in pixel units ([0, 1] images).
        norm: ``"linf"`` (sign step) or ``"l2"`` (normalized gradient step).
        random_start: start from a uniformly random point of the ball.
        step_size: size of the single step; default ``eps`` (``1.25 * eps`` with a random start).
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (C&W logit margin).
        seed: seeds the random start (``None``: global RNG).
    """

    name = "fgsm"

    def __init__(self, eps: float = 0.3, norm: str = "linf", random_start: bool = False, *,
                 step_size: float | None = None, loss: str = "ce", seed: int | None = None,
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        self.random_start = bool(random_start)
        self.loss = check_choice(loss, "loss", ("ce", "margin"))
        self.seed = check_seed(seed)
        self._step_size = None if step_size is None else check_number(step_size, "step_size", positive=True)

    @property
    def step_size(self) -> float:
        if self._step_size is not None:
            return self._step_size
        return 1.25 * self.eps if self.random_start else self.eps

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "random_start": self.random_start, "step_size": self.step_size,
                "loss": self.loss, "seed": self.seed}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        x0 = x
        if self.random_start:
            gen = make_generator(x.device, self.seed)
            x0 = self.threat.project(x, x + self.threat.random_delta(x, gen))
        with torch.enable_grad():  # attacks work even when called under torch.no_grad()
            x0 = x0.clone().requires_grad_(True)
            loss = attack_loss(model(x0), y, target, self.loss).sum()
            grad = input_gradient(loss, x0)
        return x0.detach() + self.step_size * self.threat.normalize_step(grad)
