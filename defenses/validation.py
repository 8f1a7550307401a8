"""Robustness measurements used during and after fine-tuning (small, seeded, mode-preserving).

``attack_stats(model, loader, attack)`` -> clean accuracy, robust accuracy and attack success rate
(over the items the model classifies correctly). ``guard_accuracy`` is the catastrophic-overfitting
check of ``fgsm-rs``: PGD robust accuracy on one held-out batch.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from attacks import PGD
from attacks.base import frozen_eval


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def attack_stats(model: nn.Module, loader: Iterable, attack: Any, *, max_batches: int | None = None,
                 device: torch.device | str | None = None) -> dict[str, float]:
    """``{"clean_acc", "robust_acc", "asr", "n"}`` of ``attack`` against ``model`` over ``loader``.

    ``asr`` counts items classified correctly and misclassified after the attack, over the correctly
    classified items. The model's mode and weights are left as they were.
    """
    dev = torch.device(device) if device is not None else _device(model)
    n = correct = robust = fooled = 0
    with frozen_eval(model):
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = batch[0].to(dev), batch[1].to(dev)
            with torch.no_grad():
                ok = model(x).argmax(1) == y
            x_adv = attack(model, x, y)
            with torch.no_grad():
                ok_adv = model(x_adv).argmax(1) == y
            n += y.numel()
            correct += int(ok.sum())
            robust += int(ok_adv.sum())
            fooled += int((ok & ~ok_adv).sum())
    if n == 0:
        raise ValueError("attack_stats(): the loader is empty.")
    return {"clean_acc": correct / n, "robust_acc": robust / n, "asr": fooled / max(correct, 1), "n": n}


def guard_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
                   steps: int = 10, seed: int = 0) -> float:
    """Robust accuracy under a seeded PGD on one batch (the catastrophic-overfitting check)."""
    dev = _device(model)
    x, y = x.to(dev), y.to(dev)
    x_adv = PGD(eps=eps, norm=norm, steps=steps, seed=seed)(model, x, y)
    with frozen_eval(model), torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())
