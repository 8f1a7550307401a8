"""The result of ``evaluate()``: numbers a person can read (Markdown, PNGs) and a machine can parse (JSON)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .checkpoint import CheckpointError, load_json, save_json

KIND = "evaluation_report"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class AttackResult:
    """One attack at one budget.

    ``attack_success_rate``: fraction of the inputs the model classified correctly that the attack
    made it misclassify. ``robust_accuracy``: accuracy on the adversarial inputs, over all inputs.
    ``targeted_success_rate`` (targeted runs only): fraction of the correctly classified inputs
    classified as their target. Norms are of ``x_adv - x`` over all inputs.
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
    attack: dict = field(default_factory=dict)

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(attack_success_rate=_num(self.attack_success_rate), robust_accuracy=_num(self.robust_accuracy),
                 targeted_success_rate=_num(self.targeted_success_rate), images_per_second=_num(self.images_per_second))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AttackResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _num(v: float | None) -> float | None:
    """JSON has no NaN/inf: store them as null."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


def _pct(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f} %"


class Report:
    """Clean accuracy, per-attack results (and eps curves), sanity checks and image grids.

    ``report["pgd"]`` is the result at the attack's own eps; ``report.curve("pgd")`` lists
    ``(eps, AttackResult)`` over the swept budgets (sorted). ``report.flags`` holds the warnings of
    the sanity checks, ``report.sanity`` their numbers.
    """

    def __init__(self, *, n: int, n_correct: int, results: dict[str, dict[float, AttackResult]],
                 own_eps: dict[str, float], flags: list[str] | None = None, sanity: dict | None = None,
                 meta: dict | None = None, grids: dict | None = None) -> None:
        self.n = int(n)
        self.n_correct = int(n_correct)
        self.results = {k: dict(sorted(v.items())) for k, v in results.items()}
        self.own_eps = dict(own_eps)
        self.flags = list(flags or [])
        self.sanity = dict(sanity or {})
        self.meta = dict(meta or {})
        self.grids = grids or {}  # in memory only: {"clean", "preds_clean", "adv": {name: x}, "preds_adv": {name: p}}

    # ------------------------------------------------------------------ access
    @property
    def clean_accuracy(self) -> float:
        return self.n_correct / self.n if self.n else float("nan")

    @property
    def attacks(self) -> list[str]:
        return list(self.results)

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

    @property
    def swept(self) -> bool:
        return any(len(v) > 1 for v in self.results.values())

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "kind": KIND, "format_version": FORMAT_VERSION,
            "n": self.n, "n_correct": self.n_correct, "clean_accuracy": _num(self.clean_accuracy),
            "attacks": {name: {"eps": self.own_eps[name], **self[name].to_dict(),
                               "curve": [r.to_dict() for _, r in self.curve(name)]} for name in self.results},
            "order": list(self.results), "flags": self.flags, "sanity": self.sanity, "meta": self.meta,
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the report as JSON (atomic)."""
        return save_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        if d.get("kind") != KIND:
            raise CheckpointError(f"not an evaluation report (kind={d.get('kind')!r}).")
        try:
            order = d.get("order") or sorted(d["attacks"])
            results = {name: {float(r["eps"]): AttackResult.from_dict(r) for r in d["attacks"][name]["curve"]} for name in order}
            own = {name: float(d["attacks"][name]["eps"]) for name in order}
            return cls(n=d["n"], n_correct=d["n_correct"], results=results, own_eps=own, flags=d.get("flags"),
                       sanity=d.get("sanity"), meta=d.get("meta"))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"evaluation report is missing or has a malformed field ({e!r}).") from None

    @classmethod
    def from_json(cls, path: str | Path) -> Report:
        return cls.from_dict(load_json(path, what="evaluation report"))

    def to_markdown(self) -> str:
        lines = ["# Robustness evaluation", ""]
        m = self.meta
        if m:
            bits = [f"{k}: {m[k]}" for k in ("dataset", "model", "device", "targeted", "amp", "seed") if k in m]
            lines += ["; ".join(bits), ""]
        lines += [f"Clean accuracy: **{_pct(self.clean_accuracy)}** ({self.n_correct} / {self.n} images). "
                  "Attack success rate (ASR) counts only inputs the model classified correctly.", ""]
        targeted = any(self[name].n_target_hits is not None for name in self.results)
        head = ["attack", "norm", "eps", "ASR", "robust acc"] + (["targeted SR"] if targeted else []) + \
               ["mean L∞", "max L∞", "mean L2", "max L2", "img/s", "seconds"]
        lines += _table(head, [_row(name, self[name], targeted) for name in self.results])
        for name in self.results:
            if len(self.results[name]) > 1:
                lines += ["", f"## {name}: budget sweep", ""]
                lines += _table(head, [_row(name, r, targeted) for _, r in self.curve(name)])
        lines += ["", "## Sanity checks", ""]
        lines += [f"- ⚠ {f}" for f in self.flags] or ["- no problems flagged"]
        return "\n".join(lines) + "\n"

    def save(self, directory: str | Path) -> Path:
        """Write report.json, report.md, eps_curve.png (if swept) and grid.png (if images were kept)."""
        from .checkpoint import atomic_write_text
        from .plots import attack_grid, plot_eps_curves

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.to_json(d / "report.json")
        atomic_write_text(d / "report.md", self.to_markdown())
        if self.swept:
            curves = {name: [(e, r.robust_accuracy, r.attack_success_rate) for e, r in self.curve(name)] for name in self.results}
            plot_eps_curves(curves, d / "eps_curve.png", clean_accuracy=self.clean_accuracy)
        g = self.grids
        if g and g.get("adv"):
            attack_grid(g["clean"], g["adv"], g["preds_clean"], g["preds_adv"], d / "grid.png")
        return d

    def summary(self) -> str:
        """A short plain-text table for terminals."""
        rows = [f"clean accuracy {_pct(self.clean_accuracy)} on {self.n} images"]
        for name in self.results:
            r = self[name]
            t = f"  targeted {_pct(r.targeted_success_rate)}" if r.n_target_hits is not None else ""
            rows.append(f"{name:<24} eps={r.eps:<7g} ASR {_pct(r.attack_success_rate):>8}  robust acc "
                        f"{_pct(r.robust_accuracy):>8}{t}  mean L∞ {r.mean_linf:.3f}  L2 {r.mean_l2:.3f}  "
                        f"{r.images_per_second:,.0f} img/s")
        rows += [f"WARNING: {f}" for f in self.flags]
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Report(n={self.n}, clean_accuracy={self.clean_accuracy:.4f}, attacks={self.attacks}, flags={len(self.flags)})"


def _row(name: str, r: AttackResult, targeted: bool) -> list[str]:
    row = [name, r.norm, f"{r.eps:g}", _pct(r.attack_success_rate), _pct(r.robust_accuracy)]
    if targeted:
        row.append(_pct(r.targeted_success_rate))
    return row + [f"{r.mean_linf:.4f}", f"{r.max_linf:.4f}", f"{r.mean_l2:.4f}", f"{r.max_l2:.4f}",
                  f"{r.images_per_second:,.0f}", f"{r.seconds:.2f}"]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


__all__ = ["AttackResult", "Report"]
