"""Sanity checks of an evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness"; AutoAttack's flags).

Measured during ``evaluate()`` (zero input gradients, probability outputs, PGD vs FGSM per sample,
foolbox cross-check) and checked on the results (success non-decreasing in eps, ~100 % at a large
eps). Numbers go to ``report.sanity``; warnings to ``report.flags``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import input_gradient
from .report import AttackResult


def zero_grad_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of inputs whose cross-entropy input gradient is exactly zero (a gradient-masking symptom)."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg).float(), y, reduction="sum")
        g = input_gradient(loss, xg)
    return (g.flatten(1).abs().amax(1) == 0).float().mean()


def pgd_fgsm_pairs(variants: dict[str, dict[float, Any]]) -> list[tuple[str, str, float]]:
    """(pgd name, fgsm name, eps) for every PGD/FGSM pair of the same norm sharing a budget."""
    from .fgsm import FGSM
    from .pgd import PGD

    out = []
    pgds = [n for n, v in variants.items() if isinstance(next(iter(v.values())), PGD)]
    fgsms = [n for n, v in variants.items() if isinstance(next(iter(v.values())), FGSM)]
    for p in pgds:
        for f in fgsms:
            if variants[p][next(iter(variants[p]))].norm != variants[f][next(iter(variants[f]))].norm:
                continue
            out += [(p, f, e) for e in variants[p] if e in variants[f]]
    return out


def run_foolbox_crosscheck(model, variants, x, y, correct, succ_of) -> dict[str, torch.Tensor]:
    """Run foolbox LinfPGD with the settings of our first L-inf PGD on this batch (untargeted); both success counts."""
    from .foolbox_bridge import FoolboxAttack
    from .pgd import PGD

    for name, vs in variants.items():
        e = next(iter(vs))
        atk = vs[e]
        if isinstance(atk, PGD) and atk.norm == "linf":
            fb = FoolboxAttack("LinfPGD", eps=atk.eps, steps=atk.steps, rel_stepsize=atk.step_size / atk.eps,
                               random_start=atk.random_start)
            x_fb = fb(model, x, y)
            with torch.no_grad():
                pa = model(x_fb).argmax(1)
            return {"crosscheck_pgd_name": name, "crosscheck_ours_fooled": succ_of[(name, e)].sum(),
                    "crosscheck_foolbox_fooled": (correct & (pa != y)).sum(), "crosscheck_n_correct": correct.sum()}
    return {}


MONOTONE_TOL = 0.01  # ASR may wobble by this much between budgets (random starts) before it is flagged
LARGE_EPS_ASR = 0.99
PGD_FGSM_TOL = 0.02
ZERO_GRAD_TOL = 0.05
CROSSCHECK_TOL = 0.05


def _large_eps(norm: str, sample_shape: tuple[int, ...] | None) -> float:
    """A budget large enough that a working strong attack fools (almost) every input."""
    if norm == "linf":
        return 0.5
    d = 1
    for s in sample_shape or (1,):
        d *= s
    return 0.5 * d ** 0.5


def _rate(r: AttackResult) -> float:
    """The success the attack was asked for: targeted success rate in targeted runs, else ASR."""
    return r.targeted_success_rate if r.n_target_hits is not None else r.attack_success_rate


def post_checks(results, variants, sanity, pairs, pair_counts, n_correct, sample_shape) -> list[str]:
    """Carlini et al. (2019) / AutoAttack-style checks; numbers go to ``sanity``, warnings are returned.

    In targeted runs the checks use the targeted success rate."""
    flags: list[str] = []
    if sanity.get("outputs_look_like_probabilities"):
        flags.append("the model's outputs are non-negative and sum to 1: it returns probabilities, not logits; "
                     "gradient attacks on softmax outputs are weak (remove the final softmax).")
    z = sanity.get("zero_gradient_fraction")
    if z is not None and z > ZERO_GRAD_TOL:
        flags.append(f"{100 * z:.1f} % of the first batch have an exactly zero input gradient (gradient masking or a "
                     "saturated softmax): gradient attacks under-report; try loss='margin' or a decision-based attack.")
    mono, large = {}, {}
    for name, curve in results.items():
        pts = sorted(curve.items())
        asr = [_rate(r) for _, r in pts]
        ok = all(b >= a - MONOTONE_TOL for a, b in zip(asr, asr[1:]))
        if len(pts) > 1:
            mono[name] = ok
            if not ok:
                flags.append(f"{name}: success rate decreases as eps grows ({', '.join(f'{e:g}: {100 * a:.1f} %' for (e, _), a in zip(pts, asr))}); "
                             "the attack is not converging (too few steps, bad step size, or gradient masking).")
        atk = next(iter(variants[name].values()))
        if getattr(atk, "strong", False):
            big = [(e, r) for e, r in pts if e >= _large_eps(r.norm, sample_shape)]
            if big:
                e, r = big[-1]
                large[name] = {"eps": e, "success_rate": _rate(r)}
                if _rate(r) < LARGE_EPS_ASR:
                    flags.append(f"{name} at the large budget eps={e:g} succeeds on only {100 * _rate(r):.1f} % "
                                 "(expected ~100 %): suspect gradient masking or a broken attack.")
    sanity["asr_monotone_in_eps"] = mono
    sanity["large_eps"] = large
    comp = []
    for (p, f, e), k in zip(pairs, pair_counts):
        rp, rf = results[p][e], results[f][e]
        frac = k / n_correct if n_correct else 0.0
        comp.append({"pgd": p, "fgsm": f, "eps": e, "fgsm_only_fooled": int(k), "fgsm_only_fraction": frac,
                     "pgd_success": _rate(rp), "fgsm_success": _rate(rf)})
        if _rate(rp) < _rate(rf) - 0.005 or frac > PGD_FGSM_TOL:
            flags.append(f"{p} is weaker than {f} at eps={e:g} (PGD {100 * _rate(rp):.1f} % vs FGSM "
                         f"{100 * _rate(rf):.1f} %, {int(k)} inputs fooled by FGSM only): PGD should "
                         "dominate FGSM; suspect gradient masking or a too small PGD step.")
    sanity["pgd_vs_fgsm"] = comp
    if "crosscheck_n_correct" in sanity and sanity["crosscheck_n_correct"]:
        for k in ("crosscheck_n_correct", "crosscheck_ours_fooled", "crosscheck_foolbox_fooled"):
            sanity[k] = int(sanity[k])
        nc = sanity["crosscheck_n_correct"]
        ours, theirs = sanity["crosscheck_ours_fooled"] / nc, sanity["crosscheck_foolbox_fooled"] / nc
        sanity["crosscheck_ours_asr"], sanity["crosscheck_foolbox_asr"] = ours, theirs
        if ours < theirs - CROSSCHECK_TOL:
            flags.append(f"our PGD fooled {100 * ours:.1f} % of the first batch but foolbox's LinfPGD {100 * theirs:.1f} % "
                         "with the same settings: our attack under-reports.")
    return flags
