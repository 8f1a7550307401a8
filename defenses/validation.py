"""Robustness measurements used during and after fine-tuning (thin wrappers of ``attacks.measure``).

``attack_stats(model, loader, attack)`` -> clean accuracy, robust accuracy and attack success rate
(over the items the model classifies correctly). ``guard_accuracy`` is the catastrophic-overfitting
check of ``fgsm-rs``: PGD robust accuracy on one held-out batch.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from attacks import PGD, measure


def attack_stats(model: nn.Module, loader: Iterable, attack: Any, *, max_batches: int | None = None,
                 device: torch.device | str | None = None) -> dict[str, float]:
    """``{"clean_acc", "robust_acc", "asr", "n"}`` of ``attack`` against ``model`` over ``loader``.

    ``asr`` counts items classified correctly and misclassified after the attack, over the correctly
    classified items (0 when there is none). The model's mode and weights are left as they were.
    """
    m = measure(model, loader, attack, max_batches=max_batches, device=device)
    return {"clean_acc": m.clean_accuracy, "robust_acc": m.robust_accuracy, "asr": m.n_fooled / max(m.n_correct, 1), "n": m.n}


def guard_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
                   steps: int = 10, seed: int = 0) -> float:
    """Robust accuracy under a seeded PGD on one batch (the catastrophic-overfitting check)."""
    return measure(model, [(x, y)], PGD(eps=eps, norm=norm, steps=steps, seed=seed)).robust_accuracy
