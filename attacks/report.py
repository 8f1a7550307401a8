"""The result of ``evaluate()``: numbers a person can read (Markdown, PNGs) and a machine can parse (JSON).

The number to quote is ``report.worst_case().robust_accuracy``: an input counts as robust only if it
survived every attack. It comes first in the Markdown, the JSON and the ε-curves.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, load_json, save_json
from .corruption_results import CorruptionError, CorruptionResults, corruption_error
from .report_text import WORST, markdown, summary

KIND = "evaluation_report"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class AttackResult:
    """One attack (or the worst case over attacks) at one budget.

    ``attack_success_rate``: fraction of the inputs the model classified correctly that the attack
    made it misclassify. ``robust_accuracy``: accuracy on the adversarial inputs, over all inputs.
    ``targeted_success_rate`` (targeted runs only): fraction of the correctly classified inputs
    classified as their target. Norms and SSIM are of ``x_adv`` against ``x`` over all inputs.
    ``n_invalid``: outputs evaluate() rejected (not finite, outside the bounds or the threat model);
    they count as inputs the attack did not break.
    """

    name: str
    eps: float
    norm: str
    n: int
    n_correct: int
    n_fooled: int
    n_robust: int
    n_target_hits: int | None
    mean_linf: float
    max_linf: float
    mean_l2: float
    max_l2: float
    seconds: float
    mean_ssim: float = math.nan
    n_invalid: int = 0
    attack: dict[str, Any] = field(default_factory=dict)
    #: ``||mean delta||^2 / mean ||delta||^2`` over all inputs (1: one universal perturbation; attacks.diagnostics)
    shared_energy: float = math.nan
    #: entropy (nats) of the classes the fooled inputs were sent to (0: every fooled input lands in one class)
    adv_class_entropy: float = math.nan

    @property
    def attack_success_rate(self) -> float:
        return self.n_fooled / self.n_correct if self.n_correct else float("nan")

    @property
    def robust_accuracy(self) -> float:
        return self.n_robust / self.n if self.n else float("nan")

    @property
    def targeted_success_rate(self) -> float | None:
        if self.n_target_hits is None:
            return None
        return self.n_target_hits / self.n_correct if self.n_correct else float("nan")

    @property
    def images_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(mean_ssim=_num(self.mean_ssim), shared_energy=_num(self.shared_energy),
                 adv_class_entropy=_num(self.adv_class_entropy), attack_success_rate=_num(self.attack_success_rate),
                 robust_accuracy=_num(self.robust_accuracy), targeted_success_rate=_num(self.targeted_success_rate),
                 images_per_second=_num(self.images_per_second))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackResult:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("mean_ssim", "shared_energy", "adv_class_entropy"):
            if kw.get(k) is None:
                kw.pop(k, None)  # absent or null (NaN in JSON): the default NaN
        return cls(**kw)


def _num(v: float | None) -> float | None:
    """JSON has no NaN/inf: store them as null."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


