"""Benchmark of the defenses on MNIST-5k at L-inf eps = 0.3 (not a test: numbers, a table and JSON).

Side by side, each fine-tuned from the same trained target (small_cnn): no defense, augment(AdvGAN),
augment(AdvGAN + PGD), pgd-at, fgsm-rs, trades. Reports clean / robust (PGD-40; with --autoattack
also AutoAttack and the worst case over every attack) accuracy on up to 750 test images (the other 250 pick
each method's best epoch), FGSM robust accuracy, ASR of the original AdvGAN (trained against the undefended
target) and of an AdvGAN retrained against each model, and training seconds per epoch vs a clean epoch.

Targets (issue 7): pgd-at >= 80 % robust with >= 95 % clean; a retrained AdvGAN <= 10 % ASR against
the best defense; an AdvGAN-augmented epoch <= 1.5x a clean epoch.

    python benchmarks/defenses.py            # full (~25 min on 2 idle CPU cores)
    python benchmarks/defenses.py --quick    # smoke run (few epochs, subset)
    python benchmarks/defenses.py --autoattack --n 300 --tag aa   # the table under PGD-40 + AutoAttack
    python benchmarks/defenses.py --only pgd-at --epochs 20 --tag long   # one method, longer -> defenses_long.json
    python benchmarks/defenses.py --frontier --epochs 3 --n 500   # every method on one chart (benchmarks/frontier.py)
    python benchmarks/defenses.py --frontier --methods n-fgsm,fgsm-rs --epochs 3 --n 200 --no-retrain --tag screen

Work is cached under ``--work`` (default runs/bench_defenses): re-running resumes finished parts.
Writes ``benchmarks/results/defenses.json`` (``defenses_quick.json`` with --quick).
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
from advgan.attacker import AdvGAN, AdvGANConfig  # noqa: E402
from advgan.training import ClassifierConfig, train_classifier  # noqa: E402
from attacks import PGD, Classifier  # noqa: E402
from defenses import FinetuneConfig, before_after, finetune  # noqa: E402
from defenses.report import epoch_seconds  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_defenses"))
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs per method (default 8; quick 1)")
    ap.add_argument("--only", default=None, help="comma-separated subset of methods to run")
    ap.add_argument("--no-retrain", action="store_true", help="skip the retrained AdvGAN attackers")
    ap.add_argument("--retrain-for", default=None,
                    help="comma-separated models to retrain an AdvGAN against (default: all; AdvGAN training dominates the cost)")
    ap.add_argument("--train-size", type=int, default=None,
                    help="fine-tune on this many random training images (default all 4,000; quick 1,000)")
    ap.add_argument("--pgd-steps", type=int, default=10, help="PGD steps of pgd-at / trades / the PGD source during training")
    ap.add_argument("--tag", default="",
                    help="name this run: results go to defenses_TAG.json and work to WORK/TAG (e.g. a longer --only run)")
    ap.add_argument("--attacker-epochs", type=int, default=None, help="AdvGAN epochs (default 4; quick 1; frontier 2)")
    ap.add_argument("--frontier", action="store_true",
                    help="the cost-robustness frontier of every method -> defense_frontier[_TAG].json/.png (frontier.py)")
    ap.add_argument("--methods", default=None, help="frontier: comma-separated methods (default: all available)")
    ap.add_argument("--n", type=int, default=None,
                    help="test images evaluated, disjoint from the 250 validation images (<= 750; default: frontier 500, table 750)")
    ap.add_argument("--autoattack", action="store_true",
                    help="table: also AutoAttack standard on every model, and the worst case over every attack")
    ap.add_argument("--eval-only", action="store_true",
                    help="frontier: a second process (same flags) that evaluates the models while the first one trains")
    args = ap.parse_args()
    if args.n is not None and not 0 < args.n <= 750:
        ap.error(f"--n must be 1..750 (the test images outside the 250 validation images), got {args.n}")
    if args.tag and not args.tag.replace("-", "").replace("_", "").isalnum():
        ap.error(f"--tag must be letters, digits, - or _, got {args.tag!r}")
    if args.frontier:
        from frontier import run_frontier

        return run_frontier(args, ROOT)
    q = args.quick
    run_name = "_".join(x for x in ("quick" if q else "", args.tag) if x)
    work = Path(args.work) / (run_name or "full")
    eps, seed = 0.3, 0
    torch.manual_seed(seed)
    train, test = data.load("mnist5k")
    full_train = train
    size = args.train_size or (1000 if q else None)
    if size:
        train = Subset(train, torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:size].tolist())
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).tolist()
    # the frontier's split: the last 250 images of the permutation pick the best epoch, the first n are evaluated
    test_eval = Subset(test, perm[:args.n or (300 if q else 750)])
    train_loader = data.loader(train, 128, shuffle=True, seed=seed)
    test_loader = data.loader(test_eval, 250, shuffle=False)
    val_loader = data.loader(Subset(test, perm[-250:]), 250, shuffle=False)
    epochs = args.epochs or (1 if q else 8)
    atk_epochs = args.attacker_epochs or (1 if q else 4)
    t_start = time.time()

    # 1. the target (clean training) and the original AdvGAN attacker against it
    tdir = work / "target"
    clf, thist = train_classifier(Classifier.create("small_cnn", 10, in_chans=1), full_train, test,
                                  ClassifierConfig(progress=False, seed=seed), epochs=4, out_dir=tdir)
    print(f"target small_cnn: test accuracy {thist.epochs[-1]['test_accuracy']:.4f}", flush=True)
    adir = work / "advgan_original"
    atk = AdvGAN(clf, AdvGANConfig(eps=eps, progress=False, seed=seed))
    atk.fit(train_loader, atk_epochs, out_dir=adir)
    original = atk.as_attack()
    print(f"original AdvGAN trained ({atk_epochs} epochs)", flush=True)

    # 2. the defenses (all fine-tuned from the same target, same epochs and optimizer)
    base = dict(eps=eps, epochs=epochs, lr=1e-3, batch_size=128, progress=False, seed=seed, val_pgd_steps=10, val_batches=1)
    ps = args.pgd_steps
    pgd_src = PGD(eps=eps, steps=ps)
    runs = {
        "clean fine-tune": (FinetuneConfig(method="clean", **{**base, "epochs": 1}), None),
        "augment(AdvGAN)": (FinetuneConfig(method="augment", fraction=0.5, **base), [original]),
        "augment(AdvGAN+PGD)": (FinetuneConfig(method="augment", fraction=0.5, **base), [original, pgd_src]),
        "pgd-at": (FinetuneConfig(method="pgd-at", pgd_steps=ps, eps_ramp_epochs=1.0, **base), None),
        "fgsm-rs": (FinetuneConfig(method="fgsm-rs", **base), None),
        "trades": (FinetuneConfig(method="trades", pgd_steps=ps, eps_ramp_epochs=1.0, **base), None),
    }
    if args.only:
        keep = {s.strip() for s in args.only.split(",")} | {"clean fine-tune"}
        runs = {k: v for k, v in runs.items() if k in keep}
    models, histories = {"no defense": clf}, {}
    res_path = ROOT / "benchmarks" / "results" / (f"defenses_{run_name}.json" if run_name else "defenses.json")
    for name, (cfg, sources) in runs.items():
        t = time.time()
        robust, hist = finetune(clf, train_loader, cfg, sources=sources, val_loader=val_loader,
                                out_dir=work / "defenses" / name.replace("(", "_").replace(")", "").replace("+", "_"))
        histories[name] = hist
        if name != "clean fine-tune":
            models[name] = robust
        last = hist.epochs[-1]
        print(f"{name:22s} {time.time() - t:7.1f}s  val clean {last.get('val_clean_acc', 0):.3f} "
              f"robust {last.get('val_robust_acc', 0):.3f}  s/epoch {epoch_seconds(hist) or 0:.1f}", flush=True)
        partial = {"benchmark": "defenses", "partial": True, "quick": q, "n_train": len(train), "finetune_epochs": epochs,
                   "train_pgd_steps": ps, "note": "fine-tuning done so far (validation on 250 test images); final table pending",
                   "histories": {k: h.epochs for k, h in histories.items()}, "seconds_so_far": time.time() - t_start}
        res_path.parent.mkdir(parents=True, exist_ok=True)
        res_path.write_text(json.dumps(partial, indent=2, default=str))
    clean_sec = epoch_seconds(histories["clean fine-tune"])

    # 3. before/after: PGD-40, FGSM, original AdvGAN, AdvGAN retrained against each model
    retrain = False if args.no_retrain else ([s.strip() for s in args.retrain_for.split(",")] if args.retrain_for else True)
    rep = before_after(models, test_loader, eps=eps, original_attacker=original, retrain=retrain,
                       train_loader=train_loader, attacker_config=AdvGANConfig(eps=eps, progress=False, seed=seed + 7),
                       attacker_epochs=atk_epochs, pgd_steps=40, histories=histories, clean_epoch_seconds=clean_sec,
                       seed=seed, out_dir=work / "report", autoattack=args.autoattack)
    print()
    print(rep.to_markdown())
    rows = rep.rows
    defended = {k: v for k, v in rows.items() if k != "no defense"}
    best = max(defended, key=lambda k: defended[k]["robust_acc_pgd"] or 0) if defended else None
    checks = {}
    if "pgd-at" in rows:
        pgd_at = rows["pgd-at"]
        checks["pgd-at robust >= 80% and clean >= 95%"] = bool(pgd_at["robust_acc_pgd"] >= 0.80 and pgd_at["clean_acc"] >= 0.95)
    if best and rows[best].get("asr_advgan_retrained") is not None:
        checks[f"retrained AdvGAN ASR <= 10% vs best defense ({best})"] = bool(rows[best]["asr_advgan_retrained"] <= 0.10)
    if "augment(AdvGAN)" in rows and rows["augment(AdvGAN)"].get("epoch_cost_vs_clean") is not None:
        checks["AdvGAN-augmented epoch <= 1.5x clean"] = bool(rows["augment(AdvGAN)"]["epoch_cost_vs_clean"] <= 1.5)
    print()
    for k, v in checks.items():
        print(f"[{'PASS' if v else 'MISS'}] {k}")
    out = {
        "benchmark": "defenses", "quick": q, "tag": args.tag, "dataset": "mnist5k", "eps": eps, "norm": "linf",
        "target": {"arch": "small_cnn", "test_accuracy": thist.epochs[-1]["test_accuracy"]},
        "finetune_epochs": epochs, "attacker_epochs": atk_epochs, "n_test": len(test_eval), "n_train": len(train),
        "train_pgd_steps": ps, "autoattack": args.autoattack,
        "rows": rep.to_dict()["rows"], "clean_epoch_seconds": clean_sec, "best_defense": best, "targets_met": checks,
        "histories": {k: h.epochs for k, h in histories.items()},
        "total_seconds": time.time() - t_start,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    res = res_path
    res.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {res} ({out['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
