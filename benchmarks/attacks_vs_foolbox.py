"""Benchmark: our PGD-40 (plain and early-stop) vs foolbox LinfPGD-40 vs FGSM on the same 1,000 images.

    python benchmarks/attacks_vs_foolbox.py [--classifier DIR] [--model small_cnn] [--device cpu]

Trains the target on MNIST-5k (or loads ``--classifier``), then attacks the same test images with
every attack inside one ``evaluate()`` run (batches interleaved, so every attack sees the same
machine load). PGD variants share one step rule (2.5 * eps / steps, random start) so only the
implementation differs. Prints a table and writes ``benchmarks/results/attacks_vs_foolbox.json``.
Target (issue 4): early-stop PGD >= 2x faster than foolbox on an undefended model at >= success.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advgan import data  # noqa: E402
from advgan.data.subsets import stratified_indices  # noqa: E402
from attacks import FGSM, PGD, Classifier, FoolboxAttack, evaluate  # noqa: E402
from attacks.checkpoint import save_json  # noqa: E402
from attacks.checks import resolve_device  # noqa: E402


def get_classifier(args, train, test, device) -> tuple[Classifier, dict]:
    if args.classifier:
        return Classifier.load(args.classifier, device=device), {"source": str(args.classifier)}
    from advgan.training import train_classifier

    t = time.perf_counter()
    clf = Classifier.create(args.model, 10, in_chans=1, seed=args.seed)
    clf, hist = train_classifier(clf, train, test, epochs=args.epochs, seed=args.seed, device=str(device),
                                 progress=not args.no_progress)
    return clf, {"source": "trained here", "model": args.model, "epochs": args.epochs,
                 "train_seconds": round(time.perf_counter() - t, 1), "history": hist.epochs[-1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classifier", default=None, help="load a saved classifier instead of training one")
    p.add_argument("--save-classifier", default=None, help="save the trained target here (reuse with --classifier)")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--n", type=int, default=1000, help="test images attacked")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attacks_vs_foolbox.json"))
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    train, test = data.load("mnist5k")
    clf, clf_info = get_classifier(args, train, test, device)
    if args.save_classifier:
        clf.save(args.save_classifier)
    n = min(args.n, len(test))
    idx = stratified_indices(test.labels, n, 0)  # the split is sorted by class: never the first n
    ds = data.ImageDataset(test.images[idx], test.labels[idx], test.num_classes, "mnist5k-test")
    loader = data.loader(ds, args.batch_size, shuffle=False)
    eps, steps = args.eps, args.steps
    rel = 2.5 / steps
    attacks = {
        "ours PGD-40": PGD(eps, steps=steps, seed=args.seed),
        "ours PGD-40 early-stop": PGD(eps, steps=steps, early_stop=True, seed=args.seed),
        "foolbox LinfPGD-40": FoolboxAttack("LinfPGD", eps=eps, steps=steps, rel_stepsize=rel, seed=args.seed),
        "ours FGSM": FGSM(eps),
        "foolbox FGSM": FoolboxAttack("FGSM", eps=eps),
    }
    report = evaluate(clf, loader, attacks, device=device, seed=args.seed, progress=not args.no_progress, grid_images=0)
    fb_s = report["foolbox LinfPGD-40"].seconds
    rows = []
    for name in attacks:
        r = report[name]
        rows.append({"attack": name, "attack_success_rate": r.attack_success_rate, "robust_accuracy": r.robust_accuracy,
                     "seconds": r.seconds, "images_per_second": r.images_per_second,
                     "speedup_vs_foolbox_pgd": fb_s / r.seconds if r.seconds > 0 else None})
    es, fb = report["ours PGD-40 early-stop"], report["foolbox LinfPGD-40"]
    target_met = (fb.seconds / es.seconds >= 2.0) and es.attack_success_rate >= fb.attack_success_rate
    print(f"\nTarget: {clf_info.get('model', clf_info['source'])} on {device}, clean accuracy "
          f"{100 * report.clean_accuracy:.1f} % on {report.n} MNIST-5k test images, L-inf eps={eps}, "
          f"step 2.5*eps/{steps}, torch threads {torch.get_num_threads()}\n")
    print(f"| {'attack':<24} | ASR      | robust acc | seconds | img/s   | speed vs foolbox PGD |")
    print(f"|{'-' * 26}|----------|------------|---------|---------|----------------------|")
    for r in rows:
        print(f"| {r['attack']:<24} | {100 * r['attack_success_rate']:6.1f} % | {100 * r['robust_accuracy']:8.1f} % | "
              f"{r['seconds']:7.2f} | {r['images_per_second']:7.0f} | {r['speedup_vs_foolbox_pgd']:19.2f}x |")
    print(f"\nearly-stop PGD vs foolbox LinfPGD: {fb.seconds / es.seconds:.2f}x faster, success "
          f"{100 * es.attack_success_rate:.1f} % vs {100 * fb.attack_success_rate:.1f} % -> target "
          f"{'MET' if target_met else 'NOT met'}")
    if report.flags:
        print("sanity flags:", *report.flags, sep="\n  ")
    result = {
        "benchmark": "attacks_vs_foolbox", "device": str(device), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "torch": torch.__version__, "classifier": clf_info,
        "n_images": report.n, "clean_accuracy": report.clean_accuracy, "eps": eps, "norm": "linf", "steps": steps,
        "rel_stepsize": rel, "rows": rows, "target_early_stop_2x_faster_at_equal_success": target_met,
        "sanity": report.sanity, "flags": report.flags, "wall_seconds": report.meta["wall_seconds"],
    }
    save_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
