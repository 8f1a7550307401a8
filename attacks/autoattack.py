"""AutoAttack (Croce & Hein, ICML 2020): a fixed, parameter-free cascade of diverse attacks.

Each attack runs only on the inputs that every earlier attack failed to break; an input counts as
robust only if it survives them all, and its output is the first adversarial example found (the
clean input if there is none, as in the reference). Versions:

- ``standard``: APGD-CE, APGD-T (9 target classes), FAB-T (9 target classes), Square (5,000 queries);
- ``plus``: APGD-CE and APGD-DLR with 5 restarts, FAB with 5 restarts, Square, APGD-T, FAB-T;
- ``rand`` (randomised defenses): APGD-CE and APGD-DLR with expectation over 20 forward passes;
- ``custom``: the registry names given in ``attacks=[...]``, in that order.

The member attacks are built through the registry (``make_attack``) on first use, so this module
does not import them.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from .base import Attack, available_attacks, make_attack, register_attack, register_attack_prefix
from .checks import check_choice
from .seeding import check_seed

VERSIONS = ("standard", "plus", "rand", "custom")

Plan = tuple[tuple[str, dict[str, Any] | Attack], ...]  # (registry name, its kwargs) or (name, a ready Attack)

_PLANS: dict[str, Plan] = {
    "standard": (("apgd-ce", {}), ("apgd-t", {"n_target_classes": 9}), ("fab-t", {"n_target_classes": 9}),
                 ("square", {"queries": 5000})),
    "plus": (("apgd-ce", {"restarts": 5}), ("apgd-dlr", {"restarts": 5}), ("fab", {"restarts": 5}),
             ("square", {"queries": 5000}), ("apgd-t", {"n_target_classes": 9}), ("fab-t", {"n_target_classes": 9})),
    "rand": (("apgd-ce", {"eot": 20}), ("apgd-dlr", {"eot": 20})),
}


@register_attack("autoattack")
class AutoAttack(Attack):
    """The AutoAttack ensemble as one untargeted ``Attack``: per input, the worst case over the cascade.

    Args:
        eps: budget in pixel units; norm: ``"linf"`` or ``"l2"``.
        version: ``"standard"``, ``"plus"``, ``"rand"`` or ``"custom"`` (see the module docstring).
        attacks: the cascade of ``version="custom"``, in order: registry names (e.g. ``["apgd-ce", "square"]``,
            built with their defaults) or ``Attack`` instances of the same norm (re-budgeted to ``eps``).
        seed: passed to every member attack.

    After a call, ``last_log`` lists ``(attack, inputs still robust after it)`` (first entry: ``clean``).
    """

    name = "autoattack"
    strong = True
    supports_targeted = False

    def __init__(self, eps: float = 0.3, norm: str = "linf", version: str = "standard",
                 attacks: list[str | Attack] | tuple[str | Attack, ...] | None = None, seed: int | None = 0, *,
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        version = check_choice(version, "version", VERSIONS)
        super().__init__(eps, norm, bounds=bounds)
        plan = _plan(version, attacks, self.norm)
        self.version = version
        self.seed = check_seed(seed)
        self.plan = plan
        self._members: list[tuple[str, Attack]] | None = None
        self.last_log: list[tuple[str, int]] = []

    @property
    def members(self) -> list[tuple[str, Attack]]:
        """The member attacks, built on first use: ``[(name, Attack)]``."""
        if self._members is None:
            self._members = [(n, self._build(n, kw)) for n, kw in self.plan]
        return self._members

    def _build(self, name: str, kwargs: dict[str, Any] | Attack) -> Attack:
        if isinstance(kwargs, Attack):
            return kwargs if kwargs.eps == self.eps else kwargs.with_eps(self.eps)
        attack = make_attack(name, eps=self.eps, norm=self.norm, **kwargs)
        params = inspect.signature(type(attack)).parameters  # seed and bounds go to the attacks that take them
        extra = {k: v for k, v in (("seed", self.seed), ("bounds", self.threat.bounds)) if k in params}
        return make_attack(name, eps=self.eps, norm=self.norm, **kwargs, **extra) if extra else attack

    def _on_eps_change(self) -> None:
        self._members = None
        self.last_log = []

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "version": self.version, "seed": self.seed,
                "attacks": [kw.describe() if isinstance(kw, Attack) else {"name": n, **kw} for n, kw in self.plan]}

    def __repr__(self) -> str:
        names = ", ".join(n for n, _ in self.plan)
        return f"AutoAttack(eps={self.eps:g}, norm={self.norm!r}, version={self.version!r}, attacks=[{names}])"

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        members = self.members
        with torch.no_grad():
            robust = model(x).argmax(1) == y
        out = x.clone()
        log = [("clean", int(robust.sum()))]
        for name, attack in members:
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                log.append((name, 0))
                continue
            adv = attack.generate(model, x[idx], y[idx])
            with torch.no_grad():
                fooled = model(adv).argmax(1) != y[idx]
            out[idx[fooled]] = adv[fooled]
            robust[idx[fooled]] = False
            log.append((name, int(robust.sum())))
        self.last_log = log
        return out


def _versioned(version: str, **kwargs: Any) -> Attack:
    """``make_attack("autoattack:plus", eps=...)``: AutoAttack of that version."""
    return AutoAttack(version=version, **kwargs)


register_attack_prefix("autoattack", _versioned)


def _plan(version: str, attacks: list[str | Attack] | tuple[str | Attack, ...] | None, norm: str) -> Plan:
    if version != "custom":
        if attacks is not None:
            raise ValueError(f"attacks= is only used with version='custom' (version={version!r} runs "
                             f"{', '.join(n for n, _ in _PLANS[version])}).")
        return _PLANS[version]
    if attacks is None or isinstance(attacks, str) or len(attacks) == 0:
        raise ValueError("version='custom' needs attacks=[names], e.g. attacks=['apgd-ce', 'square']; "
                         f"registered: {', '.join(available_attacks())}.")
    known = set(available_attacks()) - {"autoattack"}
    bad = [a for a in attacks if not isinstance(a, Attack) and a not in known]
    if bad:
        raise ValueError(f"unknown attack(s) {', '.join(map(repr, bad))} in attacks=; valid: {', '.join(sorted(known))} "
                         "(or Attack instances).")
    for a in attacks:
        if isinstance(a, Attack) and a.norm != norm:
            raise ValueError(f"{a!r} in attacks= has norm {a.norm!r} but this AutoAttack's norm is {norm!r}; "
                             "every member must use the same norm.")
        if isinstance(a, AutoAttack):
            raise ValueError("an AutoAttack cannot be a member of another AutoAttack's attacks=.")
    return tuple((a.name, a) if isinstance(a, Attack) else (str(a), {}) for a in attacks)


__all__ = ["VERSIONS", "AutoAttack"]
