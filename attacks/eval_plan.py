"""What ``evaluate()`` will run: the attacks at each budget, their flags, the worst-case groups, the options.

Built (and every argument checked) before the first batch is loaded.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .base import AttackTraits, traits_of
from .checks import check_eps
from .corruption_results import CorruptionPlan
from .sanity import pgd_fgsm_pairs
from .worst import Group, Key, budget_groups


@dataclass(frozen=True)
class EvalOptions:
    """The resolved keyword arguments of ``evaluate()``."""

    device: torch.device
    amp: bool
    channels_last: bool
    max_batches: int | None
    targeted: bool
    seed: int
    progress: bool
    sanity_checks: bool
    grid_images: int
    crosscheck: bool
    num_classes: int | None
    n_batches: int | None
    corruptions: CorruptionPlan | None = None

    @property
    def amp_dtype(self) -> torch.dtype:
        return torch.float16 if self.device.type == "cuda" else torch.bfloat16

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast for forward passes and attacks when ``amp`` is on, else nothing."""
        if self.amp:
            return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()


@dataclass(frozen=True)
class AttackPlan:
    """Attacks by name and budget, their flags, and the groups the worst case is computed over."""

    variants: dict[str, dict[float, Callable[..., Any]]]
    traits: dict[Key, AttackTraits]
    own: dict[str, float]
    groups: list[Group]
    pairs: list[tuple[str, str, float]]  # (pgd name, fgsm name, eps) compared by the sanity checks

    @property
    def keys(self) -> list[Key]:
        return [(name, e) for name, vs in self.variants.items() for e in vs]


def _check_one(name: object, atk: object, targeted: bool) -> AttackTraits:
    if not isinstance(name, str) or not name:
        raise TypeError(f"attack names must be non-empty strings, got {name!r}.")
    if not callable(atk) or not hasattr(atk, "eps") or not hasattr(atk, "norm"):
        raise TypeError(f"attack {name!r} must be an attacks.Attack (callable with .eps and .norm), got {type(atk).__name__}.")
    t = traits_of(atk)
    if targeted and not t.supports_targeted:
        raise ValueError(f"attack {name!r} ({atk!r}) does not support targeted attacks; drop it or use targeted=False.")
    if not targeted and not t.supports_untargeted:
        raise ValueError(f"attack {name!r} ({atk!r}) only supports targeted attacks; use targeted=True.")
    return t


def plan_attacks(attacks: object, epsilons: object, targeted: bool, sanity_checks: bool = True, *,
                 allow_empty: bool = False) -> AttackPlan:
    """Validate attacks and budgets; every attack runs at its own eps and at each swept eps.

    ``allow_empty``: no attacks (``{}`` or None) is an empty plan (evaluation of corruptions only)."""
    if allow_empty and (attacks is None or (isinstance(attacks, Mapping) and not attacks)):
        if epsilons:
            raise ValueError("epsilons sweeps attack budgets, but no attacks were given; drop epsilons or add attacks.")
        return AttackPlan({}, {}, {}, [], [])
    if not isinstance(attacks, Mapping) or not attacks:
        raise TypeError("attacks must be a non-empty dict {name: Attack}, e.g. {'pgd': PGD(eps=0.3)}, "
                        "unless corruptions= is given (then {} evaluates the corruptions only).")
    if epsilons is not None and not isinstance(epsilons, (Mapping, Sequence)) or isinstance(epsilons, str):
        raise TypeError("epsilons must be a list of budgets (applied to every attack) or a dict {attack name: list}.")
    if isinstance(epsilons, Mapping):
        unknown = set(epsilons) - set(attacks)
        if unknown:
            raise ValueError(f"epsilons names unknown attacks {sorted(unknown)}; attacks: {sorted(attacks)}.")
    variants: dict[str, dict[float, Callable[..., Any]]] = {}
    traits: dict[Key, AttackTraits] = {}
    for name, atk in attacks.items():
        t = _check_one(name, atk, targeted)
        sweep = epsilons.get(name, ()) if isinstance(epsilons, Mapping) else (epsilons or ())
        vs: dict[float, Callable[..., Any]] = {t.eps: atk}
        traits[(name, t.eps)] = t
        for e in sweep:
            e = check_eps(e, t.norm, name=f"epsilons entry for {name!r}")
            if e not in vs:
                if not hasattr(atk, "with_eps"):
                    raise TypeError(f"attack {name!r} cannot change its budget (no with_eps); remove it from the sweep.")
                vs[e] = atk.with_eps(e)
                traits[(name, e)] = traits_of(vs[e])
        variants[name] = vs
    own = {name: next(iter(vs)) for name, vs in variants.items()}
    norms = {name: traits[(name, own[name])].norm for name in variants}
    groups = budget_groups({n: list(vs) for n, vs in variants.items()}, norms, own)
    pairs = pgd_fgsm_pairs(variants) if sanity_checks else []
    return AttackPlan(variants, traits, own, groups, pairs)


__all__ = ["AttackPlan", "EvalOptions", "plan_attacks"]
