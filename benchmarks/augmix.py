"""Benchmark of AugMix fine-tuning against natural corruptions on MNIST-5k (not a test: numbers, a table, JSON).

From one trained target (small_cnn, 4 epochs of clean training, as in benchmarks/defenses.py), fine-tuned
side by side for the same epochs and optimizer:

- ``undefended``: the target itself;
- ``clean fine-tune``: more clean training (the control: does extra training alone help?);
- ``augmix``: Hendrycks et al. (2020), the paper's nine operations (no ImageNet-C corruption among them,
  so the corruptions stay unseen), JSD weight 12;
- ``augment(corruption:all@1-3)`` (``--seen``): half of each batch replaced by random corruptions at
  severities 1-3: trains on the test corruptions themselves (an upper reference, not a fair benchmark).

Every model is measured on the 1,000 test images: clean accuracy, all 19 corruptions at severities 1-5
(the same corrupted images for every model), ImageNet-C's mCE and relative mCE against the undefended
model, and PGD (10 steps; --pgd-steps) / FGSM robust accuracy at L-inf eps = 0.3 (defenses.before_after).

Acceptance (issue 17): augmix raises the mean corruption accuracy over the undefended model, and its
clean accuracy drops by at most 1 point.

    python benchmarks/augmix.py             # full (~30 min on 2 heavily shared CPU cores)
    python benchmarks/augmix.py --quick     # smoke run (1 epoch, 1,000 training and 300 test images)

Writes ``benchmarks/results/augmix.json`` (``augmix_quick.json`` with --quick). Work under ``--work``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advgan import data  # noqa: E402
from advgan.training import ClassifierConfig, train_classifier  # noqa: E402
from attacks import CORRUPTIONS, Classifier  # noqa: E402
from defenses import FinetuneConfig, before_after, finetune, parse_source  # noqa: E402
from defenses.report import epoch_seconds  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_augmix"))
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 4; quick 1)")
    ap.add_argument("--pgd-steps", type=int, default=10, help="steps of the PGD robust accuracy at eps 0.3 (a side column)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seen", action="store_true", help="also fine-tune with augment(corruption:all@1-3) (seen corruptions)")
    args = ap.parse_args()
    q = args.quick
    work = Path(args.work) / ("quick" if q else "full")
    seed = 0
    torch.manual_seed(seed)
    train, test = data.load("mnist5k")
    full_train = train
    if q:
        train = Subset(train, torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:1000].tolist())
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).tolist()
    test_eval = Subset(test, perm[:300] if q else perm)
    train_loader = data.loader(train, 128, shuffle=True, seed=seed)
    test_loader = data.loader(test_eval, 250, shuffle=False)
    epochs = args.epochs or (1 if q else 4)
    t_start = time.time()

    clf, thist = train_classifier(Classifier.create("small_cnn", 10, in_chans=1), full_train, test,
                                  ClassifierConfig(progress=False, seed=seed), epochs=4, out_dir=work / "target")
    print(f"target small_cnn: test accuracy {thist.epochs[-1]['test_accuracy']:.4f}", flush=True)

    base = dict(epochs=epochs, lr=args.lr, batch_size=128, progress=False, seed=seed)
    runs: dict[str, tuple[FinetuneConfig, list]] = {
        "clean fine-tune": (FinetuneConfig(method="clean", **base), []),
        "augmix": (FinetuneConfig(method="augmix", **base), []),
    }
    if args.seen:
        src = parse_source("corruption:all@1-3", clf, eps=0.3)
        runs["augment(corruption:all@1-3)"] = (FinetuneConfig(method="augment", fraction=0.5, **base), src)
    models, histories = {"undefended": clf}, {}
    for name, (cfg, sources) in runs.items():
        t = time.time()
        robust, hist = finetune(clf, train_loader, cfg, sources=sources, out_dir=work / name.replace(":", "_").replace("@", "_"))
        models[name], histories[name] = robust, hist
        print(f"{name}: {len(hist.epochs)} epochs, {time.time() - t:.0f} s", flush=True)

    t = time.time()
    rep = before_after(models, test_loader, eps=0.3, pgd_steps=args.pgd_steps, histories=histories,
                       clean_epoch_seconds=epoch_seconds(histories["clean fine-tune"]), seed=seed,
                       corruptions="all", severities=(1, 2, 3, 4, 5), out_dir=work / "report")
    eval_seconds = time.time() - t
    common = CORRUPTIONS[:15]
    table = {}
    for name, row in rep.rows.items():
        acc = rep.corruptions[name]
        table[name] = {
            "clean_acc": row["clean_acc"], "mean_corruption_acc": row["mean_corruption_acc"],
            "mean_corruption_acc_common15": sum(sum(acc[c].values()) / len(acc[c]) for c in common) / len(common),
            "mce": row["mce"], "relative_mce": row["relative_mce"], "robust_acc_pgd": row["robust_acc_pgd"],
            "robust_acc_fgsm": row["robust_acc_fgsm"], "seconds_per_epoch": row["seconds_per_epoch"],
            "epoch_cost_vs_clean": row["epoch_cost_vs_clean"],
        }
    print(f"\n{'model':<30}{'clean':>8}{'mean corr':>11}{'common15':>10}{'mCE':>8}{'rel mCE':>9}{'PGD':>8}{'s/epoch':>9}")
    for name, r in table.items():
        def f(v: float | None, pct: bool = True) -> str:
            return "—" if v is None else (f"{100 * v:.1f}" if pct else f"{v:.3f}")
        print(f"{name:<30}{f(r['clean_acc']):>8}{f(r['mean_corruption_acc']):>11}{f(r['mean_corruption_acc_common15']):>10}"
              f"{f(r['mce'], False):>8}{f(r['relative_mce'], False):>9}{f(r['robust_acc_pgd']):>8}"
              f"{f(r['seconds_per_epoch'], False):>9}")
    u, a = table["undefended"], table["augmix"]
    gain = a["mean_corruption_acc"] - u["mean_corruption_acc"]
    clean_drop = u["clean_acc"] - a["clean_acc"]
    checks = {"augmix raises mean corruption accuracy over the undefended model": bool(gain > 0),
              "augmix clean accuracy drops by <= 1 point": bool(clean_drop <= 0.01)}
    print(f"\naugmix vs undefended: mean corruption accuracy {100 * gain:+.1f} points, clean {-100 * clean_drop:+.1f} points")
    for k, v in checks.items():
        print(f"[{'PASS' if v else 'MISS'}] {k}")
    out = {
        "benchmark": "augmix", "quick": q, "dataset": "mnist5k", "target": {"arch": "small_cnn",
                                                                        "test_accuracy": thist.epochs[-1]["test_accuracy"]},
        "finetune_epochs": epochs, "lr": args.lr, "n_test": len(test_eval), "n_train": len(train),
        "corruptions": list(CORRUPTIONS), "severities": [1, 2, 3, 4, 5], "pgd": {"eps": 0.3, "norm": "linf", "steps": args.pgd_steps},
        "table": table, "augmix_gain_mean_corruption_acc": gain, "augmix_clean_drop": clean_drop, "targets_met": checks,
        "per_corruption": {m: {c: {str(s): v for s, v in row.items()} for c, row in t.items()} for m, t in rep.corruptions.items()},
        "histories": {k: h.epochs for k, h in histories.items()}, "eval_seconds": eval_seconds,
        "total_seconds": time.time() - t_start,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    res = ROOT / "benchmarks" / "results" / ("augmix_quick.json" if q else "augmix.json")
    res.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {res} ({out['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
