"""Frost: the image seen through an iced window, with procedurally generated ice textures.

ImageNet-C blends the image with a crop of one of six photographs of frost. We ship no photographs:
each image gets a seeded texture made of two plasma fractals (``weather.plasma_fractal``), a cloudy
1/f^2 layer like the photographs' spectrum and a vein layer (thin ridges along the fractal's level
lines, like ice crystals' edges), coloured with one of six "styles". A style is the mean colour, the
per-channel spread and the size of one of the reference photographs (measured once from them; only
these numbers are kept). A crop of side s out of an L-sized 1/f^2 texture keeps only part of its
spread (the rest is a shift of the crop's mean); we reproduce that split with
``sqrt(log(s / 2) / log(L / 2))``.
"""
from __future__ import annotations

import math

import torch

from ._ops import exact_dtype, gaussian_blur, luma, normal
from .weather import next_pow2, plasma_fractal

#: (weight of the image, weight of the frost)
FROST = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
#: (mean R, G, B), (spread R, G, B), shorter side in pixels of the six reference frost photographs
FROST_STYLES = (
    ((0.305, 0.585, 0.650), (0.106, 0.065, 0.060), 600),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089), 315),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089), 315),
    ((0.540, 0.599, 0.648), (0.112, 0.112, 0.117), 350),
    ((0.441, 0.484, 0.529), (0.174, 0.170, 0.163), 495),
    ((0.280, 0.374, 0.410), (0.138, 0.168, 0.186), 323),
)
#: the reference enlarges its photographs by this factor before cropping
_ENLARGE = 1.1
#: share of the vein layer in the texture's variance budget
_VEIN_WEIGHT = 0.6


def _standardise(t: torch.Tensor) -> torch.Tensor:
    t = t - t.mean((-2, -1), keepdim=True)
    return t / t.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)


def frost_texture(n: int, h: int, w: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """(n, 3, h, w) seeded RGB frost textures in [0, 1] (one random style per image)."""
    size = max(2, next_pow2(max(h, w)))
    cloud = plasma_fractal(n, size, 2.0, gen, like)[:, None, :h, :w]
    level = plasma_fractal(n, size, 1.6, gen, like)[:, None, :h, :w]
    # veins: thin bright ridges where the second fractal crosses its median
    mid = level.flatten(1).median(dim=1).values.view(n, 1, 1, 1)
    veins = torch.exp(-(((level - mid) / 0.03) ** 2))
    veins = gaussian_blur(veins, 0.5)
    z = _standardise(_standardise(cloud) + _VEIN_WEIGHT * _standardise(veins))
    style = torch.randint(0, len(FROST_STYLES), (n,), generator=gen, device=like.device)
    means = torch.tensor([s[0] for s in FROST_STYLES], dtype=like.dtype, device=like.device)[style]
    spreads = torch.tensor([s[1] for s in FROST_STYLES], dtype=like.dtype, device=like.device)[style]
    sides = torch.tensor([s[2] for s in FROST_STYLES], dtype=exact_dtype(like.device), device=like.device)[style]
    crop = float(min(h, w))
    full = torch.maximum(sides, torch.full_like(sides, crop)) * _ENLARGE
    inside = (math.log(max(crop / 2, 1.0)) / torch.log(full / 2)).clamp(0, 1).sqrt().to(like.dtype)
    offset = normal((n, 1, 1, 1), 0.0, 1.0, gen, like) * (1 - inside**2).sqrt().view(n, 1, 1, 1)
    tex = means.view(n, 3, 1, 1) + spreads.view(n, 3, 1, 1) * (inside.view(n, 1, 1, 1) * z + offset)
    return tex.clamp_(0, 1)


def frost(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """a * x + b * frost texture (gray images get the texture's luma)."""
    keep, ice = FROST[severity - 1]
    n, c, h, w = x.shape
    tex = frost_texture(n, h, w, gen, x)
    if c == 1:
        tex = luma(tex)
    return keep * x + ice * tex
