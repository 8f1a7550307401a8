"""Networks of the GAN core, selectable by name (as timm's ``create_model``).

``create_net("dcgan_g", z_dim=64, out_shape=(1, 28, 28))`` builds a network; ``available_nets()`` lists
the names; ``register_net(name)`` is the decorator that adds one. Built-ins:

- ``mlp_g`` / ``mlp_d``: MLPs for toy (vector) data.
- ``dcgan_g`` / ``dcgan_d``: DCGAN-style conv nets for 28x28 and 32x32 images (1 or 3 channels).
- ``cond_mlp_g`` / ``cond_mlp_d`` / ``cond_dcgan_g`` / ``cond_dcgan_d`` / ``proj_dcgan_d`` / ``proj_mlp_d``:
  label-conditional variants (embedding concatenated to z / to D's input; projection discriminator).
- ``unet``: the pix2pix U-Net generator; ``patchgan``: the PatchGAN discriminator on (x, y) pairs.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

_NETS: dict[str, Callable[..., nn.Module]] = {}


def register_net(name: str) -> Callable:
    """Decorator: register a network class or factory under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a network name must be a non-empty string, got {name!r}.")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _NETS[name] = fn
        return fn

    return deco


def available_nets() -> list[str]:
    """Names accepted by :func:`create_net`."""
    return sorted(_NETS)


def create_net(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` with keyword arguments ``kwargs``."""
    if not isinstance(name, str) or name not in _NETS:
        raise ValueError(f"unknown network {name!r}; valid names: {', '.join(available_nets())}.")
    return _NETS[name](**kwargs)


def check_net_name(name: str, what: str = "network") -> str:
    """Raise ValueError (listing the valid names) unless ``name`` is registered."""
    if not isinstance(name, str) or name not in _NETS:
        raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(available_nets())}.")
    return name


# built-ins register themselves on import (keep these imports at the bottom)
from . import (  # noqa: E402
    common,  # noqa: E402,F401
    conditional,  # noqa: E402,F401
    dcgan,  # noqa: E402,F401
    encdec,  # noqa: E402,F401  (AdvGAN generator + discriminator)
    mlp,  # noqa: E402,F401
    patchgan,  # noqa: E402,F401
    unet,  # noqa: E402,F401
)

__all__ = ["register_net", "create_net", "available_nets", "check_net_name"]
