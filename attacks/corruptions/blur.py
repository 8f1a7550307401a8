"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur.

Radii and standard deviations are the ImageNet-C values in pixels (Hendrycks & Dietterich, 2019), used
as they are up to 224 px and grown with the image above it (``_ops.pixel_scale``); zoom factors are
relative to the image and need no scaling.
"""
from __future__ import annotations

import math

import torch

from ._ops import clipped_zoom, correlate, exact_dtype, gaussian_taps, motion, pixel_scale, separable, uniform
from ._ops import gaussian_blur as _gaussian

#: (disk radius, anti-aliasing sigma of the disk) in pixels
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
#: (blur sigma, largest pixel displacement, displacement rounds)
GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
#: (line radius, sigma of the one-sided Gaussian along the line) in pixels
MOTION = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
#: motion angles are uniform in this range (degrees from the horizontal)
MOTION_ANGLES = (-45.0, 45.0)
#: zoom factors (start, step, count): the blurred image averages the original and these zooms
ZOOM = ((1.0, 0.01, 12), (1.0, 0.01, 16), (1.0, 0.02, 11), (1.0, 0.02, 13), (1.0, 0.03, 11))
#: Gaussian sigma in pixels
GAUSSIAN_SIGMA = (1, 2, 3, 4, 6)


def disk_kernel(
    radius: float, alias_sigma: float, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A normalised disk of ``radius`` on a grid of at least 17 x 17, softened by a small Gaussian."""
    half = 8 if radius <= 8 else math.ceil(radius)
    t = torch.arange(-half, half + 1, dtype=torch.float64)  # built on the CPU, then moved
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).to(torch.float64)
    disk /= disk.sum()
    size = 3 if radius <= 8 else 5
    size = max(size, 2 * math.ceil(3 * alias_sigma) + 1) if alias_sigma > 1 else size
    u = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(u**2) / (2 * alias_sigma**2))
    g /= g.sum()
    return separable(disk[None, None], g, g, "reflect101")[0, 0].to(device=device, dtype=dtype)


def defocus_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Correlate with an anti-aliased disk (out-of-focus lens); mirrored borders."""
    radius, alias = DEFOCUS[severity - 1]
    s = pixel_scale(*x.shape[-2:])
    return correlate(x, disk_kernel(radius * s, alias * s, device=x.device, dtype=x.dtype), "reflect101")


def _jitter(x: torch.Tensor, delta: int, gen: torch.Generator) -> torch.Tensor:
    """Every pixel takes the value of a random pixel up to ``delta`` away (offsets in [-delta, delta - 1])."""
    n, c, h, w = x.shape
    dy = torch.randint(-delta, delta, (n, 1, h, w), generator=gen, device=x.device)
    dx = torch.randint(-delta, delta, (n, 1, h, w), generator=gen, device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, 1, h, 1) + dy).clamp_(0, h - 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, 1, w) + dx).clamp_(0, w - 1)
    src = (rows * w + cols).view(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, src).view(n, c, h, w)


def glass_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Blur, scramble pixels locally (frosted glass), blur again."""
    sigma, delta, rounds = GLASS[severity - 1]
    s = pixel_scale(*x.shape[-2:])
    y = _gaussian(x, sigma * s)
    for _ in range(rounds):
        y = _jitter(y, max(1, round(delta * s)), gen)
    return _gaussian(y, sigma * s)


def motion_blur(x: torch.Tensor, severity: int, gen: torch.Generator, *, angles: torch.Tensor | None = None) -> torch.Tensor:
    """Blur along a line at a random angle per image (``angles`` in degrees fixes them)."""
    radius, sigma = MOTION[severity - 1]
    s = pixel_scale(*x.shape[-2:])
    if angles is None:
        angles = uniform((x.shape[0],), *MOTION_ANGLES, gen, x.new_empty(0, dtype=exact_dtype(x.device)))
    return motion(x, max(1, round(radius * s)), sigma * s, angles.to(x.device))


def zoom_factors(severity: int) -> list[float]:
    start, step, count = ZOOM[severity - 1]
    delta = (start + step) - start  # numpy's arange rule, so the factors are bit-identical to the reference's
    return [start + i * delta for i in range(count)]


def zoom_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Average of the image and copies zoomed into its centre (camera moving towards the scene)."""
    factors = zoom_factors(severity)
    out = x.clone()
    for z in factors:
        out += clipped_zoom(x, z)
    return out.div_(len(factors) + 1)


def gaussian_blur(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur (edges replicated)."""
    s = pixel_scale(*x.shape[-2:])
    return _gaussian(x, GAUSSIAN_SIGMA[severity - 1] * s)


__all__ = ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur", "disk_kernel", "gaussian_taps"]
