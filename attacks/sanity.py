"""Sanity checks of an evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness"; AutoAttack's flags).

Measured during ``evaluate()`` (zero input gradients, probability outputs, a randomised model, PGD vs
FGSM per sample, inputs broken only by gradient-free attacks, foolbox cross-check) and checked on the
results (success non-decreasing in eps, ~100 % at a large eps). Numbers go to ``report.sanity``;
warnings to ``report.flags``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import AttackTraits, input_gradient
from .report import AttackResult

if TYPE_CHECKING:
    from .worst import Key

MONOTONE_TOL = 0.01  # ASR may wobble by this much between budgets (random starts) before it is flagged
LARGE_EPS_ASR = 0.99
PGD_FGSM_TOL = 0.02
ZERO_GRAD_TOL = 0.05
CROSSCHECK_TOL = 0.05
RANDOMIZED_RTOL, RANDOMIZED_ATOL = 1e-4, 1e-5  # two forward passes differing by more: a randomised model


def zero_grad_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of inputs whose cross-entropy input gradient is exactly zero (a gradient-masking symptom)."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg).float(), y, reduction="sum")
        g = input_gradient(loss, xg)
    return (g.flatten(1).abs().amax(1) == 0).float().mean()


def forward_differs(model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """0-d bool tensor (no host sync): does a second forward pass of ``x`` differ from ``logits``?"""
    with torch.no_grad():
        again = model(x).float()
    ref = logits.float()
    differs: torch.Tensor = ((again - ref).abs() > RANDOMIZED_ATOL + RANDOMIZED_RTOL * ref.abs()).any()
    return differs


def pgd_fgsm_pairs(variants: Mapping[str, Mapping[float, Any]]) -> list[tuple[str, str, float]]:
    """(pgd name, fgsm name, eps) for every PGD/FGSM pair of the same norm sharing a budget."""
    from .fgsm import FGSM
    from .pgd import PGD

    out = []
    first = {n: next(iter(v.values())) for n, v in variants.items()}
    pgds = [n for n, a in first.items() if isinstance(a, PGD)]
    fgsms = [n for n, a in first.items() if isinstance(a, FGSM)]
    for p in pgds:
        for f in fgsms:
            if first[p].norm == first[f].norm:
                out += [(p, f, e) for e in variants[p] if e in variants[f]]
    return out


def run_foolbox_crosscheck(model: nn.Module, variants: Mapping[str, Mapping[float, Any]], x: torch.Tensor,
                           y: torch.Tensor, correct: torch.Tensor,
                           success: Mapping[Key, torch.Tensor]) -> tuple[str | None, dict[str, torch.Tensor]]:
    """Run foolbox LinfPGD with the settings of our first L-inf PGD on this batch (untargeted): its name, both counts."""
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
            return name, {"crosscheck_ours_fooled": success[(name, e)].sum(),
                          "crosscheck_foolbox_fooled": (correct & (pa != y)).sum(), "crosscheck_n_correct": correct.sum()}
    return None, {}


def _large_eps(norm: str, sample_shape: Sequence[int] | None) -> float:
    """A budget large enough that a working strong attack fools (almost) every input."""
    if norm == "linf":
        return 0.5
    d = 1
    for s in sample_shape or (1,):
        d *= s
    return 0.5 * math.sqrt(d)


def _rate(r: AttackResult) -> float:
    """The success the attack was asked for: targeted success rate in targeted runs, else ASR."""
    t = r.targeted_success_rate
    return t if t is not None else r.attack_success_rate


def _curve_flags(results: Mapping[str, Mapping[float, AttackResult]], traits: Mapping[Key, AttackTraits],
                 sanity: dict[str, Any], sample_shape: Sequence[int] | None) -> list[str]:
    flags: list[str] = []
    mono, large = {}, {}
    for name, curve in results.items():
        pts = sorted(curve.items())
        asr = [_rate(r) for _, r in pts]
        ok = all(b >= a - MONOTONE_TOL for a, b in zip(asr, asr[1:]))
        if len(pts) > 1:
            mono[name] = ok
            if not ok:
                table = ", ".join(f"{e:g}: {100 * a:.1f} %" for (e, _), a in zip(pts, asr))
                flags.append(f"{name}: success rate decreases as eps grows ({table}); the attack is not converging "
                             "(too few steps, bad step size, or gradient masking).")
        if traits[(name, pts[0][0])].strong:
            big = [(e, r) for e, r in pts if e >= _large_eps(r.norm, sample_shape)]
            if big:
                e, r = big[-1]
                large[name] = {"eps": e, "success_rate": _rate(r)}
                if _rate(r) < LARGE_EPS_ASR:
                    flags.append(f"{name} at the large budget eps={e:g} succeeds on only {100 * _rate(r):.1f} % "
                                 "(expected ~100 %): suspect gradient masking or a broken attack.")
    sanity["asr_monotone_in_eps"] = mono
    sanity["large_eps"] = large
    return flags


def post_checks(results: Mapping[str, Mapping[float, AttackResult]], traits: Mapping[Key, AttackTraits],
                sanity: dict[str, Any], pairs: Mapping[tuple[str, str, float], int], n_correct: int,
                sample_shape: Sequence[int] | None) -> list[str]:
    """Carlini et al. (2019) / AutoAttack-style checks; numbers go to ``sanity``, warnings are returned.

    In targeted runs the checks use the targeted success rate."""
    flags: list[str] = []
    if sanity.get("outputs_look_like_probabilities"):
        flags.append("the model's outputs are non-negative and sum to 1: it returns probabilities, not logits; "
                     "gradient attacks on softmax outputs are weak (remove the final softmax).")
    z = sanity.get("zero_gradient_fraction")
    if sanity.get("model_not_differentiable"):
        flags.append("gradient masking: the model cannot be differentiated with respect to its input (no gradient reaches "
                     "the image: .detach(), NumPy or torch.no_grad() inside its forward), so every gradient attack ran "
                     "with a zero gradient and its robust accuracy is meaningless; use a gradient-free attack "
                     "(noise, foolbox:BoundaryAttack) or fix the model.")
    elif z is not None and z > ZERO_GRAD_TOL:
        flags.append(f"{100 * z:.1f} % of the first batch have an exactly zero input gradient (gradient masking or a "
                     "saturated softmax): gradient attacks under-report; try loss='margin' or a decision-based attack.")
    if sanity.get("model_is_randomized"):
        flags.append("the model is randomised: two forward passes of the same input differ. Single-draw attacks "
                     "overestimate its robustness; attack the expectation over its randomness, e.g. "
                     "AutoAttack(version='rand').")
    flags += _curve_flags(results, traits, sanity, sample_shape)
    comp = []
    for (p, f, e), k in pairs.items():
        rp, rf = results[p][e], results[f][e]
        frac = k / n_correct if n_correct else 0.0
        comp.append({"pgd": p, "fgsm": f, "eps": e, "fgsm_only_fooled": int(k), "fgsm_only_fraction": frac,
                     "pgd_success": _rate(rp), "fgsm_success": _rate(rf)})
        if _rate(rp) < _rate(rf) - 0.005 or frac > PGD_FGSM_TOL:
            flags.append(f"{p} is weaker than {f} at eps={e:g} (PGD {100 * _rate(rp):.1f} % vs FGSM "
                         f"{100 * _rate(rf):.1f} %, {int(k)} inputs fooled by FGSM only): PGD should "
                         "dominate FGSM; suspect gradient masking or a too small PGD step.")
    sanity["pgd_vs_fgsm"] = comp
    if sanity.get("crosscheck_n_correct"):
        nc = sanity["crosscheck_n_correct"]
        ours, theirs = sanity["crosscheck_ours_fooled"] / nc, sanity["crosscheck_foolbox_fooled"] / nc
        sanity["crosscheck_ours_asr"], sanity["crosscheck_foolbox_asr"] = ours, theirs
        if ours < theirs - CROSSCHECK_TOL:
            flags.append(f"our PGD fooled {100 * ours:.1f} % of the first batch but foolbox's LinfPGD {100 * theirs:.1f} % "
                         "with the same settings: our attack under-reports.")
    return flags


__all__ = ["forward_differs", "pgd_fgsm_pairs", "post_checks", "run_foolbox_crosscheck", "zero_grad_fraction"]
