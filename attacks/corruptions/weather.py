"""Weather corruptions: snow, fog and brightness (frost lives in ``frost.py``), plus the plasma fractal.

Parameters are the ImageNet-C values (Hendrycks & Dietterich, 2019). Fog and the snow layer are made
relative to the image (a fractal the size of the image; a zoom factor); the snow flakes' motion blur is in
pixels and grows above 224 px like the blurs (``_ops.pixel_scale``).
"""
from __future__ import annotations

import torch

from ._ops import clipped_zoom, exact_dtype, luma, motion, normal, pixel_scale, uniform

#: (mean, std of the flake noise, zoom, threshold, blur radius, blur sigma, weight of the original image)
SNOW = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
#: snowfall direction, degrees (downwards, up to 45 degrees off the vertical)
SNOW_ANGLES = (-135.0, -45.0)
#: (fog thickness, roughness decay of the fractal: larger is smoother)
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
#: added to the HSV value (brightness) channel
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)


def plasma_fractal(n: int, size: int, decay: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """(n, size, size) fractal height maps in [0, 1] by midpoint displacement (diamond-square) on a torus.

    ``size`` must be a power of two. Each level halves the grid step; new points are the mean of
    their four neighbours plus uniform noise whose amplitude shrinks by ``decay`` per level (the
    reference's roughness schedule: noise amplitude A^2 with A = 100, 100 / decay, ...).
    """
    if size & (size - 1):
        raise ValueError(f"plasma_fractal needs a power-of-two size, got {size}.")
    m = torch.zeros((n, size, size), dtype=like.dtype, device=like.device)
    step, amp = size, 100.0
    while step >= 2:
        half, k = step // 2, size // step
        corner = m[:, ::step, ::step]
        around = corner + corner.roll(-1, 1)
        around = around + around.roll(-1, 2)
        m[:, half::step, half::step] = around / 4 + uniform((n, k, k), -amp * amp, amp * amp, gen, like)
        centre = m[:, half::step, half::step]
        row_mid = corner + corner.roll(-1, 2) + centre + centre.roll(1, 1)  # points (i*step, j*step + half)
        m[:, ::step, half::step] = row_mid / 4 + uniform((n, k, k), -amp * amp, amp * amp, gen, like)
        col_mid = corner + corner.roll(-1, 1) + centre + centre.roll(1, 2)  # points (i*step + half, j*step)
        m[:, half::step, ::step] = col_mid / 4 + uniform((n, k, k), -amp * amp, amp * amp, gen, like)
        step, amp = half, amp / decay
    m -= m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def fog(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Add a smooth fractal haze, then rescale so the brightest pixel keeps its value's share."""
    thickness, decay = FOG[severity - 1]
    n, _, h, w = x.shape
    size = max(2, next_pow2(max(h, w)))
    haze = plasma_fractal(n, size, decay, gen, x)[:, None, :h, :w]
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + thickness * haze) * (peak / (peak + thickness))


def snow(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Falling snow: zoomed, thresholded noise motion-blurred downwards, over a paler image."""
    loc, scale, zoom, thresh, radius, sigma, keep = SNOW[severity - 1]
    n, c, h, w = x.shape
    s = pixel_scale(h, w)
    flakes = clipped_zoom(normal((n, 1, h, w), loc, scale, gen, x), zoom)
    flakes = torch.where(flakes < thresh, torch.zeros_like(flakes), flakes).clamp_(0, 1)
    angles = uniform((n,), *SNOW_ANGLES, gen, x.new_empty(0, dtype=exact_dtype(x.device)))
    flakes = motion(flakes, max(1, round(radius * s)), sigma * s, angles)
    flakes = torch.round(flakes * 255) / 255  # the flake layer is an 8-bit image in the reference
    gray = luma(x) if c == 3 else x
    pale = keep * x + (1 - keep) * torch.maximum(x, gray * 1.5 + 0.5)
    return pale + flakes + flakes.flip(-1, -2)


def brightness(x: torch.Tensor, severity: int, gen: torch.Generator) -> torch.Tensor:
    """Raise the HSV value by a constant, keeping hue and saturation (for 1 channel: add the constant)."""
    v = x.amax(1, keepdim=True)
    v_new = (v + BRIGHTNESS[severity - 1]).clamp_(max=1.0)
    # at fixed hue and saturation every RGB channel is proportional to the value
    ratio = v_new / v.clamp_min(torch.finfo(x.dtype).tiny)
    return torch.where(v > 0, x * ratio, v_new.expand_as(x))
