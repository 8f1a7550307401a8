"""The PatchGAN discriminator of pix2pix: it classifies each overlapping patch of the (x, y) pair.

Input ``torch.cat([x, y], 1)``; layers Conv 4x4 stride 2 (LeakyReLU 0.2; no norm on the first),
``n_layers - 1`` more stride-2 convs with norm, one stride-1 conv, and a 1-channel stride-1 conv.
``n_layers=3`` is the 70x70 PatchGAN of the paper; smaller images want fewer layers (28x28 MNIST:
``n_layers=2`` gives 34x34 patches on a 5x5 grid of logits). Output: logits (N, 1, h, w).
"""
from __future__ import annotations

import torch
from torch import nn

from ...config import Integer
from . import register_net
from .common import NORMS, apply_spectral_norm, check_choice_of, init_weights, norm2d


def receptive_field(n_layers: int) -> int:
    """Patch size seen by one output logit."""
    rf = 1
    for k, s in [(4, 1), (4, 1)] + [(4, 2)] * n_layers:   # walked from the output back to the input
        rf = (rf - 1) * s + k
    return rf


@register_net("patchgan")
class PatchGANDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 2, width: int = 64, n_layers: int = 3, norm: str = "batch",
                 spectral_norm: bool = False, max_width: int = 512) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("width", width), ("n_layers", n_layers)):
            Integer(1)(v, name)
        check_choice_of(norm, "norm", NORMS)
        self.in_channels, self.n_layers = in_channels, n_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for i in range(1, n_layers):
            nxt = min(width * 2 ** i, max_width)
            layers += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=norm == "none"), norm2d(norm, nxt), nn.LeakyReLU(0.2)]
            ch = nxt
        nxt = min(width * 2 ** n_layers, max_width)
        layers += [nn.Conv2d(ch, nxt, 4, 1, 1, bias=norm == "none"), norm2d(norm, nxt), nn.LeakyReLU(0.2),
                   nn.Conv2d(nxt, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        init_weights(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def min_size(self) -> int:
        """Smallest H (and W) this discriminator accepts."""
        return 2 ** self.n_layers * 3

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        inp = x if y is None else torch.cat([x, y], 1)
        if inp.dim() != 4 or inp.shape[1] != self.in_channels:
            raise ValueError(f"patchgan expects (N, {self.in_channels}, H, W) (x and y concatenated), got {tuple(inp.shape)}.")
        if min(inp.shape[-2:]) < self.min_size():
            raise ValueError(f"patchgan with n_layers={self.n_layers} needs H, W >= {self.min_size()}, got "
                             f"{tuple(inp.shape[-2:])}; use fewer layers.")
        return self.net(inp)
