"""``measure()``: the one accuracy-under-attack kernel (clean accuracy, robust accuracy, success rate).

Every place that needs "how often is this model right, with and without this attack" uses it: training
validation, AdvGAN's per-epoch success rate, fine-tuning's best-epoch selection, classifier accuracy.
``evaluate()`` is the full report (budgets, norms, timing, sanity checks); ``measure`` is the small,
fast count. Counts stay on the device and are read once at the end; the model is frozen (eval, no
parameter gradients) while measured and its modes and flags are restored afterwards.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .base import frozen_eval, random_targets
from .checks import check_images, check_labels, check_positive_int, compute_dtype, unpack_pair
from .classifier import data_chans_of, num_classes_of

AttackFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Measurement:
    """Counts over ``n`` inputs. ASR counts only inputs the model classified correctly."""

    n: int
    n_correct: int
    n_robust: int
    n_fooled: int
    n_target_hits: int | None = None

    @property
    def clean_accuracy(self) -> float:
        return self.n_correct / self.n if self.n else float("nan")

    @property
    def robust_accuracy(self) -> float:
        return self.n_robust / self.n if self.n else float("nan")

    @property
    def attack_success_rate(self) -> float:
        return self.n_fooled / self.n_correct if self.n_correct else float("nan")

    @property
    def targeted_success_rate(self) -> float | None:
        if self.n_target_hits is None:
            return None
        return self.n_target_hits / self.n_correct if self.n_correct else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
                "attack_success_rate": self.attack_success_rate, "targeted_success_rate": self.targeted_success_rate}


def _model_device(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _sharded(loader: Iterable[Any]) -> bool:
    sampler = getattr(loader, "sampler", None)
    inner = getattr(sampler, "sampler", None)
    return isinstance(sampler, torch.utils.data.DistributedSampler) or isinstance(inner, torch.utils.data.DistributedSampler)


def measure(model: nn.Module, loader: Iterable[Any], attack: AttackFn | None = None, *, targeted: bool = False,
            max_batches: int | None = None, seed: int = 0, device: torch.device | str | None = None) -> Measurement:
    """Clean accuracy and (with ``attack``) robust accuracy / success rate of ``model`` over ``loader``.

    Args:
        model: pixels in [0, 1] -> logits (e.g. an :class:`attacks.Classifier`).
        loader: iterable of ``(images, labels, ...)`` batches.
        attack: ``attack(model, x, y, target=t) -> x_adv``; ``None`` measures clean accuracy only.
        targeted: draw a random target != label per input (seeded by ``seed`` and the batch index) and
            count target hits (``n_target_hits``); ``n_fooled`` still counts misclassifications.
        max_batches: stop after this many batches.
        seed: seeds the targets (a private generator; the global RNG is untouched).
        device: where to run (default: the model's device; the model is not moved).

    Under ``torch.distributed`` with a loader sharded by a ``DistributedSampler`` the counts are summed
    over the ranks, so every rank returns the numbers of the whole dataset.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. attacks.Classifier), got {type(model).__name__}.")
    if attack is not None and not callable(attack):
        raise TypeError(f"attack must be callable as attack(model, x, y, target=None), got {type(attack).__name__}.")
    if max_batches is not None:
        check_positive_int(max_batches, "max_batches")
    num_classes = num_classes_of(model)
    if targeted and (attack is None or num_classes is None):
        raise ValueError("targeted measurement needs an attack and a model that knows num_classes (an attacks.Classifier).")
    dev = torch.device(device) if device is not None else _model_device(model)
    chans = data_chans_of(model)
    counts = torch.zeros(5, dtype=torch.long, device=dev)  # n, correct, robust, fooled, target hits
    gen = torch.Generator()
    with frozen_eval(model):
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            xb, yb = unpack_pair(batch, f"batch {i}")
            x = check_images(xb, name=f"images of batch {i}", channels=chans).to(dev, compute_dtype(model))
            y = check_labels(yb, x.shape[0], num_classes, name=f"labels of batch {i}").to(dev)
            with torch.no_grad():
                ok = model(x).argmax(1) == y
            t = None
            if targeted:
                gen.manual_seed(seed * 100_003 + i)
                t = random_targets(y.cpu(), num_classes, gen).to(dev)  # type: ignore[arg-type]
            if attack is None:
                ok_adv, hit = ok, torch.zeros_like(ok)
            else:
                x_adv = attack(model, x, y, target=t) if t is not None else attack(model, x, y)
                with torch.no_grad():
                    pred = model(x_adv).argmax(1)
                ok_adv = pred == y
                hit = ok & (pred == t) if t is not None else torch.zeros_like(ok)
            counts += torch.stack([torch.tensor(x.shape[0], device=dev), ok.sum(), ok_adv.sum(),
                                   (ok & ~ok_adv).sum(), hit.sum()])
    if _sharded(loader) and dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    n, correct, robust, fooled, hits = (int(v) for v in counts.cpu().tolist())
    if n == 0:
        raise ValueError("the loader yielded no batches; measure() needs at least one (images, labels) batch.")
    return Measurement(n=n, n_correct=correct, n_robust=robust, n_fooled=fooled, n_target_hits=hits if targeted else None)


__all__ = ["Measurement", "measure"]
