"""Natural corruptions as a source of the ``augment`` method, next to the adversarial ones.

``CorruptionSource(["fog", "gaussian_noise"], severities=(1, 2, 3))`` is called like an attack,
``src(model, x, y) -> x_c``: every image draws its own corruption and severity, and the images sharing
one are corrupted in one batched ``attacks.corrupt`` call (at most ``len(names) * len(severities)``
calls, no per-image loop). The model and labels are ignored. Draws come from the global RNG (like the
training PGD's random start, so the engine's checkpoints resume them exactly), or from a private
generator when ``seed`` is given. It has no ``eps``/``norm``: it lies outside any Lp threat model, and
``AdversarialAugmentation`` leaves it out of the threat-model checks.

Spec strings (``--source``): ``corruption:all``, ``corruption:noise`` (a family), ``corruption:fog+snow``
(names joined by ``+``), each optionally ``@S`` (one severity) or ``@A-B`` (a range); default 1-5.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attacks.corruptions import SEVERITIES, check_severity, corrupt, corruption_names


def is_corruption_source(src: object) -> bool:
    """Sources outside the Lp threat model: ``CorruptionSource`` and ``attacks.Corruption``."""
    return getattr(src, "kind", None) == "corruption"


class CorruptionSource:
    """A random corruption and severity per image (see the module docstring)."""

    kind = "corruption"
    supports_targeted = False

    def __init__(self, corruptions: str | Sequence[str] = "all", severities: Sequence[int] = SEVERITIES, *,
                 seed: int | None = None, spec: str | None = None) -> None:
        self.names = corruption_names(corruptions)
        if isinstance(severities, int):
            severities = (severities,)
        self.severities = tuple(sorted({check_severity(s) for s in severities}))
        if not self.severities:
            raise ValueError("severities is empty; pass at least one of 1, 2, 3, 4, 5.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}.")
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.name = spec or "corruption"

    def __call__(self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None = None, *,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        if target is not None:
            raise ValueError("a corruption source is not a targeted attack; call it without target=.")
        n = x.shape[0]
        cells = len(self.names) * len(self.severities)
        pick = torch.randint(cells, (n,), generator=self._gen)
        seeds = torch.randint(2**31 - 1, (cells,), generator=self._gen)
        out = x.detach().clone()
        for cell in pick.unique().tolist():
            idx = (pick == cell).nonzero().flatten().to(x.device)
            name, sev = self.names[cell // len(self.severities)], self.severities[cell % len(self.severities)]
            out[idx] = corrupt(x[idx], name, sev, seed=int(seeds[cell]))
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "corruptions": list(self.names), "severities": list(self.severities),
                "seed": self.seed}

    def __repr__(self) -> str:
        return f"CorruptionSource({list(self.names)}, severities={list(self.severities)})"


def parse_corruption_source(arg: str, *, seed: int | None = None) -> CorruptionSource:
    """The source of a ``corruption:ARG`` spec (see the module docstring)."""
    if not arg:
        raise ValueError("source 'corruption' needs corruptions: corruption:all, corruption:noise, corruption:fog+snow@3, "
                         "corruption:all@1-3.")
    what, _, sev = arg.partition("@")
    names: str | list[str] = what.split("+") if "+" in what else what
    severities: Sequence[int] = SEVERITIES
    if sev:
        lo, _, hi = sev.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"corruption severity {sev!r} in {arg!r} must be S or A-B with 1 <= A <= B <= 5.") from None
        if not 1 <= a <= b <= 5:
            raise ValueError(f"corruption severity {sev!r} in {arg!r} must be S or A-B with 1 <= A <= B <= 5.")
        severities = tuple(range(a, b + 1))
    return CorruptionSource(names, severities, seed=seed, spec=f"corruption:{arg}")


__all__ = ["CorruptionSource", "is_corruption_source", "parse_corruption_source"]
