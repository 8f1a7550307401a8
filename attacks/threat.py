"""The threat model: which perturbations count as an attack (norm, budget, pixel bounds)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_eps

_TINY = 1e-12


def flat_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a batch of perturbations, shape (N,)."""
    flat = delta.reshape(delta.shape[0], -1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    raise ValueError(f"unknown norm {norm!r}; choose 'linf' or 'l2'.")


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


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
        lo, hi = self.bounds
        if not lo < hi:
            raise ValueError(f"bounds must be (low, high) with low < high, got {self.bounds}.")
        object.__setattr__(self, "bounds", (float(lo), float(hi)))

    def project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        """Project perturbations into the norm ball (no pixel clipping)."""
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        n = flat_norm(delta, "l2")
        factor = torch.clamp(self.eps / (n + _TINY), max=1.0)
        return delta * _bcast(factor, delta)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Return the point inside the threat model (ball ∩ bounds) nearest to ``x_adv`` (exact for L-inf)."""
        delta = self.project_delta(x_adv - x)
        out = (x + delta).clamp(*self.bounds)
        if self.norm == "l2":  # clipping only shrinks |delta| per pixel, so the ball still holds
            out = x + self.project_delta(out - x)
            out = out.clamp(*self.bounds)
        return out

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

    def to_dict(self) -> dict:
        return {"norm": self.norm, "eps": self.eps, "bounds": list(self.bounds)}
