"""Digital corruptions: contrast, elastic transform, pixelate and saturate (JPEG lives in ``jpeg.py``).

Parameters are the ImageNet-C values (Hendrycks & Dietterich, 2019). The elastic field's smoothness
and amplitude and the pixelation factor are relative to the image size, as in the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._ops import gaussian_taps, separable, uniform, via_rgb

#: factor applied to the distance from the per-channel mean
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
#: amplitude of the smoothed displacement field (250 * 0.05, ...)
ELASTIC_ALPHA = (12.5, 16.25, 21.25, 25.0, 30.0)
#: smoothing sigma and the largest raw displacement, as fractions of the image side
ELASTIC_SIGMA, ELASTIC_MAX = 0.01, 0.005
#: side of the low-resolution image, as a fraction of the original
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
#: HSV saturation s -> clip(a * s + b, 0, 1)
SATURATE = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))


def contrast(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Shrink every channel towards its mean."""
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean).mul_(CONTRAST[severity - 1]).add_(mean)


def elastic_transform(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Warp by a smoothed random displacement field (linear interpolation, mirrored borders)."""
    n, _, h, w = x.shape
    amp = ELASTIC_MAX * h
    field = uniform((n, 2, h, w), -amp, amp, gen, x)
    kv = gaussian_taps(ELASTIC_SIGMA * h, 3.0, device=x.device, dtype=x.dtype)
    kh = gaussian_taps(ELASTIC_SIGMA * w, 3.0, device=x.device, dtype=x.dtype)
    field = separable(field, kv, kh, "symmetric").mul_(ELASTIC_ALPHA[severity - 1])
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1) + field[:, 1]
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w) + field[:, 0]
    # pixel coordinates -> grid_sample's [-1, 1] with pixel edges at -1 and 1; reflection about the edges
    grid = torch.stack(((2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def box_weights(n_in: int, n_out: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_out, n_in) box-filter downsampling matrix: each output averages the inputs whose centres fall in its cell."""
    scale = n_in / n_out
    centre = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale  # built on the CPU, then moved
    pos = torch.arange(n_in, dtype=torch.float64) + 0.5
    t = (pos[None, :] - centre[:, None]) / scale
    wts = ((t > -0.5) & (t <= 0.5)).to(torch.float64)
    return (wts / wts.sum(1, keepdim=True).clamp_min(1)).to(device=device, dtype=dtype)


def nearest_index(n_in: int, n_out: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Source index of each output pixel for nearest-neighbour resizing (pixel centres mapped)."""
    idx = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).floor().long()
    return idx.clamp_(0, n_in - 1).to(device)


def pixelate(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Box-downsample to a fraction of the size, then upsample with nearest neighbours."""
    h, w = x.shape[-2:]
    f = PIXELATE[severity - 1]
    sh, sw = max(1, int(h * f)), max(1, int(w * f))
    small = box_weights(h, sh, device=x.device, dtype=x.dtype) @ x @ box_weights(w, sw, device=x.device, dtype=x.dtype).T
    small = small.index_select(-2, nearest_index(sh, h, device=x.device))
    return small.index_select(-1, nearest_index(sw, w, device=x.device))


def _saturate_rgb(x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    v = x.amax(1, keepdim=True)
    sat = (v - x.amin(1, keepdim=True)) / v.clamp_min(torch.finfo(x.dtype).tiny)
    sat = torch.where(v > 0, sat, torch.zeros_like(sat))
    new = (sat * a + b).clamp_(0, 1)
    # at fixed hue and value, every channel's distance below the value is proportional to the saturation
    coloured = v - (v - x) * (new / sat.clamp_min(torch.finfo(x.dtype).tiny))
    # a gray pixel has hue 0 (red) in HSV: raising its saturation keeps R and lowers G and B
    red = torch.cat((v, v * (1 - new), v * (1 - new)), dim=1)
    return torch.where(sat > 0, coloured, red)


def saturate(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Scale and shift the HSV saturation (1-channel images: as gray RGB, read back as luma)."""
    a, b = SATURATE[severity - 1]
    return via_rgb(x, lambda rgb: _saturate_rgb(rgb, a, b))
