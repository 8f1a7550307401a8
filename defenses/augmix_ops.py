"""AugMix's augmentation operations, batched in torch with one magnitude per image.

The nine operations of Hendrycks et al. (ICLR 2020, "AugMix"): autocontrast, equalize, posterize, solarize,
rotate, shear_x, shear_y, translate_x, translate_y. The paper leaves out the operations that overlap with
the ImageNet-C corruptions (contrast, brightness, color, sharpness), so that the test corruptions stay
unseen. Magnitudes follow the paper's convention: ``level`` in (0, severity] maps to at most 30 degrees,
a shear of 0.3, a shift of a third of the image, 4 bits of posterization and a threshold of 256 levels.

Every operation takes ``(x, level, sign)``: images (N, C, H, W) in [0, 1], a level per image (N,) and a
random sign per image (N,) for the geometric ones. Geometric operations resample bilinearly and fill with
black, as PIL does. No per-image Python loop: the geometric ones are one ``grid_sample`` for the batch.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Op = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _levels(x: torch.Tensor) -> torch.Tensor:
    """Pixels as integer levels 0..255 (long)."""
    return (x * 255).round().clamp(0, 255).long()


def autocontrast(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full range (no cut-off); flat channels are left alone."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    flat = hi - lo <= 1e-6
    return torch.where(flat, x, (x - lo) / (hi - lo).clamp_min(1e-6))


def equalize(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel on 256 levels (PIL's rule: step = (pixels - last bin) // 255)."""
    n, c, h, w = x.shape
    q = _levels(x).view(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, q, torch.ones_like(q))
    last = hist.gather(1, (q.amax(1, keepdim=True)))  # count of the highest level present
    step = (h * w - last) // 255
    before = hist.cumsum(1) - hist  # pixels below each level
    lut = ((before + step // 2) // step.clamp_min(1)).clamp_(0, 255)
    out = lut.gather(1, q).to(x.dtype) / 255
    return torch.where(step > 0, out, q.to(x.dtype) / 255).view(n, c, h, w)


def posterize(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Keep ``4 - int(level * 4 / 10)`` bits per channel."""
    bits = (4 - (level * 4 / 10).long()).clamp(1, 8)
    shift = (8 - bits).view(-1, 1, 1, 1)
    return ((_levels(x) >> shift) << shift).to(x.dtype) / 255


def solarize(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Invert the pixels at or above ``256 - int(level * 256 / 10)`` (of 255)."""
    thr = (256 - (level * 256 / 10).long()).view(-1, 1, 1, 1)
    q = _levels(x)
    return torch.where(q >= thr, 255 - q, q).to(x.dtype) / 255


def affine(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Resample with per-image pixel-space maps ``a`` (N, 2, 3): input (col, row) = a @ (col, row, 1)."""
    n, _, h, w = x.shape
    dt = torch.float64
    norm = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=dt, device=x.device)
    full = torch.cat((a.to(dt), torch.tensor([0, 0, 1], dtype=dt, device=x.device).expand(n, 1, 3)), dim=1)
    theta = (norm @ full @ torch.linalg.inv(norm))[:, :2]  # the same map in grid_sample's [-1, 1] coordinates
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _maps(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(2, 3, dtype=torch.float64, device=device).repeat(n, 1, 1)


def rotate_map(level: torch.Tensor, sign: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Rotation about the centre by ``sign * int(level * 30 / 10)`` degrees."""
    t = torch.deg2rad((level * 30 / 10).long().to(torch.float64) * sign.to(torch.float64))
    cos, sin = torch.cos(t), torch.sin(t)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = _maps(level.shape[0], level.device)
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = cos, -sin, sin, cos
    a[:, 0, 2] = cx - cos * cx + sin * cy
    a[:, 1, 2] = cy - sin * cx - cos * cy
    return a


def shear_x_map(level: torch.Tensor, sign: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Shear along x by ``sign * level * 0.3 / 10`` (PIL's (1, s, 0, 0, 1, 0) map)."""
    a = _maps(level.shape[0], level.device)
    a[:, 0, 1] = (level * 0.3 / 10).to(torch.float64) * sign.to(torch.float64)
    return a


def shear_y_map(level: torch.Tensor, sign: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Shear along y by ``sign * level * 0.3 / 10``."""
    a = _maps(level.shape[0], level.device)
    a[:, 1, 0] = (level * 0.3 / 10).to(torch.float64) * sign.to(torch.float64)
    return a


def translate_x_map(level: torch.Tensor, sign: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Shift along x by ``sign * int(level * (W / 3) / 10)`` pixels."""
    a = _maps(level.shape[0], level.device)
    a[:, 0, 2] = (level * (w / 3) / 10).long().to(torch.float64) * sign.to(torch.float64)
    return a


def translate_y_map(level: torch.Tensor, sign: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Shift along y by ``sign * int(level * (H / 3) / 10)`` pixels."""
    a = _maps(level.shape[0], level.device)
    a[:, 1, 2] = (level * (h / 3) / 10).long().to(torch.float64) * sign.to(torch.float64)
    return a


MapFn = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]
#: the geometric operations as per-image pixel maps: several of them resample in one ``grid_sample``
MAPS: dict[str, MapFn] = {"rotate": rotate_map, "shear_x": shear_x_map, "shear_y": shear_y_map,
                          "translate_x": translate_x_map, "translate_y": translate_y_map}


def geometric(name: str) -> Op:
    """The operation ``x -> resample(x, MAPS[name])``."""
    def op(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        return affine(x, MAPS[name](level.to(x.device), sign.to(x.device), x.shape[2], x.shape[3]))
    op.__name__ = name
    return op


rotate, shear_x, shear_y = geometric("rotate"), geometric("shear_x"), geometric("shear_y")
translate_x, translate_y = geometric("translate_x"), geometric("translate_y")


#: the paper's operations, by name
OPS: dict[str, Op] = {
    "autocontrast": autocontrast, "equalize": equalize, "posterize": posterize, "solarize": solarize,
    "rotate": rotate, "shear_x": shear_x, "shear_y": shear_y, "translate_x": translate_x, "translate_y": translate_y,
}

__all__ = ["MAPS", "OPS", "Op", "affine", "geometric", *OPS]
