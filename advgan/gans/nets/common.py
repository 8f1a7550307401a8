"""Shared pieces of the GAN networks: spectral norm, weight init, normalisation layers, activations."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

NORMS = ("batch", "instance", "layer", "none")
OUT_ACTS = ("tanh", "sigmoid", "none")


def sn(layer: nn.Module, enabled: bool = True) -> nn.Module:
    """Wrap a Linear/Conv layer with spectral normalisation (one power iteration per forward) if ``enabled``."""
    if not enabled:
        return layer
    return nn.utils.parametrizations.spectral_norm(layer)


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral-normalise every Linear / Conv / ConvTranspose / Embedding weight of ``net`` in place."""
    for m in list(net.modules()):
        layer = isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding))
        if layer and not nn.utils.parametrize.is_parametrized(m, "weight"):
            nn.utils.parametrizations.spectral_norm(m)
    return net


def has_spectral_norm(net: nn.Module) -> bool:
    return any(nn.utils.parametrize.is_parametrized(m, "weight") for m in net.modules())


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """DCGAN/pix2pix init: conv/linear weights ~ N(0, gain) (or xavier/kaiming), norm weights ~ N(1, gain), biases 0."""
    if kind not in ("normal", "xavier", "kaiming", "default"):
        raise ValueError(f"unknown init {kind!r}; valid: normal, xavier, kaiming, default.")
    if kind == "default":
        return net
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            mod: Any = m
            w = mod.parametrizations.weight.original if nn.utils.parametrize.is_parametrized(m, "weight") else mod.weight
            if kind == "normal":
                nn.init.normal_(w, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(w, gain=1.0)
            else:
                nn.init.kaiming_normal_(w, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def check_choice_of(value: str, name: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}.")
    return value


def norm2d(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer by name (``batch``, ``instance``, ``layer`` = GroupNorm(1), ``none``)."""
    check_choice_of(kind, "norm", NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def norm1d(kind: str, features: int) -> nn.Module:
    check_choice_of(kind, "norm", NORMS)
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    return nn.Identity()  # instance norm makes no sense on vectors


def out_activation(kind: str) -> nn.Module:
    """Generator output: ``tanh`` (data in [-1, 1]), ``sigmoid`` ([0, 1]) or ``none`` (toy data)."""
    check_choice_of(kind, "out_act", OUT_ACTS)
    return {"tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[kind]


def check_shape(shape: Sequence[int], name: str) -> tuple[int, ...]:
    """A data shape: (D,) for vectors or (C, H, W) for images, all positive ints."""
    try:
        t = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple like (2,) or (1, 28, 28), got {shape!r}.") from None
    if len(t) not in (1, 3) or min(t) < 1:
        raise ValueError(f"{name} must be (D,) for vectors or (C, H, W) for images with positive sizes, got {shape!r}.")
    return t


def accepted_kwargs(fn, kwargs: dict) -> dict:
    """The subset of ``kwargs`` that ``fn``'s signature names (wrappers pass options on to a base net)."""
    import inspect

    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@contextlib.contextmanager
def fork_seed(seed: int | None) -> Iterator[None]:
    """Build networks with a fixed seed without touching the caller's global (CPU) RNG."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield
