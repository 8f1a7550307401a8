"""MLP generator / discriminator for vector data (the 2-D ring and grid, 1-D Gaussians) or flattened images."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import register_net
from .common import apply_spectral_norm, check_shape, norm1d, out_activation, prod


def mlp(in_dim: int, out_dim: int, width: int, depth: int, act: str = "relu", norm: str = "none") -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, then a linear output."""
    if depth < 1 or width < 1:
        raise ValueError(f"an MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}.")
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), norm1d(norm, width), nn.LeakyReLU(0.2) if act == "lrelu" else nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


@register_net("mlp_g")
class MLPGenerator(nn.Module):
    """z (N, z_dim) -> samples of ``out_shape`` (vector or image)."""

    def __init__(self, z_dim: int = 2, out_shape: Sequence[int] = (2,), width: int = 128, depth: int = 3,
                 out_act: str = "none", norm: str = "none", in_extra: int = 0) -> None:
        super().__init__()
        self.z_dim = int(z_dim)
        self.out_shape = check_shape(out_shape, "out_shape")
        self.body = mlp(self.z_dim + in_extra, prod(self.out_shape), width, depth, "relu", norm)
        self.act = out_activation(out_act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(z)).view(z.shape[0], *self.out_shape)


@register_net("mlp_d")
class MLPDiscriminator(nn.Module):
    """Samples of ``in_shape`` -> one logit each, shape (N,). ``features(x)`` is the last hidden layer."""

    def __init__(self, in_shape: Sequence[int] = (2,), width: int = 128, depth: int = 3, spectral_norm: bool = False,
                 norm: str = "none", in_extra: int = 0) -> None:
        super().__init__()
        self.in_shape = check_shape(in_shape, "in_shape")
        net = mlp(prod(self.in_shape) + in_extra, 1, width, depth, "lrelu", norm)
        self.body = net[:-1]
        self.head = net[-1]
        self.feature_dim = width
        if spectral_norm:
            apply_spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(x.shape[0], -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)
