"""Input diversity (Xie et al. 2019, "Improving transferability of adversarial examples with input diversity").

With probability ``p`` per gradient step the attack differentiates the model at a randomly transformed
input: resized to a random size between H and ``ratio``·H, zero-padded at a random offset to
``ratio``·H, then resized back to H×W so any model accepts it (the model sees the image slightly shrunk
and shifted). The transform is differentiable, so the gradient reaches the untransformed input.
Random choices come from a CPU generator: they are shapes, and must not wait for the device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RATIO = 1.1  # the paper resizes 299 -> [299, 330) and pads to 330


def _randint(low: int, high: int, gen: torch.Generator | None) -> int:
    """An int in [low, high] drawn on the CPU."""
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def diverse_input(x: torch.Tensor, p: float, gen: torch.Generator | None, *, ratio: float = RATIO) -> torch.Tensor:
    """``x`` randomly resized and padded with probability ``p`` (else ``x`` itself)."""
    if p <= 0 or float(torch.rand((), generator=gen)) >= p:
        return x
    h, w = x.shape[-2:]
    hp, wp = max(h + 1, math.ceil(ratio * h)), max(w + 1, math.ceil(ratio * w))
    rh = _randint(h, hp - 1, gen)
    rw = max(1, min(wp - 1, round(rh * w / h)))
    small = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
    top, left = _randint(0, hp - rh, gen), _randint(0, wp - rw, gen)
    padded = F.pad(small, (left, wp - rw - left, top, hp - rh - top))
    return F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)


__all__ = ["RATIO", "diverse_input"]
