"""Stateless attack objectives on logits (used by PGD, C&W and AdvGAN's L_adv)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cw_margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, kappa: float = 0.0) -> torch.Tensor:
    """Per-sample C&W margin to *minimise* (<= -kappa once the attack succeeds with confidence kappa).

    Untargeted: max(f_y - max_{i != y} f_i, -kappa). Targeted: max(max_{i != t} f_i - f_t, -kappa).
    """
    cls = y if target is None else target
    onehot = F.one_hot(cls, logits.shape[1]).bool()
    own = logits[onehot]
    other = logits.masked_fill(onehot, float("-inf")).amax(dim=1)
    margin = own - other if target is None else other - own
    return margin.clamp(min=-kappa)


def attack_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, kind: str = "ce") -> torch.Tensor:
    """Per-sample loss to *maximise* for an attack step: ``ce`` or ``margin`` (C&W, kappa = inf)."""
    if kind == "ce":
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    if kind in ("margin", "cw"):
        return -cw_margin(logits, y, target, kappa=float("inf"))
    raise ValueError(f"unknown attack loss {kind!r}; choose 'ce' or 'margin'.")


def is_adversarial(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample success: misclassified (untargeted) or classified as the target (targeted)."""
    pred = logits.argmax(1)
    return pred != y if target is None else pred == target
