"""Text forms of a ``Report``: the Markdown page and the terminal summary (the worst case first)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import AttackResult, Report

WORST = "worst case"


def _pct(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f} %"


def _ssim(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.4f}"


def _head(targeted: bool) -> list[str]:
    return ["attack", "norm", "eps", "ASR", "robust acc"] + (["targeted SR"] if targeted else []) + \
        ["mean L∞", "max L∞", "mean L2", "max L2", "mean SSIM", "shared energy", "adv-class entropy", "img/s", "seconds"]


def _row(name: str, r: AttackResult, targeted: bool) -> list[str]:
    row = [name, r.norm, f"{r.eps:g}", _pct(r.attack_success_rate), _pct(r.robust_accuracy)]
    if targeted:
        row.append(_pct(r.targeted_success_rate))
    return row + [f"{r.mean_linf:.4f}", f"{r.max_linf:.4f}", f"{r.mean_l2:.4f}", f"{r.max_l2:.4f}", _ssim(r.mean_ssim),
                  _ssim(r.shared_energy), _ssim(r.adv_class_entropy), f"{r.images_per_second:,.0f}", f"{r.seconds:.2f}"]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _worst_line(report: Report) -> list[str]:
    w = report.worst_own
    if w is None:
        return []
    names = ", ".join(report.results)
    return [f"**Worst case over all attacks ({names}): robust accuracy {_pct(w.robust_accuracy)}** "
            f"({w.n_robust} / {w.n} images survived every attack at its own budget). Quote this number.", ""]


def markdown(report: Report) -> str:
    """The report as a Markdown page: worst case, the attacks table, budget sweeps, sanity checks."""
    lines = ["# Robustness evaluation", ""]
    m = report.meta
    if m:
        bits = [f"{k}: {m[k]}" for k in ("dataset", "model", "device", "targeted", "amp", "seed") if k in m]
        lines += ["; ".join(bits), ""]
    lines += _worst_line(report)
    lines += [f"Clean accuracy: **{_pct(report.clean_accuracy)}** ({report.n_correct} / {report.n} images). "
              "Attack success rate (ASR) counts only inputs the model classified correctly. SSIM compares each "
              "adversarial image with its clean image (1: identical).", ""]
    targeted = any(report[name].n_target_hits is not None for name in report.results)
    head = _head(targeted)
    rows = [_row(WORST, report.worst_own, targeted)] if report.worst_own is not None else []
    if report.results:
        lines += _table(head, rows + [_row(name, report[name], targeted) for name in report.results])
    for norm, pts in report.worst_curves().items():
        if len(pts) > 1:
            lines += ["", f"## {WORST} ({norm}): budget sweep", ""]
            lines += _table(head, [_row(WORST, r, targeted) for r in pts])
    for name in report.results:
        if len(report.results[name]) > 1:
            lines += ["", f"## {name}: budget sweep", ""]
            lines += _table(head, [_row(name, r, targeted) for _, r in report.curve(name)])
    lines += _corruption_lines(report)
    lines += ["", "## Sanity checks", ""]
    lines += [f"- ⚠ {f}" for f in report.flags] or ["- no problems flagged"]
    return "\n".join(lines) + "\n"


def _corruption_lines(report: Report) -> list[str]:
    res = report.corruption_results
    if res is None:
        return []
    from .corruption_results import markdown_table

    lines = ["", "## Natural corruptions", "",
            f"Mean corruption accuracy: **{_pct(res.mean_accuracy)}** over {len(res.names)} corruptions × severities "
            f"{', '.join(map(str, res.severities))} (clean {_pct(res.clean_accuracy)}). Accuracy in % on the corrupted "
            "images; corruption_heatmap.png draws the same table.", ""]
    ce = report.meta.get("corruption_error")
    if isinstance(ce, dict) and ce.get("mce") is not None:
        rel = ce.get("relative_mce")
        lines += [f"Against the baseline {ce.get('baseline', '')}: mCE **{ce['mce']:.3f}**, relative mCE "
                  f"**{rel:.3f}**" if rel is not None else f"Against the baseline: mCE **{ce['mce']:.3f}**",
                  "(ImageNet-C's corruption error: below 1 is more robust than the baseline).", ""]
    return lines + markdown_table(res)


def _summary_row(name: str, r: AttackResult) -> str:
    t = f"  targeted {_pct(r.targeted_success_rate)}" if r.n_target_hits is not None else ""
    return (f"{name:<24} eps={r.eps:<7g} ASR {_pct(r.attack_success_rate):>8}  robust acc {_pct(r.robust_accuracy):>8}{t}  "
            f"mean L∞ {r.mean_linf:.3f}  L2 {r.mean_l2:.3f}  SSIM {_ssim(r.mean_ssim)}  {r.images_per_second:,.0f} img/s")


def summary(report: Report) -> str:
    rows = [f"clean accuracy {_pct(report.clean_accuracy)} on {report.n} images"]
    if report.worst_own is not None:
        rows.append(_summary_row(WORST, report.worst_own))
    rows += [_summary_row(name, report[name]) for name in report.results]
    res = report.corruption_results
    if res is not None:
        worst = min(res.names, key=res.corruption_accuracy)
        rows.append(f"{'corruptions':<24} mean accuracy {_pct(res.mean_accuracy)} over {len(res.names)} corruptions × "
                    f"severities {','.join(map(str, res.severities))}; weakest: {worst} {_pct(res.corruption_accuracy(worst))}")
    rows += [f"WARNING: {f}" for f in report.flags]
    return "\n".join(rows)


__all__ = ["WORST", "markdown", "summary"]
