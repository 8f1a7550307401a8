"""``evaluate()``: stream a DataLoader through a frozen model and any number of attacks (and budgets).

Counts, norms and SSIM accumulate on the device and are read once at the end. Every attack output is
verified before it is counted (shape, dtype, finite, pixel bounds, threat model; see
``attacks.verify``). The per-sample worst case over all attacks is the report's headline number.
Batches are validated on the loader's device before they are moved (``non_blocking``). The model is
frozen in eval mode throughout and left bit-identical, on its device, in its memory format and
train/eval mode.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .base import frozen_eval
from .checks import resolve_device
from .classifier import num_classes_of
from .corruption_results import plan_corruptions
from .corruptions import SEVERITIES
from .devices import device_snapshot, restore_devices
from .eval_loop import run_evaluation
from .eval_plan import EvalOptions, plan_attacks
from .report import Report
from .sharding import rank_device


def _check_options(model: object, seed: object, max_batches: object, grid_images: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. attacks.Classifier), got {type(model).__name__}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}.")
    if isinstance(grid_images, bool) or not isinstance(grid_images, int) or grid_images < 0:
        raise ValueError(f"grid_images must be an int >= 0, got {grid_images!r}.")


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    attacks: Mapping[str, Any] | None = None,
    *,
    corruptions: str | Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    epsilons: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
    max_batches: int | None = None,
    targeted: bool = False,
    seed: int = 0,
    progress: bool = True,
    sanity_checks: bool = True,
    grid_images: int = 8,
    crosscheck_foolbox: bool = False,
) -> Report:
    """Clean accuracy, the worst case over all attacks and, per attack and budget, success rate, robust
    accuracy, norms, SSIM and speed; with ``corruptions``, accuracy under natural corruptions.

    Args:
        model: the classifier (pixels in [0, 1] -> logits), e.g. an ``attacks.Classifier``.
        loader: iterable of ``(images, labels)`` batches.
        attacks: ``{name: Attack}`` (or any callable ``f(model, x, y, target=None)`` with ``eps`` and
            ``norm``); each runs at its own eps and at every eps of ``epsilons``. May be empty (``{}`` or
            None) when ``corruptions`` is given.
        corruptions: ``"all"`` (the 19 of ImageNet-C), ``"common"`` (its 15 benchmark ones), a family
            (``"noise"``, ``"blur"``, ``"weather"``, ``"digital"``, ``"extra"``) or a list of names
            (``attacks.CORRUPTIONS``): ``report.corruptions[name][severity]`` is the accuracy,
            ``report.mean_corruption_accuracy`` their mean, ``report.corruption_error(baseline_report)``
            ImageNet-C's mCE against another model. One ``corrupt()`` and one forward pass per batch and cell.
        severities: the severities (1..5) every corruption is evaluated at.
        epsilons: budgets to sweep: a list for every attack or ``{name: list}``.
        device: where to run (default: the model's device); the model is moved back afterwards.
        amp: autocast (float16 on CUDA, bfloat16 on CPU) for forward passes and attacks.
        channels_last: run model and inputs in channels-last memory format (restored afterwards).
        max_batches: stop after this many batches.
        targeted: attack towards random targets != label (seeded); reports targeted success rate.
        seed: seeds targets and the attacks' randomness (global RNG forked, restored afterwards).
        sanity_checks: record gradient-masking / probability / randomised-model / monotonicity /
            PGD-vs-FGSM checks.
        grid_images: classes in ``report.save``'s grid: the first image of each of the first
            ``grid_images`` classes of the loader (0: no grid).
        crosscheck_foolbox: also run foolbox's LinfPGD (same settings as our first L-inf PGD) on the
            first batch and compare success rates (untargeted runs only).

    Attack outputs are verified: a non-tensor or a tensor of the wrong shape, dtype or device raises
    ``ValueError`` naming the attack; samples that are not finite or leave the pixel bounds or the
    attack's threat model count as *not* broken, and ``report.flags`` names the attack, the count and
    the worst violation.

    Under an initialised ``torch.distributed`` process group (e.g. ``torchrun``) each rank evaluates
    every world-size-th batch and the totals are reduced: every rank returns the report a single
    process gives on the same (unshuffled) loader; images/s use the slowest rank's time.
    Targets and the global RNG are seeded per batch (``seed`` and the batch index).
    """
    _check_options(model, seed, max_batches, grid_images)
    cplan = plan_corruptions(corruptions, severities)
    plan = plan_attacks(attacks, epsilons, targeted, sanity_checks, allow_empty=cplan is not None)
    n_batches = _length(loader)
    if n_batches == 0:
        raise ValueError("the loader is empty; evaluate needs at least one (images, labels) batch.")
    num_classes = num_classes_of(model)
    if targeted and num_classes is None:
        raise ValueError("targeted evaluation needs the number of classes: wrap the model in attacks.Classifier.")
    orig_device = next((p.device for p in model.parameters()), None)
    dev = resolve_device(device) if device is not None else (orig_device or torch.device("cpu"))
    dev = rank_device(dev)
    opts = EvalOptions(device=dev, amp=bool(amp), channels_last=bool(channels_last), max_batches=max_batches,
                       targeted=bool(targeted), seed=seed, progress=bool(progress), sanity_checks=bool(sanity_checks),
                       grid_images=grid_images, crosscheck=bool(crosscheck_foolbox), num_classes=num_classes,
                       n_batches=n_batches, corruptions=cplan)
    with _placed(model, dev, bool(channels_last)), frozen_eval(model), \
            torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        return run_evaluation(model, loader, plan, opts)


@contextlib.contextmanager
def _placed(model: nn.Module, dev: torch.device, channels_last: bool) -> Iterator[None]:
    """The model on ``dev`` (and channels-last) inside; every tensor back where it was after, on every path
    (even after a move that failed half-way)."""
    cl = channels_last and any(p.dim() == 4 for p in model.parameters())
    snap = device_snapshot(model)
    try:
        model.to(dev)
        if cl:
            model.to(memory_format=torch.channels_last)
        yield
    finally:
        if cl:
            model.to(memory_format=torch.contiguous_format)
        restore_devices(snap)
