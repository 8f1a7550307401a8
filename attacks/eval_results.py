"""From the totals ``evaluate()`` read back (by name) to a ``Report``: results, worst case, sanity, flags."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from .corruption_results import CorruptionResults
from .eval_plan import AttackPlan, EvalOptions
from .report import WORST, AttackResult, Report
from .sanity import post_checks
from .sharding import world
from .worst import Group, Key


def key_prefix(key: Key) -> str:
    return f"attack:{key[0]}@{key[1]!r}/"


def worst_prefix(group: Group) -> str:
    return f"worst:{group.label}/"


def corruption_key(name: str, severity: int) -> str:
    return f"corruption:{name}@{severity}/correct"


def _corruption_results(v: Mapping[str, float], opts: EvalOptions, n: int, n_ok: int) -> CorruptionResults | None:
    plan = opts.corruptions
    if plan is None:
        return None
    correct = {name: {s: int(v[corruption_key(name, s)]) for s in plan.severities} for name in plan.names}
    return CorruptionResults(n=n, n_clean_correct=n_ok, correct=correct,
                             seconds={name: max(v[f"corruption:{name}/seconds"], 0.0) for name in plan.names})


def _result(v: Mapping[str, float], p: str, *, name: str, eps: float, norm: str, n: int, n_correct: int,
            targeted: bool, seconds: float, n_invalid: int, attack: dict[str, Any]) -> AttackResult:
    return AttackResult(
        name=name, eps=eps, norm=norm, n=n, n_correct=n_correct, n_fooled=int(v[p + "fooled"]),
        n_robust=int(v[p + "robust"]), n_target_hits=int(v[p + "hits"]) if targeted else None,
        mean_linf=v[p + "sum_linf"] / n, max_linf=max(v[p + "max_linf"], 0.0), mean_l2=v[p + "sum_l2"] / n,
        max_l2=max(v[p + "max_l2"], 0.0), seconds=seconds, mean_ssim=v[p + "sum_ssim"] / n, n_invalid=n_invalid,
        attack=attack, shared_energy=v.get(p + "shared_energy", math.nan), adv_class_entropy=v.get(p + "adv_class_entropy", math.nan))


def _describe(atk: object) -> dict[str, Any]:
    describe = getattr(atk, "describe", None)
    return describe() if callable(describe) else {"repr": repr(atk)}


def _invalid_flags(v: Mapping[str, float], plan: AttackPlan, n: int, sanity: dict[str, Any]) -> list[str]:
    """One flag per (attack, eps) whose outputs evaluate() rejected."""
    flags, found = [], {}
    for key in plan.keys:
        p = key_prefix(key)
        k = int(v[p + "invalid"])
        if not k:
            continue
        name, e = key
        t = plan.traits[key]
        nf, ne, be = int(v[p + "nonfinite"]), v[p + "worst_norm_excess"], v[p + "worst_bounds_excess"]
        found[f"{name}@{e:g}"] = {"invalid": k, "nonfinite": nf, "worst_norm_excess": ne, "worst_bounds_excess": be}
        worst = []
        if nf:
            worst.append(f"{nf} not finite (NaN/Inf)")
        if ne > 0:
            worst.append(f"{t.norm} distance up to {e + ne:.6g} for eps={e:g}")
        if be > 0:
            worst.append(f"pixels up to {be:.3g} outside the bounds {list(t.threat.bounds)}")
        flags.append(f"attack {name!r} (eps={e:g}) returned {k} of {n} outputs outside its threat model or not "
                     f"finite ({'; '.join(worst)}); they were counted as failures of the attack. Fix the attack.")
    sanity["invalid_outputs"] = found
    return flags


def _worst_results(v: Mapping[str, float], plan: AttackPlan, n: int, n_ok: int, targeted: bool,
                   seconds: Mapping[Key, float], sanity: dict[str, Any]) -> tuple[list[AttackResult], list[str]]:
    out, flags, masking = [], [], {}
    for g in plan.groups:
        p = worst_prefix(g)
        eps = g.eps if g.eps is not None else max(e for _, e in g.keys)
        attack = {"name": WORST, "attacks": {name: e for name, e in g.keys}}
        out.append(_result(v, p, name=WORST, eps=eps, norm=g.norm or "mixed", n=n, n_correct=n_ok, targeted=targeted,
                           seconds=sum(seconds[k] for k in g.keys),
                           n_invalid=sum(int(v[key_prefix(k) + "invalid"]) for k in g.keys), attack=attack))
        free = [name for name, e in g.keys if plan.traits[(name, e)].gradient_free_search]
        grad = [name for name, e in g.keys if plan.traits[(name, e)].uses_gradients]
        if free and grad:
            k = int(v[p + "gradient_free_only"])
            masking[g.label] = k
            if k:
                where = "at their own budgets" if g.label == "own" else f"at eps={g.eps:g}"
                flags.append(f"{k} inputs ({100 * k / max(n_ok, 1):.1f} % of the correctly classified) were broken only "
                             f"by gradient-free attacks ({', '.join(free)}) and by none of the gradient attacks "
                             f"({', '.join(grad)}) {where}: gradient masking; the gradient attacks overestimate "
                             "robustness. Quote the worst case.")
    sanity["gradient_free_only"] = masking
    return out, flags


def build_report(v: Mapping[str, float], plan: AttackPlan, opts: EvalOptions, first: Mapping[str, Any],
                 grids: dict[str, Any], model: nn.Module) -> Report:
    """The report of one evaluation from its totals ``v`` (read by name) and batch 0's findings ``first``."""
    n, n_ok = int(v["n"]), int(v["n_correct"])
    sanity: dict[str, Any] = dict(first["sanity"])
    seconds = {key: v[key_prefix(key) + "seconds"] for key in plan.keys}
    results: dict[str, dict[float, AttackResult]] = {name: {} for name in plan.variants}
    for key in plan.keys:
        name, e = key
        results[name][e] = _result(v, key_prefix(key), name=name, eps=e, norm=plan.traits[key].norm, n=n, n_correct=n_ok,
                                   targeted=opts.targeted, seconds=seconds[key],
                                   n_invalid=int(v[key_prefix(key) + "invalid"]),
                                   attack=_describe(plan.variants[name][e]))
    flags: list[str] = []
    if v["nonfinite_logit_batches"]:
        flags.append("the model produced NaN/Inf logits on clean inputs.")
    flags += _invalid_flags(v, plan, n, sanity)
    worst, masking_flags = _worst_results(v, plan, n, n_ok, opts.targeted, seconds, sanity)
    flags += masking_flags
    if opts.sanity_checks:
        sanity["zero_gradient_fraction"] = v["zero_gradient_fraction"]
        sanity["model_is_randomized"] = bool(v["model_is_randomized"] > 0)
        pairs = {pr: int(v[f"pair:{pr[0]}|{pr[1]}@{pr[2]!r}"]) for pr in plan.pairs}
        if sanity.get("crosscheck_pgd_name"):
            sanity.update({k: int(v[k]) for k in ("crosscheck_ours_fooled", "crosscheck_foolbox_fooled", "crosscheck_n_correct")})
        else:
            sanity.pop("crosscheck_pgd_name", None)
        flags += post_checks(results, plan.traits, sanity, pairs, n_ok, first["shape"])
    meta = {"device": str(opts.device), "amp": opts.amp, "channels_last": opts.channels_last, "targeted": opts.targeted,
            "seed": opts.seed, "batches": int(v["batches"]), "wall_seconds": v["wall"], "model": type(model).__name__,
            "arch": getattr(model, "arch", None), "world_size": world()[1]}
    curve = [r for g, r in zip(plan.groups, worst) if g.norm is not None and g.eps is not None]
    return Report(n=n, n_correct=n_ok, results=results, own_eps=plan.own, flags=flags, sanity=sanity, meta=meta,
                  grids=grids, worst_own=worst[0] if worst else None, worst_curve=curve,
                  corruption_results=_corruption_results(v, opts, n, n_ok))


__all__ = ["build_report", "corruption_key", "key_prefix", "worst_prefix"]
