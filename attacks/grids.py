"""The report's image grid: one image per class, the first of each class seen across batches.

``ClassGrid(k)`` keeps the first image of each of the first ``k`` distinct classes of the loader (in
batch order), with the model's prediction and every attack's adversarial at the attack's own budget.
Labels are read on the host only while the grid is incomplete. Under ``torch.distributed`` every rank
keeps the first ``k`` classes of its own batches; ``merged`` then picks, per class, the earliest
image over all ranks: exactly the single-process choice (a class among the global first ``k`` is
among the first ``k`` of the rank that holds its first image).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class _Pick:
    order: tuple[int, int]  # (global batch index, position in the batch)
    label: int
    clean: torch.Tensor
    pred: torch.Tensor
    adv: dict[str, torch.Tensor] = field(default_factory=dict)
    pred_adv: dict[str, torch.Tensor] = field(default_factory=dict)


class ClassGrid:
    """Collects one image per class for ``Report.save``'s grid (``k = 0``: nothing)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._picks: dict[int, _Pick] = {}

    @property
    def full(self) -> bool:
        return len(self._picks) >= self.k

    def wanted(self, y: torch.Tensor) -> list[tuple[int, int]]:
        """(position, label) of the samples of this batch that open a new class (host read of the labels)."""
        if self.full:
            return []
        out: list[tuple[int, int]] = []
        seen = set(self._picks)
        for pos, label in enumerate(y.tolist()):
            if label not in seen and len(seen) < self.k:
                seen.add(label)
                out.append((pos, int(label)))
        return out

    def take(self, batch: int, picks: list[tuple[int, int]], x: torch.Tensor, pred: torch.Tensor) -> list[int]:
        """Keep the clean images of ``picks`` (from ``wanted``); returns their positions for ``take_adv``."""
        for pos, label in picks:
            self._picks[label] = _Pick((batch, pos), label, x[pos].detach().cpu(), pred[pos].detach().cpu())
        return [pos for pos, _ in picks]

    def take_adv(self, picks: list[tuple[int, int]], name: str, x_adv: torch.Tensor, pred: torch.Tensor) -> None:
        for pos, label in picks:
            p = self._picks[label]
            p.adv[name] = x_adv[pos].detach().cpu()
            p.pred_adv[name] = pred[pos].detach().cpu()

    def merged(self) -> list[_Pick]:
        """The picks of every rank merged (first image per class, the first ``k`` classes), in class order."""
        picks = list(self._picks.values())
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            everyone: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(everyone, picks)
            picks = [p for rank in everyone for p in rank]
        first: dict[int, _Pick] = {}
        for p in sorted(picks, key=lambda p: p.order):
            first.setdefault(p.label, p)
        chosen = sorted(first.values(), key=lambda p: p.order)[: self.k]
        return sorted(chosen, key=lambda p: p.label)

    def as_dict(self, attacks: Mapping[str, object]) -> dict[str, Any]:
        """``Report.grids``: {"clean", "labels", "preds_clean", "adv": {name: x}, "preds_adv": {name: p}} (CPU)."""
        picks = self.merged() if self.k else []
        if not picks:
            return {}
        names = [n for n in attacks if all(n in p.adv for p in picks)]
        return {
            "clean": torch.stack([p.clean for p in picks]),
            "labels": torch.tensor([p.label for p in picks]),
            "preds_clean": torch.stack([p.pred for p in picks]),
            "adv": {n: torch.stack([p.adv[n] for p in picks]) for n in names},
            "preds_adv": {n: torch.stack([p.pred_adv[n] for p in picks]) for n in names},
        }


__all__ = ["ClassGrid"]
