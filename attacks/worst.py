"""The worst case over attacks, per sample: an input is robust only if it survived every attack.

A *budget group* is a set of (attack, eps) runs judged together: ``own`` (every attack at its own
eps) and, per norm, every eps at which all attacks of that norm were evaluated (the worst-case
ε-curve). Per batch, ``combine`` turns the per-sample outcomes of a group's runs into per-sample
worst-case outcomes (device tensors, no host sync): robust = clean-correct AND robust under every run;
the worst-case example of an input is the output of the first run (in report order) that broke it,
and the clean input (zero perturbation) if none did, as in AutoAttack. It also counts the inputs
broken only by a gradient-free search (Square, Boundary...; never random noise), the symptom of
gradient masking AutoAttack's authors check for.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .base import AttackTraits

Key = tuple[str, float]  # (attack name, eps)


@dataclass(frozen=True)
class Group:
    """(attack, eps) runs judged together; ``norm``/``eps`` are None when they differ between runs."""

    label: str
    keys: tuple[Key, ...]
    norm: str | None
    eps: float | None


@dataclass(frozen=True)
class Outcome:
    """One run on one batch, per sample (after the output was screened)."""

    success: torch.Tensor  # correct & did what was asked (fooled, or hit the target)
    robust: torch.Tensor  # prediction on x_adv == label
    hit: torch.Tensor | None  # correct & prediction == target (targeted runs)
    linf: torch.Tensor
    l2: torch.Tensor
    ssim: torch.Tensor


def budget_groups(budgets: Mapping[str, Sequence[float]], norms: Mapping[str, str], own: Mapping[str, float]) -> list[Group]:
    """``own`` first, then per norm the common budgets in increasing order (duplicates of ``own`` dropped)."""
    names = list(budgets)
    own_keys = tuple((n, own[n]) for n in names)
    own_norms = {norms[n] for n in names}
    own_eps = {own[n] for n in names}
    groups = [Group("own", own_keys, next(iter(own_norms)) if len(own_norms) == 1 else None,
                    next(iter(own_eps)) if len(own_eps) == 1 else None)]
    for norm in dict.fromkeys(norms[n] for n in names):
        members = [n for n in names if norms[n] == norm]
        common = set(budgets[members[0]]).intersection(*(set(budgets[n]) for n in members[1:]))
        for e in sorted(common):
            keys = tuple((n, e) for n in members)
            if keys != own_keys:  # else: own is this very point (and carries its norm and eps)
                groups.append(Group(f"{norm}@{e!r}", keys, norm, e))
    return groups


def combine(group: Group, outcomes: Mapping[Key, Outcome], traits: Mapping[Key, AttackTraits],
            correct: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample worst case of ``group`` on one batch: robust, fooled, hits, the chosen example's norms
    and SSIM, and ``gradient_free_only`` (inputs broken by a gradient-free search but by no gradient attack)."""
    robust = correct.clone()
    broken = torch.zeros_like(correct)
    hit = torch.zeros_like(correct)
    linf = torch.zeros(correct.shape, dtype=torch.float32, device=correct.device)
    l2 = torch.zeros_like(linf)
    ssim = torch.ones_like(linf)
    by_grad = torch.zeros_like(correct)
    by_search = torch.zeros_like(correct)
    any_grad = any_search = False
    for key in group.keys:
        o = outcomes[key]
        first = o.success & ~broken  # this run is the first to break these inputs
        linf = torch.where(first, o.linf.float(), linf)
        l2 = torch.where(first, o.l2.float(), l2)
        ssim = torch.where(first, o.ssim.float(), ssim)
        broken |= o.success
        robust &= o.robust
        if o.hit is not None:
            hit |= o.hit
        t = traits[key]
        if t.gradient_free_search:
            by_search |= o.success
            any_search = True
        elif t.uses_gradients:
            by_grad |= o.success
            any_grad = True
    out = {"robust": robust, "fooled": correct & ~robust, "hits": hit, "linf": linf, "l2": l2, "ssim": ssim}
    if any_grad and any_search:
        out["gradient_free_only"] = by_search & ~by_grad
    return out


__all__ = ["Group", "Key", "Outcome", "budget_groups", "combine"]
