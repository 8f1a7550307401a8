"""Spatter: water drops (severities 1-3) or mud splashes (4-5) on the lens.

Both start from a blurred Gaussian noise layer whose peaks above a threshold are the drops. Water
drops are shaded by an embossed relief of the distance to the drop's rim (so they look like glossy
beads) and tinted pale turquoise; mud is an opaque brown mask. Parameters are the ImageNet-C values
(Hendrycks & Dietterich, 2019); blur sigmas are in pixels and grow above 224 px (``_ops.pixel_scale``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._ops import correlate, exact_dtype, gaussian_blur, normal, pad2d, pixel_scale, via_rgb

#: (noise mean, noise std, blur sigma, drop threshold, water strength or mud-mask sigma, 1 = mud)
SPATTER = (
    (0.65, 0.3, 4, 0.69, 0.6, 0),
    (0.65, 0.3, 3, 0.68, 0.6, 0),
    (0.65, 0.3, 2, 0.68, 0.5, 0),
    (0.65, 0.3, 1, 0.65, 1.5, 1),
    (0.67, 0.4, 1, 0.65, 1.5, 1),
)
WATER_RGB = (175 / 255, 238 / 255, 238 / 255)
MUD_RGB = (63 / 255, 42 / 255, 20 / 255)
#: the relief's distances are capped (pixels)
_CAP = 20
#: emboss kernel: light from the top left
_EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))


def _box3(x: torch.Tensor) -> torch.Tensor:
    """3 x 3 mean with mirrored borders."""
    return F.avg_pool2d(pad2d(x, 1, 1, "reflect101"), 3, stride=1)


def _row_distance(edge: torch.Tensor, cap: int) -> torch.Tensor:
    """Distance along each row to the nearest edge pixel (capped)."""
    w = edge.shape[-1]
    pos = torch.arange(w, device=edge.device, dtype=torch.long).expand_as(edge)
    far = torch.full_like(pos, -(10 * w + cap))
    left = torch.where(edge, pos, far).cummax(-1).values
    right = torch.where(edge.flip(-1), pos, far).cummax(-1).values.flip(-1)
    return torch.minimum(pos - left, (w - 1 - right) - pos).clamp_(max=cap)


def rim_distance(edge: torch.Tensor, cap: int = _CAP) -> torch.Tensor:
    """Euclidean distance to the nearest ``edge`` pixel, exact up to ``cap`` (larger values become ``cap``)."""
    g2 = _row_distance(edge, cap).to(torch.float32) ** 2
    n, c, h, w = g2.shape
    padded = F.pad(g2, (0, 0, cap, cap), value=float(cap * cap))
    best = g2.clone()
    for dy in range(-cap, cap + 1):
        if dy:
            torch.minimum(best, padded[..., cap + dy : cap + dy + h, :] + dy * dy, out=best)
    return best.sqrt_().clamp_(max=cap)


def _equalise(v: torch.Tensor, levels: int) -> torch.Tensor:
    """Per-image histogram equalisation of integer images with values in [0, levels) onto 0..255."""
    n = v.shape[0]
    flat = v.reshape(n, -1).long()
    hist = torch.zeros((n, levels), dtype=torch.long, device=v.device).scatter_add_(1, flat, torch.ones_like(flat))
    total = flat.shape[1]
    first = (hist > 0).long().argmax(1, keepdim=True)
    base = hist.gather(1, first)
    cum = hist.cumsum(1) - base
    fdt = exact_dtype(v.device)
    scale = 255.0 / (total - base).clamp_min(1).to(fdt)
    lut = torch.round(cum.to(fdt) * scale).clamp_(0, 255)
    lut = torch.where(base == total, first.to(lut.dtype).expand_as(lut), lut)
    return lut.gather(1, flat).view_as(v).to(v.dtype)


def water_relief(drops8: torch.Tensor) -> torch.Tensor:
    """Embossed, equalised distance-to-rim map (0..255) of 8-bit drop images (N, 1, H, W)."""
    inside = drops8 > 0
    out = (~inside).float()
    # the rim: drop pixels with a 4-neighbour outside the drop (a thin edge, like an edge detector's)
    near_out = (F.max_pool2d(out, (3, 1), stride=1, padding=(1, 0)) + F.max_pool2d(out, (1, 3), stride=1, padding=(0, 1))) > 0
    rim = inside & near_out
    dist = torch.floor(_box3(rim_distance(rim).to(drops8.dtype)))
    dist = _equalise(dist, _CAP + 1)
    emboss = torch.tensor(_EMBOSS, dtype=dist.dtype, device=dist.device)
    dist = torch.round(correlate(dist, emboss, "reflect101")).clamp_(0, 255)
    return _box3(dist)


def spatter(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Water drops (severity 1-3) or mud (4-5) on the lens."""
    loc, scale, sigma, thresh, strength, mud = SPATTER[severity - 1]
    n, _, h, w = x.shape
    s = pixel_scale(h, w)
    liquid = gaussian_blur(normal((n, 1, h, w), loc, scale, gen, x), sigma * s)
    liquid = torch.where(liquid < thresh, torch.zeros_like(liquid), liquid)
    if mud:
        mask = gaussian_blur((liquid > thresh).to(x.dtype), strength * s)
        mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
        colour = torch.tensor(MUD_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return via_rgb(x, lambda rgb: rgb * (1 - mask) + colour * mask)
    drops8 = torch.floor(liquid * 255)
    shade = drops8 * water_relief(drops8)
    shade = shade / shade.amax((2, 3), keepdim=True).clamp_min(1e-12) * strength
    colour = torch.tensor(WATER_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return via_rgb(x, lambda rgb: rgb + shade * colour)
