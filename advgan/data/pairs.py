"""Paired-data builders for image-to-image translation: wrap any (image, label) dataset into (x, y) pairs.

``pairs.build("edges", train)`` -> a :class:`PairDataset` whose items are ``(x, y)``: ``x`` the input
the translator sees, ``y`` the original image it must produce. Tasks (``pairs.available()``):

- ``colorize``: x = luminance (0.299 R + 0.587 G + 0.114 B, 1 channel), y = the RGB image. On grayscale
  data there is no colour to recover: x == y (identity), so prefer another task there (a warning says so).
- ``edges``: x = Sobel gradient magnitude of the luminance, scaled per image to [0, 1]; with
  ``canny=True`` a "Canny-like" binary map (Gaussian blur, Sobel, non-maximum suppression along the
  gradient direction, double threshold ``low``/``high`` relative to the image's max, hysteresis).
- ``superres``: x = y downsampled by ``factor`` (area averaging) and upsampled back (bilinear) to full size.
- ``nextframe``: x = the image (frame t), y = frame t+1 = x shifted by ``(dx, dy)`` pixels and rotated by
  ``angle`` degrees (a fixed motion, so the mapping is learnable; zeros enter at the borders).

Images in ``[0, 1]``. For in-memory datasets (``.images``) all pairs are computed once, in batches.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..config import Integer

Transform = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_TASKS: dict[str, Callable[..., Transform]] = {}
_LUMA = (0.299, 0.587, 0.114)


def register_pair(name: str) -> Callable:
    """Decorator: register a builder ``fn(**options) -> (batch (N,C,H,W) -> (x, y))`` under ``name``."""
    def deco(fn: Callable[..., Transform]) -> Callable[..., Transform]:
        _TASKS[name] = fn
        return fn

    return deco


def available() -> list[str]:
    return sorted(_TASKS)


class PairDataset(Dataset):
    """Items ``(x, y)`` made from ``base``'s images by ``transform`` (a batch function)."""

    def __init__(self, base: Dataset, transform: Transform, name: str, precompute: bool | None = None, batch_size: int = 512) -> None:
        if len(base) == 0:  # type: ignore[arg-type]
            raise ValueError("the base dataset is empty.")
        self.base, self.transform, self.name = base, transform, name
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        if precompute is None:
            precompute = isinstance(getattr(base, "images", None), torch.Tensor)
        if precompute:
            xs, ys = [], []
            for batch in DataLoader(base, batch_size=batch_size):
                x, y = transform(_images(batch))
                xs.append(x)
                ys.append(y)
            self.x, self.y = torch.cat(xs).contiguous(), torch.cat(ys).contiguous()

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.x is not None and self.y is not None:
            return self.x[i], self.y[i]
        x, y = self.transform(_images(self.base[i]).unsqueeze(0))
        return x[0], y[0]

    @property
    def in_channels(self) -> int:
        return int(self[0][0].shape[0])

    @property
    def out_channels(self) -> int:
        return int(self[0][1].shape[0])

    def __repr__(self) -> str:
        return f"PairDataset({self.name!r}, n={len(self)}, x={tuple(self[0][0].shape)}, y={tuple(self[0][1].shape)})"


def _images(item: Any) -> torch.Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"the base dataset must yield float image tensors (or (image, label) pairs), got {type(x).__name__}.")
    if x.dim() not in (3, 4):
        raise ValueError(f"images must be (C, H, W), got shape {tuple(x.shape)}.")
    return x


def build(name: str, dataset: Dataset, **options: Any) -> PairDataset:
    """Wrap ``dataset`` into ``(x, y)`` pairs for task ``name`` (see ``available()``)."""
    if not isinstance(name, str) or name not in _TASKS:
        raise ValueError(f"unknown pair task {name!r}; valid: {', '.join(available())}.")
    precompute = options.pop("precompute", None)
    transform = _TASKS[name](**options)
    sample = _images(dataset[0])
    if float(sample.min()) < 0 or float(sample.max()) > 1:
        raise ValueError(f"images must be in [0, 1], got [{float(sample.min()):.3g}, {float(sample.max()):.3g}].")
    transform(sample.unsqueeze(0))          # fail early (wrong channels, sizes) before any bulk work
    if name == "colorize" and sample.shape[0] == 1:
        warnings.warn("colorize on grayscale data is the identity (x == y); use edges, superres or nextframe instead.",
                      stacklevel=2)
    return PairDataset(dataset, transform, name, precompute)


