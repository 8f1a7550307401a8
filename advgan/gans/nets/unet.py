"""The pix2pix U-Net generator, sized to its input.

``depth`` stride-2 encoder levels (Conv 4x4, norm, LeakyReLU 0.2) mirrored by decoder levels
(ReLU, ConvTranspose 4x4, norm, dropout 0.5 on the innermost three as in pix2pix) with skip
connections that concatenate encoder features. H and W must divide by ``2**depth``; with
``pad=True`` (default) other sizes are reflect-padded up to the next multiple and the output is
cropped back, so 28x28 MNIST works with depth 3 (padded to 32x32).
Dropout is active in train mode only (the model is put in eval mode for ``translate``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...config import Integer
from . import register_net
from .common import NORMS, check_choice_of, init_weights, norm2d, out_activation


@register_net("unet")
class UNetGenerator(nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 1, depth: int = 4, width: int = 64,
                 max_width: int = 512, norm: str = "batch", dropout: bool = True, out_act: str = "tanh",
                 pad: bool = True) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("depth", depth), ("width", width)):
            Integer(1)(v, name)
        if depth > 8:
            raise ValueError(f"depth must be <= 8 (pix2pix uses 8 for 256x256 images), got {depth}.")
        check_choice_of(norm, "norm", NORMS)
        self.in_channels, self.out_channels, self.depth, self.pad = in_channels, out_channels, depth, bool(pad)
        c = [min(width * 2 ** i, max_width) for i in range(depth)]
        self.enc = nn.ModuleList()
        for i in range(depth):
            cin = in_channels if i == 0 else c[i - 1]
            use_norm = 0 < i < depth - 1                       # none on the outermost and innermost levels
            self.enc.append(nn.Sequential(
                nn.Conv2d(cin, c[i], 4, 2, 1, bias=not use_norm or norm == "none"),
                norm2d(norm, c[i]) if use_norm else nn.Identity(),
                nn.LeakyReLU(0.2) if i < depth - 1 else nn.ReLU(),
            ))
        self.dec = nn.ModuleList()
        n_drop = min(3, depth - 1)
        for i in range(depth):
            cin = c[i] if i == depth - 1 else 2 * c[i]
            if i == 0:
                self.dec.append(nn.Sequential(nn.ConvTranspose2d(cin, out_channels, 4, 2, 1), out_activation(out_act)))
            else:
                layers: list[nn.Module] = [nn.ConvTranspose2d(cin, c[i - 1], 4, 2, 1, bias=norm == "none"), norm2d(norm, c[i - 1])]
                if dropout and i >= depth - n_drop:
                    layers.append(nn.Dropout(0.5))
                layers.append(nn.ReLU())
                self.dec.append(nn.Sequential(*layers))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"unet expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}.")
        h, w = x.shape[-2:]
        m = 2 ** self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            if not self.pad:
                raise ValueError(f"unet with depth {self.depth} needs H and W divisible by {m}, got {h}x{w}; "
                                 "use pad=True or a smaller depth.")
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
        u = skips[-1]
        for i in range(self.depth - 1, -1, -1):
            u = self.dec[i](u)
            if i > 0:
                u = torch.cat([u, skips[i - 1]], 1)
        if ph or pw:
            u = u[..., ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]
        return u
