"""advgan evaluate: measure a classifier against gradient, foolbox and AdvGAN attacks; write a report."""
from __future__ import annotations

import argparse
import inspect
from typing import Any

from .common import add_device, add_seed, positive_float, positive_int

NAME = "evaluate"
HELP = ("attack a saved classifier (pgd, fgsm, cw, noise, autoattack, apgd-ce, apgd-t, fab-t, square, foolbox:NAME, "
        "advgan:DIR) and/or corrupt its inputs (--corruptions all) and write a robustness report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", required=True, help="directory written by `advgan train-classifier` / Classifier.save")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (its test split is attacked)")
    p.add_argument("--data-root", default=None, help="root folder for torchvision datasets / imagefolder")
    p.add_argument("--attack", action="append", default=None, metavar="SPEC",
                   help="repeatable: pgd, fgsm, cw, noise, autoattack (or autoattack:plus / :rand), apgd-ce, apgd-dlr, apgd-t, "
                        "fab-t, square, foolbox:<AttackName> (e.g. foolbox:LinfPGD), advgan:<DIR>")
    p.add_argument("--corruptions", default=None, metavar="SPEC",
                   help="also measure accuracy under natural corruptions: all, common (ImageNet-C's 15), a family "
                        "(noise, blur, weather, digital, extra) or comma-separated names (e.g. fog,brightness); "
                        "without --attack only the corruptions are evaluated")
    p.add_argument("--severities", type=positive_int, nargs="+", default=[1, 2, 3, 4, 5], metavar="S",
                   help="corruption severities, 1 (mildest) to 5")
    p.add_argument("--corruption-baseline", default=None, metavar="REPORT_JSON",
                   help="report.json of a baseline model evaluated on the same corruptions: adds ImageNet-C's mCE")
    p.add_argument("--eps", type=positive_float, default=0.3, help="budget in pixel units ([0, 1] images)")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--eps-sweep", type=positive_float, nargs="+", default=None, metavar="EPS",
                   help="also evaluate every attack at these budgets (eps curve in the report)")
    p.add_argument("--steps", type=positive_int, default=40,
                   help="steps of iterative attacks (pgd, cw, foolbox; PGD-type attacks step 2.5 * eps / steps)")
    p.add_argument("--early-stop", action="store_true", help="PGD stops working on inputs already fooled")
    p.add_argument("--targeted", action="store_true", help="attack towards random targets != label (seeded)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--max-images", type=positive_int, default=None,
                   help="attack N test images: a stratified random subset (every class in proportion, seeded by --seed), "
                   "never just the first N (a class-sorted split would give a few classes only)")
    p.add_argument("--amp", action="store_true", help="mixed precision autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--crosscheck-foolbox", action="store_true", help="compare our PGD with foolbox's LinfPGD on the first batch")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output directory (report.json, report.md, PNGs)")
    add_device(p)
    add_seed(p)


def build_attack(spec: str, clf, *, eps: float, norm: str, steps: int, seed: int, early_stop: bool = False):
    """An Attack from a command-line spec (see ``--attack``)."""
    from attacks import CW, FGSM, PGD, FoolboxAttack, RandomNoise, make_attack

    if spec.startswith("advgan:"):
        path = spec.split(":", 1)[1]
        try:
            from advgan.attacker import AdvGAN
        except ImportError as e:
            raise ValueError(f"advgan: attacks need advgan.attacker, which could not be imported ({e}).") from None
        return AdvGAN.load(path, clf).as_attack()
    if spec.startswith("foolbox:"):
        from attacks.foolbox_bridge import foolbox_attack_class

        fb_name = spec.split(":", 1)[1]
        params = inspect.signature(foolbox_attack_class(fb_name)).parameters
        kw: dict[str, Any] = {"steps": steps} if "steps" in params else {}
        if "steps" in params and "rel_stepsize" in params:
            kw["rel_stepsize"] = 2.5 / steps  # the step rule of our PGD (Madry et al.), so --steps stays comparable
        fb_norm = norm if "distance" in params else None  # otherwise the norm of the foolbox attack itself
        return FoolboxAttack(fb_name, eps=eps, norm=fb_norm, seed=seed, **kw)
    if spec == "pgd":
        return PGD(eps, norm, steps=steps, early_stop=early_stop, seed=seed)
    if spec == "fgsm":
        return FGSM(eps, norm)
    if spec == "cw":
        return CW(eps, norm, steps=steps)
    if spec == "noise":
        return RandomNoise(eps, norm, seed=seed)
    attack = make_attack(spec, eps=eps, norm=norm)  # apgd-ce, apgd-t, autoattack[:version], fab-t, square, ...
    if "seed" in inspect.signature(type(attack)).parameters:
        attack = make_attack(spec, eps=eps, norm=norm, seed=seed)
    return attack


def _name(spec: str, taken: dict) -> str:
    name = "advgan" if spec.startswith("advgan:") and "advgan" not in taken else spec
    if name in taken:
        raise ValueError(f"attack {spec!r} given twice; each --attack must be different.")
    return name


def _corruption_spec(spec: str | None) -> str | list[str] | None:
    """``--corruptions``: a group name as is, a comma-separated list as a list of names."""
    if spec is None:
        return None
    parts = [s.strip() for s in spec.split(",") if s.strip()]
    return parts if len(parts) != 1 else parts[0]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from advgan import data
    from attacks import Classifier, Report, evaluate
    from attacks.checks import check_eps, resolve_device
    from attacks.corruption_results import plan_corruptions

    device = resolve_device(args.device)
    check_eps(args.eps, args.norm, name="--eps")
    for e in args.eps_sweep or ():
        check_eps(e, args.norm, name="--eps-sweep value")
    corruptions = _corruption_spec(args.corruptions)
    plan_corruptions(corruptions, args.severities)  # bad names or severities fail before anything is loaded
    baseline = Report.from_json(args.corruption_baseline) if args.corruption_baseline else None
    if baseline is not None and corruptions is None:
        raise ValueError("--corruption-baseline needs --corruptions (the mCE compares corruption accuracies).")
    clf = Classifier.load(args.classifier, device=device)
    specs = args.attack or ([] if corruptions is not None else ["pgd"])
    attacks: dict = {}
    for spec in specs:
        attacks[_name(spec, attacks)] = build_attack(spec, clf, eps=args.eps, norm=args.norm, steps=args.steps,
                                                     seed=args.seed, early_stop=args.early_stop)
    kwargs = {"root": args.data_root} if args.data_root else {}
    _, test = data.load(args.dataset, **kwargs)
    if args.max_images is not None and args.max_images < len(test):
        test = data.stratified_subset(test, args.max_images, seed=args.seed)
    loader = data.loader(test, args.batch_size, shuffle=False, seed=args.seed, pin_memory=device.type == "cuda")
    report = evaluate(clf, loader, attacks, epsilons=args.eps_sweep, device=device, amp=args.amp,
                      channels_last=args.channels_last, targeted=args.targeted, seed=args.seed,
                      progress=not args.no_progress, crosscheck_foolbox=args.crosscheck_foolbox,
                      corruptions=corruptions, severities=tuple(args.severities))
    report.meta.update(dataset=args.dataset, classifier=str(args.classifier))
    if baseline is not None:
        ce = report.corruption_error(baseline)
        report.meta["corruption_error"] = {"baseline": str(args.corruption_baseline), **ce.to_dict()}
        print(f"mCE {ce.mce:.3f}, relative mCE {ce.relative_mce:.3f} against {args.corruption_baseline}")
    out = report.save(Path(args.out))
    print(report.summary())
    print(f"report written to {out}/report.md and {out}/report.json")
    return 0
