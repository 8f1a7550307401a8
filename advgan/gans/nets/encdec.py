"""AdvGAN's networks: the ResNet encoder–decoder generator and a small conv discriminator.

Generator (Xiao et al. 2018, after CycleGAN): ``c7s1-8, d16, d32, r32 x 4, u16, u8, c7s1-C`` with
instance norm and ReLU; ``width`` scales every layer (paper: 8). Output is ``tanh`` in [-1, 1]; the
attacker scales it to the budget (L-inf: ``eps * G(x)``). Any input size works: inputs are padded
to a multiple of 4 and the output is cropped back. With ``num_classes > 0`` the generator is
conditioned on a target class, fed as ``num_classes`` one-hot label maps concatenated to the input.

Discriminator (paper: ``C8, C16, C32, FC``): three stride-2 4x4 convolutions with instance norm and
LeakyReLU(0.2), then a 1x1 conv to one logit per patch (PatchGAN-style; losses average over patches).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...config import Integer
from . import register_net


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class CondInstanceNorm(nn.Module):
    """Instance norm whose scale and shift depend on the target class (conditional instance norm).

    Constant one-hot label maps concatenated to the input do NOT condition an instance-normalised
    network: after reflection padding and a conv they are constant per channel, and the norm subtracts
    them. Here the class picks the affine parameters instead. ``target`` is set by the generator.
    """

    def __init__(self, ch: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(ch, affine=False)
        self.embed = nn.Embedding(num_classes, 2 * ch)
        with torch.no_grad():
            self.embed.weight[:, :ch].fill_(1.0)
            self.embed.weight[:, ch:].zero_()
        self.target: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.target is None:
            raise RuntimeError("CondInstanceNorm used outside its generator's forward (no target set).")
        g, b = self.embed(self.target).chunk(2, dim=1)
        return self.norm(x) * g[:, :, None, None] + b[:, :, None, None]


def _norm(ch: int, num_classes: int) -> nn.Module:
    return CondInstanceNorm(ch, num_classes) if num_classes else nn.InstanceNorm2d(ch, affine=True)


class ResBlock(nn.Module):
    """Two 3x3 convs (reflection padding, instance norm) with an identity skip."""

    def __init__(self, ch: int, num_classes: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch, num_classes), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    """G(x [, target]) -> tanh output in [-1, 1] of the input's shape (``out_chans`` channels).

    Args:
        in_chans: image channels; out_chans: perturbation channels (default ``in_chans``).
        width: channels of the first layer (paper: 8); then 2x and 4x after each downsampling.
        n_blocks: residual blocks at the bottleneck (paper: 4).
        n_down: stride-2 downsamplings (paper: 2); channels double at each (``width * 2**i``).
        num_classes: > 0 for a target-conditioned generator (conditional instance norm: the target
            class sets every norm layer's scale and shift).
    """

    def __init__(self, in_chans: int = 1, out_chans: int | None = None, *, width: int = 8, n_blocks: int = 4,
                 num_classes: int = 0, n_down: int = 2) -> None:
        super().__init__()
        for name, v, lo in (("in_chans", in_chans, 1), ("width", width, 1), ("n_blocks", n_blocks, 0), ("num_classes", num_classes, 0),
                            ("n_down", n_down, 1)):
            Integer(lo)(v, name)
        out_chans = in_chans if out_chans is None else out_chans
        self.in_chans, self.out_chans, self.num_classes = in_chans, out_chans, num_classes
        self.width, self.n_down = width, n_down
        w = width
        k = num_classes
        chans = [w * 2 ** i for i in range(n_down + 1)]  # w, 2w, 4w (paper), then 8w, ... for large images

        def down(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, stride=2, padding=1), _norm(b, k), nn.ReLU(inplace=True)]

        def up(a: int, b: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), _norm(b, k), nn.ReLU(inplace=True)]

        self.net = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_chans, w, 7), _norm(w, k), nn.ReLU(inplace=True),
            *[m for a, b in zip(chans, chans[1:]) for m in down(a, b)],
            *[ResBlock(chans[-1], k) for _ in range(n_blocks)],
            *[m for a, b in zip(chans[::-1], chans[-2::-1]) for m in up(a, b)],
            nn.ReflectionPad2d(3), nn.Conv2d(w, out_chans, 7),
        )

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if target is None:
                raise ValueError("this generator is target-conditioned: pass target= (class indices).")
            if target.shape[0] != x.shape[0]:
                raise ValueError(f"target has {target.shape[0]} entries for {x.shape[0]} images.")
            cond = [m for m in self.net.modules() if isinstance(m, CondInstanceNorm)]
            for m in cond:
                m.target = target.long()
            try:
                xp, (h, w) = _pad_to(x, 2 ** self.n_down)
                return torch.tanh(self.net(xp)[..., :h, :w])
            finally:
                for m in cond:
                    m.target = None
        if target is not None:
            raise ValueError("this generator is not target-conditioned (num_classes=0); call it without target.")
        xp, (h, w) = _pad_to(x, 2 ** self.n_down)
        return torch.tanh(self.net(xp)[..., :h, :w])


class ConvDiscriminator(nn.Module):
    """Small PatchGAN-style discriminator: ``C(w), C(2w), C(4w)`` stride-2 convs, then one logit per patch.

    With ``num_classes > 0`` it also has an auxiliary classifier (AC-GAN style): a linear head on the
    globally pooled last features; ``D(x, with_aux=True)`` returns ``(patch logits, class logits)`` from one pass.
    """

    def __init__(self, in_chans: int = 1, *, width: int = 8, num_classes: int = 0) -> None:
        super().__init__()
        Integer(1)(width, "width")
        Integer(0)(num_classes, "num_classes")
        w = width
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w, affine=True), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.InstanceNorm2d(4 * w, affine=True), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 1, 1),
        )
        self.aux = nn.Linear(4 * w, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor, with_aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x, _ = _pad_to(x, 8)
        if not with_aux:
            return self.net(x)
        if self.aux is None:
            raise ValueError("this discriminator has no auxiliary classifier (num_classes=0).")
        h = self.net[:-1](x)  # the features before the patch logits
        return self.net[-1](h), self.aux(h.mean((2, 3)))


class UNetPerturbation(nn.Module):
    """The GAN core's U-Net (instance norm, no dropout, depth 3, tanh) as a perturbation generator,
    with the same optional target conditioning (one-hot label maps) as :class:`ResNetGenerator`."""

    def __init__(self, in_chans: int = 1, out_chans: int | None = None, *, width: int = 8, num_classes: int = 0,
                 depth: int = 3) -> None:
        super().__init__()
        from .unet import UNetGenerator

        self.in_chans, self.num_classes = in_chans, num_classes
        self.unet = UNetGenerator(in_chans + num_classes, in_chans if out_chans is None else out_chans, depth=depth,
                                  width=width, norm="instance", dropout=False, out_act="tanh")

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if target is None:
                raise ValueError("this generator is target-conditioned: pass target= (class indices).")
            onehot = F.one_hot(target.long(), self.num_classes).to(x.dtype)
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)
        elif target is not None:
            raise ValueError("this generator is not target-conditioned (num_classes=0); call it without target.")
        return self.unet(x)


@register_net("advgan_resnet")
def resnet_generator(in_chans: int = 1, out_chans: int | None = None, *, width: int = 8, n_blocks: int = 4,
                     num_classes: int = 0, n_down: int = 2) -> ResNetGenerator:
    """Factory for the net registry (name ``"advgan_resnet"``)."""
    return ResNetGenerator(in_chans, out_chans, width=width, n_blocks=n_blocks, num_classes=num_classes, n_down=n_down)


@register_net("advgan_unet")
def unet_perturbation(in_chans: int = 1, out_chans: int | None = None, *, width: int = 8, num_classes: int = 0) -> UNetPerturbation:
    """Factory for the net registry (name ``"advgan_unet"``)."""
    return UNetPerturbation(in_chans, out_chans, width=width, num_classes=num_classes)


@register_net("advgan_d")
def conv_discriminator(in_chans: int = 1, *, width: int = 8, num_classes: int = 0) -> ConvDiscriminator:
    """Factory for the net registry (name ``"advgan_d"``)."""
    return ConvDiscriminator(in_chans, width=width, num_classes=num_classes)
