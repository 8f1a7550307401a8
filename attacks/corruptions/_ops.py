"""Batched tensor building blocks shared by the corruptions (torch only, any device, any image size).

Images are (N, C, H, W) float tensors. Borders are handled by index maps, so a filter may be larger
than the image (a 21-tap blur on a 8x8 image works). Three border rules are used, named after what
they repeat at the edge ``| a b c d |``:

* ``"replicate"``  ``a a | a b c d | d d`` (scipy ``nearest``)
* ``"reflect101"`` ``c b | a b c d | c b`` (OpenCV's default border, scipy ``mirror``)
* ``"symmetric"``  ``b a | a b c d | d c`` (scipy ``reflect``)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

BORDERS = ("replicate", "reflect101", "symmetric")
#: ITU-R BT.601 luma weights (R, G, B): how colour corruptions are read back on 1-channel images
LUMA = (0.299, 0.587, 0.114)
#: the image side the ImageNet-C parameters were made for
REFERENCE_SIDE = 224


def exact_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (not on Apple's MPS): angles and per-image tap positions."""
    return torch.float32 if device.type == "mps" else torch.float64


def pixel_scale(h: int, w: int) -> float:
    """Factor for parameters given in pixels: 1 up to 224 px (the reference's values), then side / 224."""
    return max(1.0, min(h, w) / REFERENCE_SIDE)


