"""Label-conditional networks: ``G(z, y)`` and ``D(x, y)``.

- Generators concatenate a learned label embedding to z (``cond_mlp_g``, ``cond_dcgan_g``).
- ``cond_mlp_d`` concatenates the embedding to the flattened input; ``cond_dcgan_d`` broadcasts it to
  extra input channels (the classic cGAN of Mirza & Osindero, in conv form).
- ``proj_mlp_d`` / ``proj_dcgan_d`` are projection discriminators (Miyato & Koyama 2018):
  ``D(x, y) = w·φ(x) + b + <embed(y), φ(x)>``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...config import Integer
from . import register_net
from .common import accepted_kwargs, apply_spectral_norm
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator


def _check_classes(num_classes: int) -> int:
    return Integer(2)(num_classes, "num_classes")


class _CondGenerator(nn.Module):
    base: type

    def __init__(self, z_dim: int, out_shape: Sequence[int], num_classes: int, embed_dim: int = 16, **kw) -> None:
        super().__init__()
        self.num_classes = _check_classes(num_classes)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = self.base(z_dim=z_dim, out_shape=out_shape, in_extra=embed_dim, **accepted_kwargs(self.base, kw))
        self.z_dim, self.out_shape = self.net.z_dim, self.net.out_shape

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.embed(y)], 1))


@register_net("cond_mlp_g")
class CondMLPGenerator(_CondGenerator):
    """MLP generator on [z, embed(y)]."""

    base = MLPGenerator

    def __init__(self, z_dim: int = 2, out_shape: Sequence[int] = (2,), num_classes: int = 10, embed_dim: int = 16, **kw) -> None:
        super().__init__(z_dim, out_shape, num_classes, embed_dim, **kw)


@register_net("cond_dcgan_g")
class CondDCGANGenerator(_CondGenerator):
    """DCGAN generator on [z, embed(y)]."""

    base = DCGANGenerator

    def __init__(self, z_dim: int = 64, out_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, embed_dim: int = 16, **kw) -> None:
        super().__init__(z_dim, out_shape, num_classes, embed_dim, **kw)


@register_net("cond_mlp_d")
class CondMLPDiscriminator(nn.Module):
    """MLP discriminator on [flatten(x), embed(y)]."""

    def __init__(self, in_shape: Sequence[int] = (2,), num_classes: int = 10, embed_dim: int = 16,
                 spectral_norm: bool = False, **kw) -> None:
        super().__init__()
        self.num_classes = _check_classes(num_classes)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = MLPDiscriminator(in_shape, in_extra=embed_dim, **accepted_kwargs(MLPDiscriminator, kw))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.body(torch.cat([x.reshape(x.shape[0], -1), self.embed(y)], 1))).squeeze(1)


@register_net("cond_dcgan_d")
class CondDCGANDiscriminator(nn.Module):
    """DCGAN discriminator whose input is x with embed(y) broadcast as ``embed_dim`` extra channels."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, embed_dim: int = 8,
                 spectral_norm: bool = False, **kw) -> None:
        super().__init__()
        self.num_classes = _check_classes(num_classes)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = DCGANDiscriminator(in_shape, in_extra_channels=embed_dim, **accepted_kwargs(DCGANDiscriminator, kw))
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.embed(y)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return self.net(torch.cat([x, e], 1))


class _ProjectionD(nn.Module):
    def __init__(self, body: nn.Module, num_classes: int, spectral_norm: bool) -> None:
        super().__init__()
        self.num_classes = _check_classes(num_classes)
        self.body: Any = body                           # any net with .features(x) and .head
        feature_dim: Any = body.feature_dim
        self.embed = nn.Embedding(num_classes, int(feature_dim))
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.body.features(x)
        return self.body.head(phi).squeeze(1) + (self.embed(y) * phi).sum(1)


@register_net("proj_mlp_d")
class ProjMLPDiscriminator(_ProjectionD):
    """Projection discriminator with an MLP body."""

    def __init__(self, in_shape: Sequence[int] = (2,), num_classes: int = 10, spectral_norm: bool = False, **kw) -> None:
        super().__init__(MLPDiscriminator(in_shape, **accepted_kwargs(MLPDiscriminator, kw)), num_classes, spectral_norm)


@register_net("proj_dcgan_d")
class ProjDCGANDiscriminator(_ProjectionD):
    """Projection discriminator with a DCGAN conv body."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, spectral_norm: bool = False, **kw) -> None:
        super().__init__(DCGANDiscriminator(in_shape, **accepted_kwargs(DCGANDiscriminator, kw)), num_classes, spectral_norm)
