"""How input-specific is an attack? Two diagnostics of a set of perturbations and the classes they reach.

- **shared energy** ``||mean delta||^2 / mean ||delta||^2`` over N perturbations (flattened): the share
  of the perturbations' energy that is common to all of them. A universal perturbation (the same
  ``delta`` for every input) gives 1; N independent zero-mean perturbations give about 1/N. PGD on a
  small CNN is about 0.3 on MNIST (the sign pattern of digit-shaped gradients overlaps).
- **adversarial-class entropy** (nats) of the classes that the fooled inputs are sent to: 0 when every
  fooled input lands in one class (a collapsed attack, easy to detect), ``log(num_classes)`` at most.

``shared_energy(delta)`` / ``adversarial_class_entropy(pred_adv, fooled)`` work on tensors held in
memory; :class:`PerturbationStats` accumulates both over batches (sums stay on the device, one host
read in :meth:`PerturbationStats.result`).
"""
from __future__ import annotations

import math

import torch


def _check_delta(delta: object) -> torch.Tensor:
    if not isinstance(delta, torch.Tensor):
        raise TypeError(f"delta must be a torch.Tensor of perturbations (N, ...), got {type(delta).__name__}.")
    if delta.dim() < 2 or delta.shape[0] == 0 or not delta.is_floating_point():
        raise ValueError(f"delta must be a float tensor (N, ...) with N >= 1 perturbations, got shape {tuple(delta.shape)} "
                         f"and dtype {delta.dtype}.")
    return delta


def shared_energy(delta: torch.Tensor) -> float:
    """``||mean delta||^2 / mean ||delta||^2`` over the first dimension (1: universal; nan if every delta is 0)."""
    d = _check_delta(delta).detach().flatten(1).double()
    total = float(d.pow(2).sum(1).mean())
    return float(d.mean(0).pow(2).sum()) / total if total > 0 else float("nan")


def _check_classes(pred_adv: object, fooled: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pred_adv, torch.Tensor) or pred_adv.dim() != 1 or pred_adv.is_floating_point():
        raise TypeError("pred_adv must be a 1-D integer tensor of predicted classes (e.g. model(x_adv).argmax(1)).")
    if not isinstance(fooled, torch.Tensor) or fooled.dtype != torch.bool or fooled.shape != pred_adv.shape:
        raise TypeError(f"fooled_mask must be a bool tensor of pred_adv's shape {tuple(pred_adv.shape)} "
                        "(True where the attack succeeded).")
    if pred_adv.numel() and int(pred_adv.min()) < 0:
        raise ValueError("pred_adv holds negative class indices.")
    return pred_adv, fooled


def entropy_of_counts(counts: torch.Tensor) -> float:
    """Entropy (nats) of the empirical distribution given by ``counts`` (nan when they sum to 0)."""
    c = counts.detach().double()
    n = float(c.sum())
    if n <= 0:
        return float("nan")
    p = c[c > 0] / n
    return float(-(p * p.log()).sum())


def adversarial_class_entropy(pred_adv: torch.Tensor, fooled_mask: torch.Tensor, num_classes: int | None = None) -> float:
    """Entropy (nats) of ``pred_adv[fooled_mask]``'s class histogram (nan when nothing was fooled)."""
    pred, fooled = _check_classes(pred_adv, fooled_mask)
    k = num_classes if num_classes is not None else (int(pred.max()) + 1 if pred.numel() else 1)
    return entropy_of_counts(torch.bincount(pred[fooled].long(), minlength=k))


class PerturbationStats:
    """Streams :func:`shared_energy` and :func:`adversarial_class_entropy` over batches.

    ``update(delta, pred_adv, fooled)`` per batch (``pred_adv``/``fooled`` optional), then ``result()`` ->
    ``{"shared_energy", "adv_class_entropy", "max_entropy"}``."""

    def __init__(self, num_classes: int) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
        self.num_classes = num_classes
        self.n = 0
        self._sum: torch.Tensor | None = None
        self._sq = torch.zeros((), dtype=torch.float64)
        self._counts = torch.zeros(num_classes, dtype=torch.int64)

    def update(self, delta: torch.Tensor, pred_adv: torch.Tensor | None = None, fooled: torch.Tensor | None = None) -> None:
        d = _check_delta(delta).detach().flatten(1).double()
        if self._sum is None:
            self._sum = torch.zeros(d.shape[1], dtype=torch.float64, device=d.device)
            self._sq = self._sq.to(d.device)
            self._counts = self._counts.to(d.device)
        elif self._sum.shape[0] != d.shape[1]:
            raise ValueError(f"delta has {d.shape[1]} values per item; earlier batches had {self._sum.shape[0]}.")
        self._sum += d.sum(0)
        self._sq += d.pow(2).sum()
        self.n += d.shape[0]
        if pred_adv is not None:
            if fooled is None:
                raise TypeError("pass fooled= (bool mask) together with pred_adv.")
            pred, mask = _check_classes(pred_adv, fooled)
            if pred.numel() and int(pred.max()) >= self.num_classes:
                raise ValueError(f"pred_adv holds class {int(pred.max())}, but num_classes is {self.num_classes}.")
            self._counts += torch.bincount(pred[mask].long().to(self._counts.device), minlength=self.num_classes)

    def all_reduce(self) -> None:
        """Sum the totals over the ranks of an initialised process group (no-op otherwise; every rank must call)."""
        import torch.distributed as dist

        if self._sum is None or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        flat = torch.cat([self._sum, self._sq.reshape(1), self._counts.double(), torch.tensor([float(self.n)], dtype=torch.float64,
                                                                                               device=self._sum.device)])
        dist.all_reduce(flat)
        k = self._sum.shape[0]
        self._sum, self._sq = flat[:k].clone(), flat[k].clone()
        self._counts = flat[k + 1:k + 1 + self.num_classes].round().long()
        self.n = int(flat[-1])

    def result(self) -> dict[str, float]:
        if self._sum is None or self.n == 0:
            return {"shared_energy": float("nan"), "adv_class_entropy": float("nan"), "max_entropy": math.log(self.num_classes)}
        total = float(self._sq) / self.n
        mean_sq = float((self._sum / self.n).pow(2).sum())
        return {"shared_energy": mean_sq / total if total > 0 else float("nan"),
                "adv_class_entropy": entropy_of_counts(self._counts),
                "max_entropy": math.log(self.num_classes)}


__all__ = ["PerturbationStats", "adversarial_class_entropy", "entropy_of_counts", "shared_energy"]