class Report:
    """Clean accuracy, the worst case, per-attack results (and eps curves), sanity checks and image grids.

    ``report.worst_case()`` is the worst case over all attacks at their own budgets (the number to
    quote); ``report["pgd"]`` is one attack at its own eps; ``report.curve("pgd")`` lists
    ``(eps, AttackResult)`` over the swept budgets (sorted). ``report.flags`` holds the warnings of
    the sanity checks and of the output verification, ``report.sanity`` their numbers.
    """

    def __init__(self, *, n: int, n_correct: int, results: dict[str, dict[float, AttackResult]],
                 own_eps: dict[str, float], flags: list[str] | None = None, sanity: dict[str, Any] | None = None,
                 meta: dict[str, Any] | None = None, grids: dict[str, Any] | None = None,
                 worst_own: AttackResult | None = None, worst_curve: Sequence[AttackResult] = (),
                 corruption_results: CorruptionResults | None = None) -> None:
        self.n = int(n)
        self.n_correct = int(n_correct)
        self.results = {k: dict(sorted(v.items())) for k, v in results.items()}
        self.own_eps = dict(own_eps)
        self.flags = list(flags or [])
        self.sanity = dict(sanity or {})
        self.meta = dict(meta or {})
        self.grids = grids or {}  # in memory only: {"clean", "labels", "preds_clean", "adv": {name: x}, "preds_adv"}
        self.worst_own = worst_own
        self.worst_curve = sorted(worst_curve, key=lambda r: (r.norm, r.eps))
        self.corruption_results = corruption_results

    # ------------------------------------------------------------------ access
    @property
    def clean_accuracy(self) -> float:
        return self.n_correct / self.n if self.n else float("nan")

    @property
    def attacks(self) -> list[str]:
        return list(self.results)

    # ------------------------------------------------------------------ natural corruptions
    @property
    def corruptions(self) -> dict[str, dict[int, float]]:
        """``corruptions[name][severity]``: accuracy on the corrupted images ({} without corruptions)."""
        return self.corruption_results.accuracy if self.corruption_results is not None else {}

    def _need_corruptions(self) -> CorruptionResults:
        if self.corruption_results is None:
            raise ValueError("this report has no corruption results; evaluate with corruptions='all' (or a list of names).")
        return self.corruption_results

    @property
    def mean_corruption_accuracy(self) -> float:
        """Mean accuracy over every evaluated corruption and severity."""
        return self._need_corruptions().mean_accuracy

    def corruption_error(self, baseline: Report) -> CorruptionError:
        """ImageNet-C's corruption error against ``baseline`` (another model's report on the same data and
        corruptions): ``.mce``, ``.relative_mce`` and per corruption ``.ce[name]``, ``.relative_ce[name]``."""
        if not isinstance(baseline, Report):
            raise TypeError(f"baseline must be a Report (of the baseline model), got {type(baseline).__name__}.")
        if baseline.corruption_results is None:
            raise ValueError("the baseline report has no corruption results; evaluate the baseline with the same corruptions.")
        return corruption_error(self._need_corruptions(), baseline.corruption_results)

    def __getitem__(self, name: str) -> AttackResult:
        if name not in self.results:
            raise KeyError(f"no attack {name!r} in this report; attacks: {', '.join(self.results)}.")
        return self.results[name][self.own_eps[name]]

    def __contains__(self, name: object) -> bool:
        return name in self.results

    def curve(self, name: str) -> list[tuple[float, AttackResult]]:
        if name not in self.results:
            raise KeyError(f"no attack {name!r} in this report; attacks: {', '.join(self.results)}.")
        return sorted(self.results[name].items())

    def worst_case(self, eps: float | None = None, *, norm: str | None = None) -> AttackResult:
        """Worst case over every attack: an input is robust only if it survived them all (and was classified
        correctly). ``eps=None``: each attack at its own budget; ``eps``: every attack (of ``norm``) at ``eps``."""
        if eps is None:
            if self.worst_own is None:
                raise ValueError("this report has no worst case (no attacks were evaluated, or it was written before "
                                 "evaluate() computed it); evaluate with attacks.")
            if norm is not None and self.worst_own.norm != norm:
                raise ValueError(f"the attacks' own budgets are of norm {self.worst_own.norm!r}, not {norm!r}; "
                                 "pass eps= for the worst case at one budget of that norm.")
            return self.worst_own
        pts = [r for r in self.worst_curve if r.eps == float(eps) and (norm is None or r.norm == norm)]
        if len(pts) > 1:
            raise ValueError(f"the worst case at eps={eps:g} exists for several norms ({', '.join(r.norm for r in pts)}); "
                             "pass norm='linf' or norm='l2'.")
        if not pts:
            have = ", ".join(f"{r.norm} {r.eps:g}" for r in self.worst_curve) or "none"
            raise ValueError(f"no worst case at eps={eps:g}{f' ({norm})' if norm else ''}: it needs every attack of that "
                             f"norm evaluated at that budget (add it to evaluate(epsilons=...)); budgets with a worst "
                             f"case: {have}.")
        return pts[0]

    def worst_curves(self) -> dict[str, list[AttackResult]]:
        """The worst-case ε-curve of each norm (sorted by eps)."""
        out: dict[str, list[AttackResult]] = {}
        for r in self.worst_curve:
            out.setdefault(r.norm, []).append(r)
        return out

    @property
    def swept(self) -> bool:
        return any(len(v) > 1 for v in self.results.values())

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        worst = None if self.worst_own is None else {"own": self.worst_own.to_dict(),
                                                     "curve": [r.to_dict() for r in self.worst_curve]}
        return {
            "kind": KIND, "format_version": FORMAT_VERSION,
            "worst_case": worst,
            "n": self.n, "n_correct": self.n_correct, "clean_accuracy": _num(self.clean_accuracy),
            "flags": self.flags,
            "attacks": {name: {"eps": self.own_eps[name], **self[name].to_dict(),
                               "curve": [r.to_dict() for _, r in self.curve(name)]} for name in self.results},
            "order": list(self.results), "sanity": self.sanity, "meta": self.meta,
            "corruptions": self.corruption_results.to_dict() if self.corruption_results is not None else None,
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the report as JSON (atomic), the worst case first."""
        return save_json(path, self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        if not isinstance(d, dict) or d.get("kind") != KIND:
            kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
            raise CheckpointError(f"not an evaluation report (kind={kind!r}).")
        try:
            order = d.get("order") or sorted(d["attacks"])
            results = {name: {float(r["eps"]): AttackResult.from_dict(r) for r in d["attacks"][name]["curve"]} for name in order}
            own = {name: float(d["attacks"][name]["eps"]) for name in order}
            worst = d.get("worst_case") or {}
            corr = d.get("corruptions")
            return cls(n=d["n"], n_correct=d["n_correct"], results=results, own_eps=own, flags=d.get("flags"),
                       sanity=d.get("sanity"), meta=d.get("meta"),
                       worst_own=AttackResult.from_dict(worst["own"]) if worst.get("own") else None,
                       worst_curve=[AttackResult.from_dict(r) for r in worst.get("curve", [])],
                       corruption_results=CorruptionResults.from_dict(corr) if corr else None)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"evaluation report is missing or has a malformed field ({e!r}).") from None

    @classmethod
    def from_json(cls, path: str | Path) -> Report:
        return cls.from_dict(load_json(path, what="evaluation report"))

    def to_markdown(self) -> str:
        return markdown(self)

    def summary(self) -> str:
        """A short plain-text table for terminals (the worst case first)."""
        return summary(self)

    def save(self, directory: str | Path) -> Path:
        """Write report.json, report.md, eps_curve.png (if swept), grid.png (if images were kept) and
        corruption_heatmap.png (if corruptions were evaluated)."""
        from .checkpoint import atomic_write_text
        from .plots import attack_grid, plot_corruption_heatmap, plot_eps_curves

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.to_json(d / "report.json")
        atomic_write_text(d / "report.md", self.to_markdown())
        if self.swept:
            curves: dict[str, list[tuple[float, float, float]]] = {}
            for norm, pts in self.worst_curves().items():
                if len(pts) > 1:
                    label = WORST if len(self.worst_curves()) == 1 else f"{WORST} ({norm})"
                    curves[label] = [(r.eps, r.robust_accuracy, r.attack_success_rate) for r in pts]
            for name in self.results:
                curves[name] = [(e, r.robust_accuracy, r.attack_success_rate) for e, r in self.curve(name)]
            plot_eps_curves(curves, d / "eps_curve.png", clean_accuracy=self.clean_accuracy,
                            highlight=[k for k in curves if k.startswith(WORST)])
        g = self.grids
        if g and g.get("adv"):
            attack_grid(g["clean"], g["adv"], g["preds_clean"], g["preds_adv"], d / "grid.png")
        if self.corruption_results is not None:
            plot_corruption_heatmap(self.corruptions, d / "corruption_heatmap.png", clean_accuracy=self.clean_accuracy)
        return d

    def __repr__(self) -> str:
        worst = f", worst_case={self.worst_own.robust_accuracy:.4f}" if self.worst_own is not None else ""
        corr = (f", mean_corruption_accuracy={self.mean_corruption_accuracy:.4f}"
                if self.corruption_results is not None else "")
        return (f"Report(n={self.n}, clean_accuracy={self.clean_accuracy:.4f}{worst}{corr}, attacks={self.attacks}, "
                f"flags={len(self.flags)})")


__all__ = ["WORST", "AttackResult", "Report"]
