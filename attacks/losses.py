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


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample Difference-of-Logits-Ratio loss to *maximise* (Croce & Hein 2020), shift- and scale-invariant.

    Untargeted: -(z_y - max_{i != y} z_i) / (z_(1) - z_(3)); targeted: -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2),
    with z_(k) the k-th largest logit. Needs at least 3 classes (4 for the targeted form).
    """
    need = 3 if target is None else 4
    if logits.shape[1] < need:
        kind = "untargeted" if target is None else "targeted"
        raise ValueError(f"the {kind} DLR loss needs at least {need} classes, the model has {logits.shape[1]}; "
                         "use loss='ce'.")
    z = logits.float()
    srt = z.sort(dim=1, descending=True).values
    own = z.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(dim=1)
        return -(own - other) / (srt[:, 0] - srt[:, 2] + 1e-12)
    tgt = z.gather(1, target[:, None]).squeeze(1)
    return -(own - tgt) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)
