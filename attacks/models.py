"""Architectures by name: small built-in CNNs for tests and MNIST, and every timm model as fallback.

``create_module("small_cnn", num_classes=10, in_chans=1)`` returns a plain ``nn.Module`` mapping
normalized images to logits. Names not registered here are passed to ``timm.create_model``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return deco


def builtin_models() -> list[str]:
    return sorted(_REGISTRY)


def is_builtin(name: str) -> bool:
    return name in _REGISTRY


def builtin_factory(name: str) -> Callable[..., nn.Module] | None:
    """The function that builds built-in model ``name`` (None if there is none)."""
    return _REGISTRY.get(name)


def create_module(name: str, *, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    """Build an architecture by name: built-in first, then timm. Unknown names raise with suggestions."""
    if name in _REGISTRY:
        return _REGISTRY[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:4]}*")[:8] if len(name) >= 3 else []
        raise ValueError(
            f"unknown model {name!r}: not a built-in ({', '.join(builtin_models())}) nor a timm model. "
            f"{'Close timm names: ' + ', '.join(close) + '. ' if close else ''}List all with timm.list_models()."
        )
    return timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model("small_cnn")
def small_cnn(num_classes: int = 10, in_chans: int = 1, width: int = 32) -> nn.Module:
    """Model A of the AdvGAN paper's MNIST targets (conv-conv-pool-conv-conv-pool-fc-fc), any input size."""
    w = width
    return nn.Sequential(
        nn.Conv2d(in_chans, w, 3, padding=1), nn.ReLU(),
        nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(2 * w * 16, 200), nn.ReLU(), nn.Linear(200, num_classes),
    )


@register_model("tiny_cnn")
def tiny_cnn(num_classes: int = 10, in_chans: int = 1, width: int = 8) -> nn.Module:
    """A very small CNN for unit tests (trains to >90% on MNIST-5k in seconds)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, num_classes),
    )


@register_model("mlp")
def mlp(num_classes: int = 10, in_chans: int = 1, hidden: int = 256, image_size: int = 28) -> nn.Module:
    """Fully connected classifier (flattened input)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_chans * image_size * image_size, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
    )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def check_architecture(name: object, what: str = "architecture") -> str:
    """``name`` if it names a built-in or timm architecture, else ValueError listing valid ones (builds nothing)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be an architecture name (a string), got {name!r}.")
    if name in _REGISTRY:
        return name
    try:
        import timm
    except ImportError:
        raise ValueError(f"{what}: {name!r} is not a built-in model ({', '.join(builtin_models())}) and timm is not "
                         "installed.") from None
    if timm.is_model(name):
        return name
    close = timm.list_models(f"*{name[:4]}*")[:8] if len(name) >= 3 else []
    raise ValueError(
        f"{what}: unknown model {name!r}: not a built-in ({', '.join(builtin_models())}) nor a timm model. "
        f"{'Close timm names: ' + ', '.join(close) + '. ' if close else ''}List all with timm.list_models()."
    )
