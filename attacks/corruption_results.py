"""Accuracy under natural corruptions (ImageNet-C protocol): what ``evaluate(corruptions=...)`` measures.

``CorruptionPlan``: which corruptions at which severities (checked before the first batch).
``CorruptionResults``: correct counts per (corruption, severity) over the same ``n`` images as the clean
accuracy; ``accuracy[name][severity]``, the mean corruption accuracy, JSON, a Markdown table.
``corruption_error(results, baseline)``: ImageNet-C's corruption error of a model against a baseline
model (Hendrycks & Dietterich 2019): per corruption c,

    CE_c = sum_s E(c, s) / sum_s E_base(c, s)
    relative CE_c = sum_s (E(c, s) - E_clean) / sum_s (E_base(c, s) - E_base_clean)

with E the top-1 error; mCE and relative mCE are their means over the corruptions (below 1: more
robust than the baseline). The paper's baseline is AlexNet; here it is any report you pass.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .corruptions import check_severity, corruption_names


@dataclass(frozen=True)
class CorruptionPlan:
    """The corruptions (by name, in order) and the severities every one of them is evaluated at."""

    names: tuple[str, ...]
    severities: tuple[int, ...]

    @property
    def cells(self) -> list[tuple[int, str, int]]:
        """``(corruption index, name, severity)`` for every evaluated cell."""
        return [(ci, name, s) for ci, name in enumerate(self.names) for s in self.severities]


def plan_corruptions(corruptions: object, severities: object) -> CorruptionPlan | None:
    """Validate ``corruptions`` ('all', a group, a name or a list of names; None: none) and ``severities``."""
    if corruptions is None:
        return None
    names = corruption_names(corruptions)  # type: ignore[arg-type]  # checked inside: str or iterable of str
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions lists a name twice: {list(names)}; give each corruption once.")
    if isinstance(severities, int) and not isinstance(severities, bool):
        severities = (severities,)
    if isinstance(severities, str) or not isinstance(severities, Iterable):
        raise TypeError(f"severities must be a list of ints from 1 to 5, e.g. (1, 2, 3, 4, 5), got {severities!r}.")
    sev = tuple(check_severity(s) for s in severities)
    if not sev:
        raise ValueError("severities is empty; pass at least one of 1, 2, 3, 4, 5.")
    if len(set(sev)) != len(sev):
        raise ValueError(f"severities lists a value twice: {list(sev)}.")
    return CorruptionPlan(names, tuple(sorted(sev)))


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass(frozen=True)
class CorruptionResults:
    """Correct classifications under each corruption and severity, over ``n`` images (``n_clean_correct`` clean).

    ``seconds[name]``: time spent corrupting and classifying under ``name`` (all severities).
    """

    n: int
    n_clean_correct: int
    correct: dict[str, dict[int, int]]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.correct)

    @property
    def severities(self) -> list[int]:
        return sorted({s for row in self.correct.values() for s in row})

    @property
    def clean_accuracy(self) -> float:
        return self.n_clean_correct / self.n if self.n else math.nan

    @property
    def accuracy(self) -> dict[str, dict[int, float]]:
        """``accuracy[name][severity]``: top-1 accuracy on the corrupted images."""
        return {c: {s: k / self.n if self.n else math.nan for s, k in row.items()} for c, row in self.correct.items()}

    def corruption_accuracy(self, name: str) -> float:
        """Accuracy under ``name``, averaged over its severities."""
        if name not in self.correct:
            raise KeyError(f"corruption {name!r} was not evaluated; evaluated: {', '.join(self.correct)}.")
        row = self.accuracy[name]
        return sum(row.values()) / len(row)

    @property
    def mean_accuracy(self) -> float:
        """Mean accuracy over every evaluated corruption and severity (ImageNet-C's "mean corruption accuracy")."""
        cells = [a for row in self.accuracy.values() for a in row.values()]
        return sum(cells) / len(cells) if cells else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "n_clean_correct": self.n_clean_correct, "severities": self.severities,
                "mean_accuracy": _num(self.mean_accuracy),
                "accuracy": {c: {str(s): _num(a) for s, a in row.items()} for c, row in self.accuracy.items()},
                "correct": {c: {str(s): k for s, k in row.items()} for c, row in self.correct.items()},
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CorruptionResults:
        return cls(n=int(d["n"]), n_clean_correct=int(d["n_clean_correct"]),
                   correct={str(c): {int(s): int(k) for s, k in row.items()} for c, row in d["correct"].items()},
                   seconds={str(c): float(v) for c, v in d.get("seconds", {}).items()})


@dataclass(frozen=True)
class CorruptionError:
    """ImageNet-C's corruption errors of a model against a baseline (see the module docstring).

    ``ce[name]`` / ``relative_ce[name]`` are None where the baseline's denominator is 0 (the baseline made no
    error, or no error beyond its clean error, under that corruption); ``mce`` / ``relative_mce`` average
    the defined ones (NaN if none is).
    """

    ce: dict[str, float | None]
    relative_ce: dict[str, float | None]
    severities: tuple[int, ...]

    @staticmethod
    def _mean(vals: Iterable[float | None]) -> float:
        ok = [v for v in vals if v is not None]
        return sum(ok) / len(ok) if ok else math.nan

    @property
    def mce(self) -> float:
        return self._mean(self.ce.values())

    @property
    def relative_mce(self) -> float:
        return self._mean(self.relative_ce.values())

    def to_dict(self) -> dict[str, Any]:
        return {"mce": _num(self.mce), "relative_mce": _num(self.relative_mce), "severities": list(self.severities),
                "ce": self.ce, "relative_ce": self.relative_ce}


def corruption_error(results: CorruptionResults, baseline: CorruptionResults) -> CorruptionError:
    """CE and relative CE of ``results`` against ``baseline`` over ``results``' corruptions and severities.

    The baseline must have been evaluated on every one of them (same data and seed for a fair comparison)."""
    if not isinstance(baseline, CorruptionResults):
        raise TypeError(f"the baseline must hold corruption results, got {type(baseline).__name__}.")
    missing = [f"{c}@{s}" for c, row in results.correct.items() for s in row
               if c not in baseline.correct or s not in baseline.correct[c]]
    if missing:
        raise ValueError(f"the baseline was not evaluated on {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}; "
                         "evaluate both models with the same corruptions and severities.")
    e_clean, b_clean = 1 - results.clean_accuracy, 1 - baseline.clean_accuracy
    ce: dict[str, float | None] = {}
    rel: dict[str, float | None] = {}
    for c, row in results.accuracy.items():
        sevs = list(row)
        err = [1 - row[s] for s in sevs]
        berr = [1 - baseline.accuracy[c][s] for s in sevs]
        ce[c] = sum(err) / sum(berr) if sum(berr) > 0 else None
        bden = sum(b - b_clean for b in berr)
        rel[c] = sum(e - e_clean for e in err) / bden if bden > 0 else None
    return CorruptionError(ce, rel, tuple(results.severities))


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{100 * v:.1f}"


def markdown_table(res: CorruptionResults, baseline_error: CorruptionError | None = None) -> list[str]:
    """Accuracy (%) per corruption (rows) and severity (columns), with the per-corruption mean (and CE)."""
    sevs = res.severities
    head = ["corruption", *[f"s{s}" for s in sevs], "mean"] + (["CE", "rel. CE"] if baseline_error else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    acc = res.accuracy
    for c in res.names:
        cells = [c, *[_pct(acc[c].get(s, math.nan)) for s in sevs], _pct(res.corruption_accuracy(c))]
        if baseline_error:
            cells += [_ratio(baseline_error.ce.get(c)), _ratio(baseline_error.relative_ce.get(c))]
        lines.append("| " + " | ".join(cells) + " |")
    means = [sum(acc[c][s] for c in res.names) / len(res.names) for s in sevs]
    last = ["**mean**", *[_pct(m) for m in means], f"**{_pct(res.mean_accuracy)}**"]
    if baseline_error:
        last += [f"**{_ratio(baseline_error.mce)}**", f"**{_ratio(baseline_error.relative_mce)}**"]
    return lines + ["| " + " | ".join(last) + " |"]


def _ratio(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.3f}"


__all__ = ["CorruptionError", "CorruptionPlan", "CorruptionResults", "corruption_error", "markdown_table",
           "plan_corruptions"]

