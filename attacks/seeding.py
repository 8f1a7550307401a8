"""Seeding helpers shared by every randomized attack (a generator per call; the global RNG when unseeded).

A ``torch.Generator`` on the input's device, seeded per call, makes the same attack on the same inputs
give the same result. ``seed=None`` draws from torch's global RNG instead (which training loops
checkpoint, so a resumed run continues the same stream). Re-exported from ``attacks.noise``.
"""
from __future__ import annotations

import torch


def check_seed(seed: object) -> int | None:
    """``seed`` must be an int (or None); returns it."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} ({seed!r}).")
    if not -(2 ** 63) <= seed < 2 ** 64:
        raise ValueError(f"seed must fit in 64 bits (-2**63 <= seed < 2**64), got {seed}.")
    return seed


def make_generator(device: torch.device | str, seed: int | None) -> torch.Generator | None:
    """A torch.Generator on ``device`` seeded with ``seed`` (``None`` -> the global RNG is used)."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(int(seed))


def cpu_generator(seed: int | None, offset: int = 0) -> torch.Generator | None:
    """A CPU generator for host-side decisions (sizes, coin flips) that must not sync with a device."""
    if seed is None:
        return None
    return torch.Generator().manual_seed((int(seed) + offset) % 2 ** 64)


__all__ = ["check_seed", "cpu_generator", "make_generator"]
