"""Benchmark: our FAB-T and Square vs the reference (pyautoattack) on the same model and inputs.

    python benchmarks/fab_square.py [--classifier DIR] [--n 200] [--rows linf:0.3,l2:2.0] [--queries 5000]

Trains an undefended ``small_cnn`` on MNIST-5k (or loads ``--classifier``), then attacks the first
``--n`` test images with each attack, ours and the reference's side by side in one run (so both see
the same machine load): FAB-T (100 steps, 9 target classes, 1 restart, AutoAttack's settings) and
Square (p_init 0.8, 1 restart). Square runs at equal queries: ours with ``queries=Q`` (the initial
point included), the reference with ``n_queries=Q - 1`` (it adds its initial point). Robust accuracy
counts an input as robust if the attack's output inside the threat model is still classified
correctly. Prints a table and writes ``benchmarks/results/fab_square.json``.
Target (issue 18): Square within 2 points of the reference at equal queries; FAB-T close to it.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advgan import data  # noqa: E402
from attacks import FABT, Classifier, Square, ThreatModel  # noqa: E402
from attacks.checkpoint import save_json  # noqa: E402
from attacks.checks import resolve_device  # noqa: E402

REF_NORM = {"linf": "Linf", "l2": "L2"}


def get_classifier(args: argparse.Namespace, train: Any, test: Any, device: torch.device) -> tuple[Classifier, dict]:
    if args.classifier:
        return Classifier.load(args.classifier, device=device), {"source": str(args.classifier)}
    from advgan.training import train_classifier

    t = time.perf_counter()
    clf = Classifier.create(args.model, 10, in_chans=1, seed=args.seed)
    clf, hist = train_classifier(clf, train, test, epochs=args.epochs, seed=args.seed, device=str(device), progress=False)
    return clf, {"source": "trained here (undefended)", "model": args.model, "epochs": args.epochs,
                 "train_seconds": round(time.perf_counter() - t, 1)}


def robust_accuracy(clf: Classifier, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, threat: ThreatModel,
                    batch: int = 500) -> float:
    """Inputs still classified correctly at the attack's output, projected into the threat model first."""
    adv = threat.project(x, adv)
    ok = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            ok += int((clf(adv[i: i + batch]).argmax(1) == y[i: i + batch]).sum())
    return ok / len(y)


def timed(fn: Any) -> tuple[torch.Tensor, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classifier", default=None, help="load a saved classifier instead of training one")
    p.add_argument("--save-classifier", default=None, help="save the trained target here (reuse with --classifier)")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n", type=int, default=200, help="test images attacked")
    p.add_argument("--rows", default="linf:0.3,l2:2.0", help="comma-separated norm:eps rows")
    p.add_argument("--steps", type=int, default=100, help="FAB-T steps per target class")
    p.add_argument("--targets", type=int, default=9, help="FAB-T target classes")
    p.add_argument("--queries", type=int, default=5000, help="Square's queries per input")
    p.add_argument("--attacks", default="fab-t,square")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fab_square.json"))
    args = p.parse_args(argv)
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    device = resolve_device(args.device)
    train, test = data.load("mnist5k")
    clf, clf_info = get_classifier(args, train, test, device)
    if args.save_classifier:
        clf.save(args.save_classifier)
    clf = clf.to(device).eval()
    x, y = test.images[: args.n].to(device), test.labels[: args.n].to(device)
    with torch.no_grad():
        clean = float((clf(x).argmax(1) == y).float().mean())
    rows = []
    wanted = args.attacks.split(",")
    for spec in args.rows.split(","):
        norm, eps_s = spec.split(":")
        eps = float(eps_s)
        threat = ThreatModel(norm, eps)
        pairs: list[tuple[str, Any, Any]] = []
        if "fab-t" in wanted:
            pairs.append((f"FAB-T ({args.steps} steps, {args.targets} targets)",
                          lambda eps=eps, norm=norm: FABT(eps, norm, steps=args.steps, n_target_classes=args.targets,
                                                          seed=args.seed)(clf, x, y),
                          lambda eps=eps, norm=norm: FABAttack_PT(clf, norm=REF_NORM[norm], n_iter=args.steps, eps=eps, targeted=True,
                                               n_target_classes=args.targets, seed=args.seed, device=device).perturb(x, y)))
        if "square" in wanted:
            pairs.append((f"Square ({args.queries} queries)",
                          lambda eps=eps, norm=norm: Square(eps, norm, queries=args.queries, seed=args.seed)(clf, x, y),
                          lambda eps=eps, norm=norm: SquareAttack(clf, norm=REF_NORM[norm], n_queries=args.queries - 1, eps=eps, p_init=0.8,
                                               seed=args.seed, device=device).perturb(x, y)))
        for name, ours_fn, ref_fn in pairs:
            ours, t_ours = timed(ours_fn)
            ref, t_ref = timed(ref_fn)
            r_ours, r_ref = robust_accuracy(clf, x, y, ours, threat), robust_accuracy(clf, x, y, ref, threat)
            row = {"attack": name, "norm": norm, "eps": eps, "robust_ours": r_ours, "robust_reference": r_ref,
                   "diff_points": 100 * (r_ours - r_ref), "seconds_ours": round(t_ours, 2),
                   "seconds_reference": round(t_ref, 2), "speed_ratio_ref_over_ours": round(t_ref / t_ours, 2)}
            rows.append(row)
            print(f"{name:<32} {norm:>4} eps={eps:<4g} robust ours {100 * r_ours:5.1f} % ref {100 * r_ref:5.1f} % "
                  f"({row['diff_points']:+.1f} pts)  time ours {t_ours:7.1f} s ref {t_ref:7.1f} s", flush=True)

    print(f"\n{clf_info.get('model', clf_info['source'])}, clean accuracy {100 * clean:.1f} % on {len(y)} MNIST-5k test "
          f"images, {device}, torch threads {torch.get_num_threads()}\n")
    print("| attack | norm | eps | robust acc (ours) | robust acc (reference) | diff | time ours | time ref | ref/ours |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['attack']} | {r['norm']} | {r['eps']:g} | {100 * r['robust_ours']:.1f} % | "
              f"{100 * r['robust_reference']:.1f} % | {r['diff_points']:+.1f} | {r['seconds_ours']:.1f} s | "
              f"{r['seconds_reference']:.1f} s | {r['speed_ratio_ref_over_ours']:.2f}x |")
    square_ok = all(abs(r["diff_points"]) <= 2.0 for r in rows if r["attack"].startswith("Square"))
    print(f"\nSquare within 2 points of the reference at equal queries: {'MET' if square_ok else 'NOT met'}")
    save_json(args.out, {
        "benchmark": "fab_square", "device": str(device), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "torch": torch.__version__, "classifier": clf_info, "n_images": len(y),
        "clean_accuracy": clean, "rows": rows, "square_within_2_points": square_ok,
        "command": "python benchmarks/fab_square.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }, sort_keys=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
