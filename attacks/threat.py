"""The threat model: which perturbations count as an attack (norm, budget, pixel bounds)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .checks import check_eps

_TINY = 1e-12


def flat_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a batch of perturbations, shape (N,)."""
    flat = delta.reshape(delta.shape[0], -1)
    out: torch.Tensor
    if norm == "linf":
        out = flat.abs().amax(dim=1)
    elif norm == "l2":
        out = flat.norm(p=2, dim=1)
    else:
        raise ValueError(f"unknown norm {norm!r}; choose 'linf' or 'l2'.")
    return out


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def check_bounds(bounds: object) -> tuple[float, float]:
    """Pixel bounds must be two finite numbers (low, high) with low < high."""
    ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
    if not ok:
        raise TypeError(f"bounds must be a pair of numbers (low, high), e.g. (0.0, 1.0), got {bounds!r}.")
    lo, hi = float(bounds[0]), float(bounds[1])  # type: ignore[index]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"bounds must be finite (low, high), e.g. (0.0, 1.0), got {bounds!r}.")
    if not lo < hi:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}.")
    return lo, hi


@dataclass(frozen=True)
class ThreatModel:
    """An L-inf or L2 ball of radius ``eps`` around each input, intersected with the pixel ``bounds``.

    Example: ``ThreatModel("linf", 8/255).project(x, x_adv)``.
    """

    norm: str = "linf"
    eps: float = 0.3
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_eps(self.eps, self.norm))
        object.__setattr__(self, "bounds", check_bounds(self.bounds))

    def project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        """Project perturbations into the norm ball (no pixel clipping)."""
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        n = flat_norm(delta, "l2")
        factor = torch.clamp(self.eps / (n + _TINY), max=1.0)
        return delta * _bcast(factor, delta)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Return the point inside the threat model (ball ∩ bounds) nearest to ``x_adv`` (exact for L-inf).

        Idempotent to the bit: a point the projection returned is returned unchanged (so projecting
        an attack's already projected iterate once more changes nothing).
        """
        lo, hi = self.bounds
        if self.norm == "linf":
            return torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps).clamp(lo, hi)
        out = self._l2_shrink(x, x_adv, 1.0).clamp(lo, hi)
        # rounding can leave a scaled point a hair outside the ball: shrink those once more, and fall
        # back to x itself (inside every threat model) if even that fails (eps near float resolution)
        out = self._l2_shrink(x, out, 1.0 - 1e-5).clamp(lo, hi)
        inside = flat_norm(out - x, "l2") <= self.eps
        return torch.where(_bcast(inside, out), out, x)

    def _l2_shrink(self, x: torch.Tensor, x_adv: torch.Tensor, safety: float) -> torch.Tensor:
        """Points outside the L2 ball scaled onto it (times ``safety``); points inside left bit-identical."""
        delta = x_adv - x
        n = flat_norm(delta, "l2")
        scaled = x + delta * _bcast(self.eps * safety / (n + _TINY), delta)
        return torch.where(_bcast(n <= self.eps, delta), x_adv, scaled)

    def contains(self, x: torch.Tensor, x_adv: torch.Tensor, *, tol: float = 1e-5) -> torch.Tensor:
        """Per-sample bool: is ``x_adv`` inside the ball and the bounds?"""
        inside = flat_norm(x_adv - x, self.norm) <= self.eps * (1 + tol) + tol
        lo, hi = self.bounds
        flat = x_adv.reshape(x_adv.shape[0], -1)
        in_bounds = (flat >= lo - tol).all(1) & (flat <= hi + tol).all(1)
        return inside & in_bounds

    def random_delta(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A uniformly random perturbation inside the ball (L-inf: uniform cube; L2: uniform in the ball)."""
        if self.norm == "linf":
            u = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            return (2 * u - 1) * self.eps
        g = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        g = g / _bcast(flat_norm(g, "l2") + _TINY, g)
        d = x[0].numel()
        r = torch.rand(x.shape[0], device=x.device, dtype=x.dtype, generator=generator) ** (1.0 / d)
        return g * _bcast(r * self.eps, g)

    def normalize_step(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction for this norm: sign for L-inf, unit L2 direction for L2."""
        if self.norm == "linf":
            return grad.sign()
        return grad / _bcast(flat_norm(grad, "l2") + _TINY, grad)

    def to_dict(self) -> dict[str, Any]:
        return {"norm": self.norm, "eps": self.eps, "bounds": list(self.bounds)}
