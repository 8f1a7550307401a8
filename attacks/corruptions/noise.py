"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt & pepper) and speckle noise.

Each pixel of each channel gets its own draw, on a 1-channel image too (a gray sensor's noise).
Severity parameters are those of ImageNet-C (Hendrycks & Dietterich, 2019); they do not depend on the
image size because the noise is per pixel.
"""
from __future__ import annotations

import torch

from ._ops import normal, uniform

#: standard deviation of the additive Gaussian noise
GAUSSIAN_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
#: photons per unit intensity (fewer photons: stronger shot noise)
SHOT_PHOTONS = (60, 25, 12, 5, 3)
#: fraction of values replaced by 0 or 1 (half each)
IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
#: standard deviation of the multiplicative noise
SPECKLE_STD = (0.15, 0.2, 0.35, 0.45, 0.6)


def gaussian_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """x + N(0, s^2)."""
    return normal(x.shape, 0.0, GAUSSIAN_STD[severity - 1], gen, x).add_(x)


def shot_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Poisson(x * photons) / photons: noise that grows with the intensity."""
    photons = float(SHOT_PHOTONS[severity - 1])
    rate = (x * photons).float()  # torch.poisson has no half-precision kernels
    return torch.poisson(rate, generator=gen).to(x.dtype).div_(photons)


def impulse_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Each value independently becomes 1 (salt) with probability amount/2, 0 (pepper) with amount/2."""
    amount = IMPULSE_AMOUNT[severity - 1]
    u = uniform(x.shape, 0.0, 1.0, gen, x)
    out = torch.where(u < amount, (u < amount / 2).to(x.dtype), x)
    return out


def speckle_noise(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """x + x * N(0, s^2): noise proportional to the intensity."""
    return normal(x.shape, 0.0, SPECKLE_STD[severity - 1], gen, x).mul_(x).add_(x)
