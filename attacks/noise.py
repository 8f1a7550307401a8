"""Random-noise "attack": a random perturbation of the budget's norm (a baseline and augmentation source).

The seeding helpers every randomized attack uses live in ``attacks.seeding`` and are re-exported here.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Attack, register_attack
from .checks import check_choice
from .seeding import check_seed, make_generator
from .threat import _bcast, flat_norm

_TINY = 1e-12


@register_attack("noise")
class RandomNoise(Attack):
    """Random perturbation of norm ``eps`` (before clipping to the pixel bounds).

    Args:
        eps: budget; norm: ``"linf"`` or ``"l2"``.
        kind: ``"sphere"`` (default): exactly norm eps (L-inf: random signs ±eps on every pixel;
            L2: a uniformly random direction scaled to eps); ``"ball"``: uniform inside the ball.
        seed: seeds the noise (``None``: global RNG).
    """

    name = "noise"
    uses_gradients = False
    queries_model = False

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, kind: str = "sphere", seed: int | None = None,
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        self.kind = check_choice(kind, "kind", ("sphere", "ball"))
        self.seed = check_seed(seed)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": self.kind, "seed": self.seed}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        gen = make_generator(x.device, self.seed)
        if self.kind == "ball":
            return x + self.threat.random_delta(x, gen)
        if self.norm == "linf":
            bits = torch.randint(0, 2, x.shape, device=x.device, generator=gen).to(x.dtype)
            return x + (2 * bits - 1) * self.eps
        g = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=gen)
        return x + g * _bcast(self.eps / (flat_norm(g, "l2") + _TINY), g)


__all__ = ["RandomNoise", "check_seed", "make_generator"]
