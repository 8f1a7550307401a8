"""Before/after report of a defense: clean and robust accuracy, attack success rates, cost per epoch.

``rep = before_after({"undefended": clf, "pgd-at": robust}, test_loader, eps=0.3, original_attacker=atk,
train_loader=train_loader)`` evaluates every model (``attacks.evaluate``) under PGD-40, FGSM, the
original AdvGAN attacker (trained against the undefended model), with ``retrain=True`` an AdvGAN
attacker **retrained against each defended model** — the attack a defender actually faces — and, with
``autoattack=True``, AutoAttack standard. ``robust_acc_worst`` counts an image as robust only if it survived
every attack of its row (the number to quote); ``pgd_overestimate`` is PGD's robust accuracy minus it. Seconds
per epoch come from the fine-tuning histories (``train_seconds``) and are compared with a clean epoch.
With ``corruptions="all"`` every model is also measured under the natural corruptions of ImageNet-C
(mean corruption accuracy, mCE against the first model, a table per corruption).
``rep.to_markdown()``, ``rep.to_json(path)``, ``rep.save(dir)``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from attacks import FGSM, PGD, AutoAttack, evaluate
from attacks.checkpoint import atomic_write_text, save_json
from attacks.checks import check_eps
from attacks.corruption_results import plan_corruptions
from attacks.corruptions import SEVERITIES

COLUMNS = ("clean_acc", "robust_acc_pgd", "robust_acc_fgsm", "robust_acc_advgan", "asr_advgan",
           "robust_acc_advgan_retrained", "asr_advgan_retrained", "seconds_per_epoch", "epoch_cost_vs_clean",
           "robust_acc_autoattack", "robust_acc_worst", "pgd_overestimate")
#: with corruptions=: mean accuracy over every corruption and severity, and ImageNet-C's mCE vs the first model
CORRUPTION_COLUMNS = ("mean_corruption_acc", "mce", "relative_mce")


@dataclass
class DefenseReport:
    """One row per model (``rows[name][column]``, ``None`` where not measured) plus settings.

    ``corruptions[model][corruption][severity]``: accuracy under each natural corruption (with ``corruptions=``)."""

    rows: dict[str, dict[str, float | None]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    corruptions: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        clean = {k: {c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in r.items()} for k, r in self.rows.items()}
        corr = {m: {c: {str(s): a for s, a in row.items()} for c, row in t.items()} for m, t in self.corruptions.items()}
        return {"rows": clean, "meta": self.meta, "corruptions": corr or None}

    def to_json(self, path: str | Path) -> Path:
        return save_json(path, self.to_dict())

    def to_markdown(self) -> str:
        m = self.meta
        pgd = f"PGD-{m.get('pgd_steps', 40)}"
        aa = any(r.get("robust_acc_autoattack") is not None for r in self.rows.values())
        head = ["model", "clean acc", "worst case (every attack)", f"robust acc ({pgd})", *(["AutoAttack"] if aa else []),
                "robust acc (FGSM)", "AdvGAN (original) ASR", "AdvGAN (retrained) ASR", "s / epoch", "epoch cost vs clean"]
        lines = [f"Threat model: {m.get('norm', 'linf')} ε = {m.get('eps')}; {m.get('n', '?')} test images.", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, r in self.rows.items():
            cells = [name, _pct(r.get("clean_acc")), _pct(r.get("robust_acc_worst")), _pct(r.get("robust_acc_pgd")),
                     *([_pct(r.get("robust_acc_autoattack"))] if aa else []), _pct(r.get("robust_acc_fgsm")),
                     _pct(r.get("asr_advgan")), _pct(r.get("asr_advgan_retrained")), _num(r.get("seconds_per_epoch")),
                     _ratio(r.get("epoch_cost_vs_clean"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "ASR: share of the correctly classified test images that the attack makes misclassified. "
                  "The retrained AdvGAN is trained against each model itself. Worst case: an image counts as "
                  "robust only if it survived every attack of its row."]
        return "\n".join(lines + self._corruption_markdown())

    def _corruption_markdown(self) -> list[str]:
        """Natural corruptions, before and after: mean accuracy and mCE per model, then accuracy per corruption."""
        if not self.corruptions:
            return []
        models = list(self.corruptions)
        base = models[0]
        sevs = self.meta.get("severities", [])
        lines = ["", f"Natural corruptions ({len(next(iter(self.corruptions.values())))} corruptions × severities "
                 f"{', '.join(map(str, sevs))}; mCE against {base!r}, below 1 is more robust):", "",
                 "| model | clean acc | mean corruption acc | mCE | relative mCE |", "|---|---|---|---|---|"]
        for name in models:
            r = self.rows.get(name, {})
            lines.append(f"| {name} | {_pct(r.get('clean_acc'))} | {_pct(r.get('mean_corruption_acc'))} | "
                         f"{_num3(r.get('mce'))} | {_num3(r.get('relative_mce'))} |")
        lines += ["", "| corruption (mean over severities) | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for c in self.corruptions[base]:
            cells = [_pct(sum(self.corruptions[m][c].values()) / len(self.corruptions[m][c])) for m in models]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        return lines

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.to_json(d / "defense_report.json")
        atomic_write_text(d / "defense_report.md", self.to_markdown() + "\n")
        return d


def _pct(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.1f}%"


def _num(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}"


def _num3(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _ratio(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}×"


def epoch_seconds(history: Any) -> float | None:
    """Mean training seconds per epoch of a fine-tuning history (validation excluded)."""
    eps = [e["train_seconds"] for e in getattr(history, "epochs", []) if math.isfinite(e.get("train_seconds", float("nan")))]
    return sum(eps) / len(eps) if eps else None


def retrain_attacker(model: nn.Module, train_loader: Any, *, eps: float, norm: str = "linf", epochs: int = 2,
                     attacker_config: Any = None, out_dir: str | Path | None = None) -> Any:
    """A fresh AdvGAN attacker trained against ``model``; returns its Attack."""
    from advgan.attacker import AdvGAN, AdvGANConfig

    cfg = attacker_config or AdvGANConfig(eps=eps, norm=norm, progress=False)
    atk = AdvGAN(model, cfg)
    atk.fit(train_loader, epochs, out_dir=out_dir)
    return atk.as_attack()


def before_after(models: Mapping[str, nn.Module], test_loader: Any, *, eps: float, norm: str = "linf",
                 original_attacker: Any = None, retrain: bool | Sequence[str] = False, train_loader: Any = None,
                 attacker_config: Any = None, attacker_epochs: int = 2, pgd_steps: int = 40,
                 histories: Mapping[str, Any] | None = None, clean_epoch_seconds: float | None = None,
                 max_batches: int | None = None, seed: int = 0, progress: bool = False,
                 out_dir: str | Path | None = None, corruptions: str | Sequence[str] | None = None,
                 severities: Sequence[int] = SEVERITIES, autoattack: bool | str = False) -> DefenseReport:
    """Evaluate each model of ``models`` (first = the undefended baseline by convention); see the module docstring.

    ``histories[name]``: the fine-tuning history of a model (for seconds per epoch);
    ``clean_epoch_seconds``: seconds of one clean-training epoch on the same data (for the cost ratio).
    ``out_dir``: retrained attackers are saved under ``out_dir/attackers/<name>`` (and resumed from there).
    ``retrain``: True for every model, or a list of model names (AdvGAN training is the costly part).
    ``autoattack``: also run AutoAttack (True: ``"standard"``, or a version name) on every model.
    ``corruptions``: also measure accuracy under natural corruptions ('all', a family or names) at
    ``severities``, the same corrupted images for every model: mean corruption accuracy, ImageNet-C's mCE
    against the first model, and ``rep.corruptions``.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict {name: Classifier}, e.g. {'before': clf, 'after': robust}.")
    eps = check_eps(eps, norm)
    plan_corruptions(corruptions, severities)  # bad names or severities fail before any model is evaluated
    if autoattack not in (False, True) and not isinstance(autoattack, str):
        raise TypeError(f"autoattack must be True, False or an AutoAttack version name, got {autoattack!r}.")
    if retrain and train_loader is None:
        raise ValueError("retrain=True trains an AdvGAN attacker against each model: pass train_loader.")
    attacks: dict[str, Any] = {"pgd": PGD(eps=eps, norm=norm, steps=pgd_steps, seed=seed),
                               "fgsm": FGSM(eps=eps, norm=norm)}
    if original_attacker is not None:
        attacks["advgan"] = original_attacker
    if autoattack is not False:  # a bad version name fails here, before any model is evaluated
        attacks["autoattack"] = AutoAttack(eps, norm=norm, version="standard" if autoattack is True else autoattack,
                                           seed=seed)
    rep = DefenseReport(meta={"eps": eps, "norm": norm, "pgd_steps": pgd_steps,
                              "retrained_attacker_epochs": attacker_epochs if retrain else None,
                              "clean_epoch_seconds": clean_epoch_seconds})
    if corruptions is not None:
        rep.meta["severities"] = sorted(severities)
    baseline = None
    for name, model in models.items():
        atks = dict(attacks)
        retrain_this = retrain is True or (not isinstance(retrain, bool) and name in retrain)
        if retrain_this:
            adir = Path(out_dir) / "attackers" / name.replace("/", "_") if out_dir is not None else None
            atks["advgan_retrained"] = retrain_attacker(model, train_loader, eps=eps, norm=norm, epochs=attacker_epochs,
                                                        attacker_config=attacker_config, out_dir=adir)
        r = evaluate(model, test_loader, atks, max_batches=max_batches, seed=seed, progress=progress,
                     sanity_checks=False, grid_images=0, corruptions=corruptions, severities=severities)
        row: dict[str, float | None] = {c: None for c in COLUMNS}
        row["clean_acc"] = r.clean_accuracy
        row["robust_acc_pgd"] = r["pgd"].robust_accuracy
        row["robust_acc_fgsm"] = r["fgsm"].robust_accuracy
        if "autoattack" in atks:
            row["robust_acc_autoattack"] = r["autoattack"].robust_accuracy
        worst = r.worst_case().robust_accuracy
        row["robust_acc_worst"] = worst
        row["pgd_overestimate"] = r["pgd"].robust_accuracy - worst
        if "advgan" in atks:
            row["robust_acc_advgan"] = r["advgan"].robust_accuracy
            row["asr_advgan"] = r["advgan"].attack_success_rate
        if retrain_this:
            row["robust_acc_advgan_retrained"] = r["advgan_retrained"].robust_accuracy
            row["asr_advgan_retrained"] = r["advgan_retrained"].attack_success_rate
        sec = epoch_seconds(histories[name]) if histories and name in histories else None
        row["seconds_per_epoch"] = sec
        if sec is not None and clean_epoch_seconds:
            row["epoch_cost_vs_clean"] = sec / clean_epoch_seconds
        if r.corruption_results is not None:
            baseline = baseline or r
            ce = r.corruption_error(baseline)
            row.update(mean_corruption_acc=r.mean_corruption_accuracy, mce=ce.mce, relative_mce=ce.relative_mce)
            rep.corruptions[name] = r.corruptions
        rep.rows[name] = row
        rep.meta["n"] = r.n if hasattr(r, "n") else None
    if out_dir is not None:
        rep.save(out_dir)
    return rep
