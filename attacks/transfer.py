"""``transfer()``: the black-box baseline: craft adversarial examples on a surrogate, count them on a target.

``transfer(surrogate, target, PGD(eps=0.3, momentum=1.0, diversity=0.5), loader)`` runs the attack
against ``surrogate`` only and classifies the results with both models: ``result.target`` is what
a black-box attacker achieves on the target with zero queries, ``result.surrogate`` the white-box
success on the model it attacked. Attack outputs are screened like in ``evaluate()`` (invalid
samples count as failures). Counts stay on the target's device and are read once at the end.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .accumulator import Accumulator
from .base import frozen_eval, random_targets, traits_of
from .checks import check_images, check_labels, check_positive_int
from .classifier import data_chans_of, num_classes_of
from .measure import Measurement, _model_device, _sharded
from .verify import check_output_type, screen_output

_MODELS = ("target", "surrogate")
_COUNTS = ("n_correct", "n_robust", "n_fooled", "n_target_hits")


@dataclass(frozen=True)
class TransferResult:
    """Counts on the target (the black-box result) and on the surrogate (the white-box one).

    ``transfer_rate``: of the inputs both models classify correctly and whose example fooled the
    surrogate, the fraction that also fools the target."""

    target: Measurement
    surrogate: Measurement
    n_fooled_surrogate_both_correct: int
    n_transferred: int
    n_invalid: int = 0

    @property
    def attack_success_rate(self) -> float:
        return self.target.attack_success_rate

    @property
    def robust_accuracy(self) -> float:
        return self.target.robust_accuracy

    @property
    def targeted_success_rate(self) -> float | None:
        return self.target.targeted_success_rate

    @property
    def transfer_rate(self) -> float:
        k = self.n_fooled_surrogate_both_correct
        return self.n_transferred / k if k else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target.to_dict(), "surrogate": self.surrogate.to_dict(), "transfer_rate": self.transfer_rate,
                "n_fooled_surrogate_both_correct": self.n_fooled_surrogate_both_correct,
                "n_transferred": self.n_transferred, "n_invalid": self.n_invalid}


def _check(surrogate: object, target: object, attack: object, max_batches: object) -> tuple[int | None, int | None]:
    for name, m in (("surrogate", surrogate), ("target", target)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module (e.g. attacks.Classifier), got {type(m).__name__}.")
    if not callable(attack) or not hasattr(attack, "eps") or not hasattr(attack, "norm"):
        raise TypeError(f"attack must be an attacks.Attack (callable with .eps and .norm), got {type(attack).__name__}.")
    if max_batches is not None:
        check_positive_int(max_batches, "max_batches")
    assert isinstance(surrogate, nn.Module) and isinstance(target, nn.Module)
    ns, nt = num_classes_of(surrogate), num_classes_of(target)
    if ns is not None and nt is not None and ns != nt:
        raise ValueError(f"the surrogate has {ns} classes but the target {nt}; a transfer attack needs the same labels.")
    cs, ct = data_chans_of(surrogate), data_chans_of(target)
    if cs is not None and ct is not None and cs != ct:
        raise ValueError(f"the surrogate takes {cs}-channel images but the target {ct}-channel ones; they must match.")
    return (nt if nt is not None else ns), (ct if ct is not None else cs)


def transfer(surrogate: nn.Module, target: nn.Module, attack: Callable[..., torch.Tensor], loader: Iterable[Any], *,
             targeted: bool = False, max_batches: int | None = None, seed: int = 0) -> TransferResult:
    """Craft with ``attack`` on ``surrogate``, count success on ``target`` (and on the surrogate).

    Args:
        surrogate: the model the attack sees (white-box); target: the model it is meant to fool.
        attack: an ``Attack`` (e.g. ``PGD(eps, momentum=1.0, diversity=0.5)``) or a callable with eps/norm.
        loader: iterable of ``(images, labels)`` batches.
        targeted: random targets != label (seeded by ``seed`` and the batch index).
        max_batches: stop after this many batches.
        seed: seeds the targets and the global RNG per batch (forked, restored afterwards).

    Both models are frozen (eval, no parameter gradients) while used and restored afterwards.
    """
    num_classes, chans = _check(surrogate, target, attack, max_batches)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    if targeted and num_classes is None:
        raise ValueError("targeted transfer needs the number of classes: wrap the models in attacks.Classifier.")
    traits = traits_of(attack)
    dev_t, dev_s = _model_device(target), _model_device(surrogate)
    acc = Accumulator(dev_t)
    acc.declare_many(["n", "invalid", "both_correct_fooled_surrogate", "transferred"], "sum", torch.long)
    acc.declare_many([f"{m}/{c}" for m in _MODELS for c in _COUNTS], "sum", torch.long)
    gen = torch.Generator()
    with frozen_eval(surrogate), frozen_eval(target), torch.random.fork_rng(devices=[d for d in {dev_t, dev_s} if d.type == "cuda"]):
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(f"batch {i} must be an (images, labels) pair, got {type(batch).__name__}.")
            x = check_images(batch[0], name=f"images of batch {i}", channels=chans)
            y = check_labels(batch[1], x.shape[0], num_classes, name=f"labels of batch {i}")
            torch.manual_seed(seed * 100_003 + i)
            gen.manual_seed(seed * 100_003 + i)
            t = random_targets(y.cpu(), num_classes, gen) if targeted and num_classes else None
            xs, ys = x.to(dev_s), y.to(dev_s)
            out = attack(surrogate, xs, ys, target=t.to(dev_s) if t is not None else None)
            screened = screen_output(traits.threat, xs, check_output_type(traits.name, xs, out))
            _count(acc, surrogate, target, x, y, t, screened.x_adv)
            acc.add("invalid", screened.invalid.sum())
            acc.add("n", x.shape[0])
    if _sharded(loader) and dist.is_available() and dist.is_initialized():
        acc.all_reduce()
    v = acc.read()
    if v["n"] == 0:
        raise ValueError("the loader yielded no batches; transfer() needs at least one (images, labels) batch.")

    def meas(m: str) -> Measurement:
        return Measurement(n=int(v["n"]), n_correct=int(v[f"{m}/n_correct"]), n_robust=int(v[f"{m}/n_robust"]),
                           n_fooled=int(v[f"{m}/n_fooled"]), n_target_hits=int(v[f"{m}/n_target_hits"]) if targeted else None)

    return TransferResult(target=meas("target"), surrogate=meas("surrogate"),
                          n_fooled_surrogate_both_correct=int(v["both_correct_fooled_surrogate"]),
                          n_transferred=int(v["transferred"]), n_invalid=int(v["invalid"]))


def _count(acc: Accumulator, surrogate: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
           t: torch.Tensor | None, x_adv: torch.Tensor) -> None:
    """Classify clean and adversarial images with both models; fold the counts into ``acc`` (target's device)."""
    fooled = {}
    correct = {}
    for m, model in (("target", target), ("surrogate", surrogate)):
        d = _model_device(model)
        yy = y.to(d)
        with torch.no_grad():
            ok = model(x.to(d)).argmax(1) == yy
            pa = model(x_adv.to(d)).argmax(1)
        fooled[m], correct[m] = (ok & (pa != yy)).to(acc.device), ok.to(acc.device)
        hit = ok & (pa == t.to(d)) if t is not None else torch.zeros_like(ok)
        for c, val in (("n_correct", ok), ("n_robust", pa == yy), ("n_fooled", ok & (pa != yy)), ("n_target_hits", hit)):
            acc.add(f"{m}/{c}", val.sum())
    both = correct["target"] & correct["surrogate"] & fooled["surrogate"]
    acc.add("both_correct_fooled_surrogate", both.sum())
    acc.add("transferred", (both & fooled["target"]).sum())


__all__ = ["TransferResult", "transfer"]
