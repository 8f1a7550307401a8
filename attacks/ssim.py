"""SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility to
structural similarity"), batched in torch.

Per channel, local means, variances and the covariance are Gaussian-weighted averages (window 11,
σ = 1.5, normalised to sum 1) over the positions where the whole window fits ("valid"), with
C1 = (K1·L)², C2 = (K2·L)², K1 = 0.01, K2 = 0.03 and L the data range:

    SSIM(x, y) = ((2 μx μy + C1)(2 σxy + C2)) / ((μx² + μy² + C1)(σx² + σy² + C2))

averaged over positions and channels: one number per image. Images smaller than the window use the
largest odd window that fits (the same σ). Computed in float32 (float64 for float64 inputs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` taps (the 2-D window is its outer product)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _blur(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of (N, C, H, W), channel by channel."""
    c = z.shape[1]
    k = g.numel()
    z = F.conv2d(z, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(z, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window: int = WINDOW,
         sigma: float = SIGMA) -> torch.Tensor:
    """Per-image SSIM of two batches (N, C, H, W) -> (N,); 1 for identical images."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.shape != y.shape or x.dim() != 4:
        raise ValueError("ssim needs two image batches of the same shape (N, C, H, W).")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    size = min(window, x.shape[-2], x.shape[-1])
    size -= 1 - size % 2  # odd
    g = gaussian_window(size, sigma, dtype=dtype, device=x.device)
    a, b = x.detach().to(dtype), y.detach().to(dtype)
    with torch.autocast(device_type=x.device.type, enabled=False):
        mu_a, mu_b = _blur(a, g), _blur(b, g)
        var_a = _blur(a * a, g) - mu_a ** 2
        var_b = _blur(b * b, g) - mu_b ** 2
        cov = _blur(a * b, g) - mu_a * mu_b
        c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


__all__ = ["gaussian_window", "ssim"]
