"""DCGAN-style convolutional G / D for small images (28x28, 32x32, any H, W divisible by 4; 1 or 3 channels)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import register_net
from .common import apply_spectral_norm, check_shape, init_weights, norm2d, out_activation


def _levels(h: int, w: int) -> int:
    """Number of stride-2 levels: 2 for images up to 32 px, 3 above (sizes must divide by 2**levels)."""
    n = 2 if max(h, w) <= 32 else 3
    if h % (2 ** n) or w % (2 ** n):
        raise ValueError(f"DCGAN nets need H and W divisible by {2 ** n}, got {h}x{w} (28x28 and 32x32 work; "
                         "resize or pad the data, e.g. data.load(..., image_size=32)).")
    return n


@register_net("dcgan_g")
class DCGANGenerator(nn.Module):
    """z -> Linear -> (width*2^(L-1), H/2^L, W/2^L) -> L x [ConvTranspose(4, 2, 1), BN, ReLU] -> 3x3 conv -> out_act."""

    def __init__(self, z_dim: int = 64, out_shape: Sequence[int] = (1, 28, 28), width: int = 64, out_act: str = "tanh",
                 norm: str = "batch", in_extra: int = 0) -> None:
        super().__init__()
        if len(tuple(out_shape)) != 3:
            raise ValueError(f"dcgan_g makes images; out_shape must be (C, H, W), got {tuple(out_shape)}.")
        c, h, w = check_shape(out_shape, "out_shape")
        self.z_dim, self.out_shape = int(z_dim), (c, h, w)
        n = _levels(h, w)
        ch = width * 2 ** (n - 1)
        self.h0, self.w0, self.c0 = h // 2 ** n, w // 2 ** n, ch
        self.fc = nn.Sequential(nn.Linear(self.z_dim + in_extra, ch * self.h0 * self.w0), nn.BatchNorm1d(ch * self.h0 * self.w0)
                                if norm == "batch" else nn.Identity(), nn.ReLU())
        ups: list[nn.Module] = []
        for _ in range(n):
            ups += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=norm == "none"), norm2d(norm, ch // 2), nn.ReLU()]
            ch //= 2
        self.ups = nn.Sequential(*ups)
        self.out = nn.Sequential(nn.Conv2d(ch, c, 3, 1, 1), out_activation(out_act))
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.c0, self.h0, self.w0)
        return self.out(self.ups(h))


@register_net("dcgan_d")
class DCGANDiscriminator(nn.Module):
    """x -> L x [Conv(4, 2, 1), norm, LeakyReLU(0.2)] -> flatten -> Linear -> logit (N,).

    ``features(x)`` is the flattened conv output (used by the projection discriminator).
    ``norm="none"`` is the right choice with a gradient penalty (WGAN-GP penalises per-sample gradients).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), width: int = 64, spectral_norm: bool = False,
                 norm: str = "batch", in_extra_channels: int = 0) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"dcgan_d takes images; in_shape must be (C, H, W), got {tuple(in_shape)}.")
        c, h, w = check_shape(in_shape, "in_shape")
        self.in_shape = (c, h, w)
        n = _levels(h, w)
        layers: list[nn.Module] = []
        ch_in, ch = c + in_extra_channels, width
        for i in range(n):
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), norm2d(norm, ch) if i > 0 else nn.Identity(), nn.LeakyReLU(0.2)]
            ch_in, ch = ch, ch * 2
        self.body = nn.Sequential(*layers)
        self.feature_dim = ch_in * (h // 2 ** n) * (w // 2 ** n)
        self.head = nn.Linear(self.feature_dim, 1)
        init_weights(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)
