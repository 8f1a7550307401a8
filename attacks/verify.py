"""Never trust an attack's output: check it before counting it.

``check_output_type`` refuses (``ValueError`` naming the attack) an output that is not a tensor of
the input's shape, dtype and device: nothing sensible can be counted from it. ``screen_output``
judges each sample on the device, without a host sync: finite, inside the pixel bounds and inside
the attack's threat model (norm ball), with a small tolerance for rounding. Samples that fail are
replaced by the clean input, i.e. counted as inputs the attack did **not** break, and the number of
such samples and the worst violation are returned for the report's flags.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .threat import ThreatModel, flat_norm

REL_TOL = 1e-5  # relative slack on the norm ball, for rounding in the attack's own arithmetic
BOUNDS_TOL = 1e-6  # slack on the pixel bounds


def check_output_type(name: str, x: torch.Tensor, x_adv: object) -> torch.Tensor:
    """``x_adv`` must be a tensor with ``x``'s shape, dtype and device; ValueError naming the attack otherwise."""
    if not isinstance(x_adv, torch.Tensor):
        raise ValueError(f"attack {name!r} returned a {type(x_adv).__name__}, not a tensor; an attack must return "
                         f"x_adv of the input's shape {tuple(x.shape)} and dtype {x.dtype}.")
    problems = []
    if x_adv.shape != x.shape:
        problems.append(f"shape {tuple(x_adv.shape)} instead of {tuple(x.shape)}")
    if x_adv.dtype != x.dtype:
        problems.append(f"dtype {x_adv.dtype} instead of {x.dtype}")
    if x_adv.device != x.device:
        problems.append(f"device {x_adv.device} instead of {x.device}")
    if problems:
        raise ValueError(f"attack {name!r} returned a tensor of {' and '.join(problems)}; an attack must return "
                         "x_adv with the input's shape, dtype and device. Fix the attack.")
    return x_adv


@dataclass(frozen=True)
class Screened:
    """The output with invalid samples replaced by the clean input, and per-sample findings (device tensors)."""

    x_adv: torch.Tensor
    invalid: torch.Tensor  # (N,) bool: not finite, out of bounds or outside the ball
    nonfinite: torch.Tensor  # (N,) bool
    norm_excess: torch.Tensor  # (N,) how far outside the ball (0 inside; 0 for non-finite samples)
    bounds_excess: torch.Tensor  # (N,) how far outside the pixel bounds


def norm_tolerance(threat: ThreatModel, x: torch.Tensor) -> float:
    """Absolute slack on the ball: relative ``REL_TOL`` plus the rounding of the images' dtype."""
    ulp = torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0
    per_pixel = ulp if threat.norm == "linf" else ulp * math.sqrt(x[0].numel())
    return threat.eps * REL_TOL + per_pixel + 1e-7


def screen_output(threat: ThreatModel, x: torch.Tensor, x_adv: torch.Tensor) -> Screened:
    """Judge every sample of ``x_adv`` against ``threat`` (no host sync); invalid samples become ``x``."""
    flat = x_adv.detach().reshape(x_adv.shape[0], -1).float()
    finite = torch.isfinite(flat).all(1)
    lo, hi = threat.bounds
    clean = torch.where(torch.isfinite(flat), flat, 0.0)
    bounds_excess = torch.maximum(lo - clean.amin(1), clean.amax(1) - hi).clamp(min=0)
    dist = flat_norm(clean - x.detach().reshape(x.shape[0], -1).float(), threat.norm)
    norm_excess = torch.where(finite, (dist - threat.eps).clamp(min=0), 0.0)
    invalid = ~finite | (norm_excess > norm_tolerance(threat, x)) | (bounds_excess > BOUNDS_TOL)
    safe = torch.where(invalid.view(-1, *([1] * (x.dim() - 1))), x, x_adv)
    return Screened(safe, invalid, ~finite, norm_excess, bounds_excess)


__all__ = ["BOUNDS_TOL", "REL_TOL", "Screened", "check_output_type", "norm_tolerance", "screen_output"]