# ---------------------------------------------------------------------- image operations
def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W); RGB uses ITU-R 601 weights, 1 channel passes through."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"luminance needs 1 or 3 channels, got {x.shape[1]}.")
    return (x * torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _sobel(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=g.dtype, device=g.device)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)
    out = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    return out[:, :1], out[:, 1:]


def _gauss_blur(g: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=g.dtype, device=g.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    g = F.conv2d(F.pad(g, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(g, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def _per_image_max(m: torch.Tensor) -> torch.Tensor:
    return m.flatten(1).max(1).values.clamp_min(1e-8).view(-1, 1, 1, 1)


def sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of the luminance, scaled so each image's max is 1."""
    gx, gy = _sobel(luminance(x))
    m = torch.sqrt(gx ** 2 + gy ** 2)
    return m / _per_image_max(m)


def canny_like(x: torch.Tensor, low: float = 0.1, high: float = 0.3, sigma: float = 1.0) -> torch.Tensor:
    """Binary edge map: blur, Sobel, non-maximum suppression (4 directions), double threshold, hysteresis."""
    g = _gauss_blur(luminance(x), sigma) if sigma > 0 else luminance(x)
    gx, gy = _sobel(g)
    mag = torch.sqrt(gx ** 2 + gy ** 2)
    mag = mag / _per_image_max(mag)
    ang = torch.rad2deg(torch.atan2(gy, gx)) % 180
    p = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def nb(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]

    # neighbours along the gradient: 0° -> left/right, 45° -> diagonal, 90° -> up/down, 135° -> anti-diagonal
    d0 = (ang < 22.5) | (ang >= 157.5)
    d45 = (ang >= 22.5) & (ang < 67.5)
    d90 = (ang >= 67.5) & (ang < 112.5)
    n1 = torch.where(d0, nb(0, 1), torch.where(d45, nb(1, 1), torch.where(d90, nb(1, 0), nb(1, -1))))
    n2 = torch.where(d0, nb(0, -1), torch.where(d45, nb(-1, -1), torch.where(d90, nb(-1, 0), nb(-1, 1))))
    thin = mag * ((mag >= n1) & (mag >= n2))
    strong, weak = thin >= high, thin >= low
    for _ in range(max(h, w)):                  # hysteresis: grow strong edges through connected weak ones
        grown = weak & (F.max_pool2d(strong.float(), 3, 1, 1) > 0)
        if torch.equal(grown, strong):
            break
        strong = grown
    return strong.to(x.dtype)


def downsample_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-downsample by ``factor`` (ceil so any size works) and bilinear-upsample back to the input size."""
    h, w = x.shape[-2:]
    small = F.adaptive_avg_pool2d(x, (max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor))))
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def shift_rotate(x: torch.Tensor, dx: float, dy: float, angle: float) -> torch.Tensor:
    """Rotate by ``angle`` degrees about the centre, then shift by (dx, dy) pixels (right, down); zeros fill in."""
    n, _, h, w = x.shape
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    # affine_grid maps output coords to input coords (normalised to [-1, 1]): the inverse motion
    tx, ty = -2.0 * dx / w, -2.0 * dy / h
    theta = torch.tensor([[cos, sin, cos * tx + sin * ty], [-sin, cos, -sin * tx + cos * ty]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.unsqueeze(0).expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


# ---------------------------------------------------------------------- tasks
@register_pair("colorize")
def colorize() -> Transform:
    return lambda y: (luminance(y), y)


@register_pair("edges")
def edges(canny: bool = False, low: float = 0.1, high: float = 0.3, sigma: float = 1.0, threshold: float | None = None) -> Transform:
    """Sobel magnitude (``threshold`` binarises it), or ``canny=True`` for the Canny-like map."""
    if not 0 <= low <= high <= 1:
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}.")
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    if canny:
        return lambda y: (canny_like(y, low, high, sigma), y)
    if threshold is not None:
        return lambda y: ((sobel_edges(y) >= threshold).to(y.dtype), y)
    return lambda y: (sobel_edges(y), y)


@register_pair("superres")
def superres(factor: int = 4) -> Transform:
    Integer(2)(factor, "factor")
    return lambda y: (downsample_upsample(y, factor), y)


@register_pair("nextframe")
def nextframe(dx: float = 2.0, dy: float = 0.0, angle: float = 10.0) -> Transform:
    if dx == 0 and dy == 0 and angle == 0:
        raise ValueError("nextframe needs some motion: set dx, dy or angle.")
    return lambda x: (x, shift_rotate(x, dx, dy, angle))
