"""Random-noise "attack": a random perturbation of the budget's norm (a baseline and augmentation source).

Also home of the seeding helpers every randomized attack uses: a ``torch.Generator`` on the input's
device, seeded per call, so the same attack on the same inputs gives the same result.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Attack, register_attack
from .checks import check_choice
from .threat import _bcast, flat_norm

_TINY = 1e-12


def check_seed(seed: object) -> int | None:
    """``seed`` must be an int or None."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} ({seed!r}).")
    return seed  # type: ignore[return-value]


def make_generator(device: torch.device, seed: int | None) -> torch.Generator | None:
    """A torch.Generator on ``device`` seeded with ``seed`` (``None`` -> the global RNG is used)."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(int(seed))


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

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, kind: str = "sphere", seed: int | None = None,
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        self.kind = check_choice(kind, "kind", ("sphere", "ball"))
        self.seed = check_seed(seed)

    def describe(self) -> dict:
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