def border_index(n: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Indices into [0, n) for positions -before .. n + after - 1 under a border rule."""
    i = torch.arange(-before, n + after, device=device)
    if mode == "replicate" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect101":
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    if mode == "symmetric":
        period = 2 * n
        i = i.remainder(period)
        return torch.where(i >= n, period - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}; valid: {', '.join(BORDERS)}")


def _pad_dim(x: torch.Tensor, p: int, dim: int, mode: str) -> torch.Tensor:
    n = x.shape[dim]
    if mode == "replicate" or (mode == "symmetric" and p <= n):
        first, last = x.narrow(dim, 0, 1), x.narrow(dim, n - 1, 1)
        if mode == "replicate":
            shape = list(x.shape)
            shape[dim] = p
            return torch.cat((first.expand(shape), x, last.expand(shape)), dim)
        return torch.cat((x.narrow(dim, 0, p).flip(dim), x, x.narrow(dim, n - p, p).flip(dim)), dim)
    if mode == "reflect101" and p < n:
        return torch.cat((x.narrow(dim, 1, p).flip(dim), x, x.narrow(dim, n - 1 - p, p).flip(dim)), dim)
    return x.index_select(dim, border_index(n, p, p, mode, x.device))  # pads larger than the image


def pad2d(x: torch.Tensor, ph: int, pw: int, mode: str) -> torch.Tensor:
    """Pad the last two dims by ``ph`` rows and ``pw`` columns on each side (any size, any border rule)."""
    if mode not in BORDERS:
        raise ValueError(f"unknown border mode {mode!r}; valid: {', '.join(BORDERS)}")
    if ph:
        x = _pad_dim(x, ph, x.dim() - 2, mode)
    if pw:
        x = _pad_dim(x, pw, x.dim() - 1, mode)
    return x


def gaussian_taps(
    sigma: float, truncate: float = 4.0, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (the scipy/skimage convention)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)  # built on the CPU, then moved
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (k / k.sum()).to(device=device, dtype=dtype)


def separable(x: torch.Tensor, kv: torch.Tensor | None, kh: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Correlate every channel with the column kernel ``kv`` then the row kernel ``kh`` (odd lengths)."""
    n, c, h, w = x.shape
    y = x.reshape(1, n * c, h, w)
    if kv is not None and kv.numel() > 1:
        r = kv.numel() // 2
        weight = kv.to(x).view(1, 1, -1, 1).expand(n * c, 1, -1, 1)
        y = F.conv2d(pad2d(y, r, 0, mode), weight, groups=n * c)
    if kh is not None and kh.numel() > 1:
        r = kh.numel() // 2
        weight = kh.to(x).view(1, 1, 1, -1).expand(n * c, 1, 1, -1)
        y = F.conv2d(pad2d(y, 0, r, mode), weight, groups=n * c)
    return y.reshape(n, c, h, w)


def gaussian_blur(x: torch.Tensor, sigma: float, *, mode: str = "replicate", truncate: float = 4.0) -> torch.Tensor:
    """Per-channel Gaussian blur with scipy's kernel (``skimage.filters.gaussian`` semantics)."""
    if sigma <= 0:
        return x
    k = gaussian_taps(sigma, truncate, device=x.device, dtype=x.dtype)
    return separable(x, k, k, mode)


def _fast_len(n: int) -> int:
    """Smallest m >= n whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def correlate(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """``out[p] = sum_d kernel[r + d] * x[p + d]`` for a square (2r+1)^2 kernel, via FFT.

    ``kernel`` is (kh, kw) for all images or (N, kh, kw), one per image (motion blur).
    """
    n, c, h, w = x.shape
    k = kernel.to(x.dtype)
    if k.dim() == 2:
        k = k.unsqueeze(0)
    r = k.shape[-1] // 2
    if r == 0:
        return x * k.view(-1, 1, 1, 1)
    xp = pad2d(x, r, r, mode)
    size = (_fast_len(h + 2 * r), _fast_len(w + 2 * r))
    # convolution with the flipped kernel, its centre rolled to the origin, is the correlation
    kf = torch.zeros((k.shape[0], *size), dtype=x.dtype, device=x.device)
    kf[:, : 2 * r + 1, : 2 * r + 1] = k.flip(-1, -2)
    kf = torch.roll(kf, shifts=(-r, -r), dims=(-2, -1))
    spec = torch.fft.rfft2(xp, s=size)
    spec *= torch.fft.rfft2(kf).unsqueeze(1)
    out: torch.Tensor = torch.fft.irfft2(spec, s=size)
    return out[..., r : r + h, r : r + w].contiguous()


def line_taps(
    radius: int, sigma: float, angles: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image motion taps: integer offsets ``oy, ox`` (N, 2R+1) and weights (N, 2R+1).

    Tap i (i = 0 .. 2*radius) samples the pixel ``round(i * (sin a, cos a))`` away along the line at
    ``angles`` (degrees) with weight exp(-i^2 / 2 sigma^2), normalised over all taps: a one-sided
    Gaussian. Taps that reach as far as the image side are dropped, with every later tap, as the
    reference does (its kernel then sums to less than one).
    """
    width = 2 * radius + 1
    fdt = exact_dtype(angles.device)
    a = torch.deg2rad(angles.to(fdt))
    py, px = width * torch.sin(a), width * torch.cos(a)
    hyp = torch.hypot(py, px)
    i = torch.arange(width, dtype=fdt, device=angles.device)
    oy = torch.ceil(i[None] * py[:, None] / hyp[:, None] - 0.5).long()  # (N, width)
    ox = torch.ceil(i[None] * px[:, None] / hyp[:, None] - 0.5).long()
    wts = torch.exp(-(i**2) / (2 * float(sigma) ** 2))
    wts = (wts / wts.sum()).expand(angles.shape[0], width)
    ok = ((oy.abs() < h) & (ox.abs() < w)).long().cummin(dim=1).values.bool()
    return oy, ox, torch.where(ok, wts, torch.zeros_like(wts))


def _taps_to_kernel(oy: torch.Tensor, ox: torch.Tensor, wts: torch.Tensor, reach: int) -> torch.Tensor:
    side = 2 * reach + 1
    kern = torch.zeros(oy.shape[0], side * side, dtype=wts.dtype, device=oy.device)
    flat = (oy + reach) * side + (ox + reach)
    for t in range(oy.shape[1]):  # one scatter per tap: no two writes collide, so it is deterministic everywhere
        kern.scatter_add_(1, flat[:, t : t + 1], wts[:, t : t + 1])
    return kern.view(-1, side, side)


def _taps_gather(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, wts: torch.Tensor, reach: int) -> torch.Tensor:
    """Sum of per-image shifted copies (edges replicated): one gather per tap."""
    n, c, h, w = x.shape
    xp = pad2d(x, reach, reach, "replicate").reshape(n, c, -1)
    wp = w + 2 * reach
    grid = (torch.arange(h, device=x.device).view(h, 1) * wp + torch.arange(w, device=x.device).view(1, w)).view(1, 1, -1)
    start = (reach + oy) * wp + (reach + ox)
    wts = wts.to(x.dtype)
    out = torch.zeros((n, c, h * w), dtype=x.dtype, device=x.device)
    buf = torch.empty_like(out)
    for t in range(oy.shape[1]):
        torch.gather(xp, 2, (start[:, t].view(n, 1, 1) + grid).expand(n, c, -1), out=buf)
        out.addcmul_(buf, wts[:, t].view(n, 1, 1))
    return out.view(n, c, h, w)


def motion(x: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """Motion blur of every image along its own angle; edges replicated.

    Small images sum shifted copies (one gather per tap); large ones use one FFT with per-image kernels.
    """
    h, w = x.shape[-2:]
    oy, ox, wts = line_taps(radius, sigma, angles.to(x.device), h, w)
    reach = int(max(oy.abs().max(), ox.abs().max()))
    if h * w <= 128 * 128:
        return _taps_gather(x, oy, ox, wts, reach)
    return correlate(x, _taps_to_kernel(oy, ox, wts, reach).to(x.dtype), "replicate")


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by ``factor`` (>= 1): crop ceil(side / factor), resize linearly, keep the top-left H x W."""
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    oh, ow = max(round(ch * factor), h), max(round(cw * factor), w)
    out = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)
    return out[..., :h, :w]


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) BT.601 luma."""
    wts = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * wts).sum(1, keepdim=True)


def via_rgb(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply an RGB-defined ``fn`` to 1-channel images as gray RGB and read the result back as luma."""
    if x.shape[1] == 3:
        return fn(x)
    return luma(fn(x.expand(-1, 3, -1, -1)))


def uniform(shape: Sequence[int], lo: float, hi: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform samples in [lo, hi) from ``gen`` on ``like``'s device and dtype."""
    u = torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype)
    return u.mul_(hi - lo).add_(lo)


def normal(shape: Sequence[int], mean: float, std: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Gaussian samples from ``gen`` on ``like``'s device and dtype."""
    z = torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)
    return z.mul_(std).add_(mean)
