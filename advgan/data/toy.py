"""Toy 2-D / 1-D distributions for the GAN core's mode-collapse benchmarks: ring8, grid25, gauss1d."""
from __future__ import annotations

import numpy as np
import torch

from .datasets import PointDataset, register_dataset


def ring_modes(k: int = 8, radius: float = 1.0) -> torch.Tensor:
    a = torch.arange(k, dtype=torch.float64) * (2 * np.pi / k)
    return torch.stack([radius * torch.cos(a), radius * torch.sin(a)], 1).float()


def grid_modes(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    c = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(c, c)


def _mixture(modes: torch.Tensor, std: float, n: int, seed: int, name: str) -> PointDataset:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, modes.shape[0], (n,), generator=g)
    pts = modes[idx] + std * torch.randn(n, modes.shape[1], generator=g)
    return PointDataset(pts, idx, modes, std, name)


@register_dataset("ring8")
def ring8(*, n_train: int = 100_000, n_test: int = 2_500, radius: float = 1.0, std: float = 0.01, seed: int = 0):
    """Mixture of 8 Gaussians on a circle (PacGAN's mode-collapse benchmark)."""
    m = ring_modes(8, radius)
    return _mixture(m, std, n_train, seed, "ring8"), _mixture(m, std, n_test, seed + 1, "ring8")


@register_dataset("grid25")
def grid25(*, n_train: int = 100_000, n_test: int = 2_500, spacing: float = 2.0, std: float = 0.05, seed: int = 0):
    """Mixture of 25 Gaussians on a 5x5 grid."""
    m = grid_modes(5, spacing)
    return _mixture(m, std, n_train, seed, "grid25"), _mixture(m, std, n_test, seed + 1, "grid25")


@register_dataset("gauss1d")
def gauss1d(*, n_train: int = 50_000, n_test: int = 2_500, mean: float = 0.0, std: float = 1.0, seed: int = 0):
    """A single 1-D Gaussian N(mean, std^2) (for the optimal-discriminator tests)."""
    m = torch.tensor([[float(mean)]])
    return _mixture(m, std, n_train, seed, "gauss1d"), _mixture(m, std, n_test, seed + 1, "gauss1d")
