"""Ablation of ``advgan-at`` (an AdvGAN generator trained online against the classifier) on MNIST-5k, L-inf ε = 0.3.

Every run fine-tunes the same clean ``small_cnn`` target (4 clean epochs) with the same optimizer and epochs.
Rows: the advgan-at variants (the full recipe, the full recipe minus one technique, the bare game) and
fgsm-rs + ε ramp as the one-step reference. Columns: clean accuracy, robust accuracy under PGD-40 and
(for the best advgan-at row and the reference) PGD-100 x 5 restarts, on ``--n-test`` test images, and the
training cost of an epoch as × a clean epoch measured in the same run (a clean fine-tuning epoch timed
before and after the other runs; the mean is the unit). ``make_attack("autoattack")`` is added as a column
when the attacks package registers it.

    python benchmarks/advgan_at.py                  # the ablation (~60 min on 2 busy CPU cores)
    python benchmarks/advgan_at.py --quick          # smoke run
    python benchmarks/advgan_at.py --only full --epochs 15 --tag long   # one variant, longer

Work is cached under ``--work`` (re-running resumes finished runs). Writes ``benchmarks/results/advgan_at.json``
(``advgan_at_TAG.json`` with --tag, ``advgan_at_quick.json`` with --quick), after every row.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advgan import data  # noqa: E402
from advgan.training import ClassifierConfig, train_classifier  # noqa: E402
from attacks import PGD, Classifier, measure  # noqa: E402
from defenses import FinetuneConfig, finetune  # noqa: E402
from defenses.advgan_at import GAN_GAME  # noqa: E402
from defenses.report import epoch_seconds  # noqa: E402

#: the full recipe; each ablation row removes (or changes) one part of it
FULL = dict(GAN_GAME, gen_noise=2, gen_mix=0.5, eps_ramp_epochs=2.0, gen_kl=1.0, gen_steps=1, gen_alpha=1.0)
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "full - noise": {"gen_noise": 0},
    "full - fgsm-rs mix": {"gen_mix": 0.0},
    "full - ramp": {"eps_ramp_epochs": 0.0},
    "full - TRADES KL": {"gen_kl": 0.0},
    "full - D (alpha 0)": {"gen_alpha": 0.0},
    "cheap: no D + G on 1/4 batch": {"gen_alpha": 0.0, "gen_fraction": 0.25},
    "bare game (G+D only)": {"gen_noise": 0, "gen_mix": 0.0, "eps_ramp_epochs": 0.0, "gen_kl": 0.0},
}


def autoattack_or_none(eps: float) -> Any:
    try:
        from attacks import make_attack

        return make_attack("autoattack", eps=eps, norm="linf")
    except (ValueError, ImportError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_advgan_at"))
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs per run (default 4; quick 1)")
    ap.add_argument("--only", default=None, help="comma-separated variants (and/or 'fgsm-rs+ramp') to run")
    ap.add_argument("--n-test", type=int, default=None, help="test images for the final attacks (default 500; quick 100)")
    ap.add_argument("--strong-for", type=int, default=1, help="PGD-100x5 for this many best advgan-at rows (+ the reference)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--merge", default=None,
                    help="comma-separated tags of finished runs (e.g. groups run side by side) to merge into advgan_at.json")
    args = ap.parse_args()
    if args.merge:
        return merge([t.strip() for t in args.merge.split(",")])
    q = args.quick
    run_name = "_".join(x for x in ("quick" if q else "", args.tag) if x)
    work = Path(args.work) / (run_name or "full")
    eps, seed = 0.3, 0
    epochs = args.epochs or (1 if q else 4)
    n_test = args.n_test or (100 if q else 500)
    train, test = data.load("mnist5k")
    if q:
        train_ft = Subset(train, torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:512].tolist())
    else:
        train_ft = train
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).tolist()
    val_loader = data.loader(Subset(test, perm[-250:]), 250, shuffle=False)          # per-epoch selection: held apart
    test_loader = data.loader(Subset(test, perm[:n_test]), 250, shuffle=False)      # the final attacks
    res_path = ROOT / "benchmarks" / "results" / (f"advgan_at_{run_name}.json" if run_name else "advgan_at.json")
    t_start = time.time()

    clf, thist = train_classifier(Classifier.create("small_cnn", 10, in_chans=1, seed=seed), train, test,
                                  ClassifierConfig(progress=False, seed=seed), epochs=1 if q else 4, out_dir=work / "target")
    print(f"target small_cnn: test accuracy {thist.epochs[-1]['test_accuracy']:.4f}", flush=True)

    base = dict(eps=eps, epochs=epochs, lr=1e-3, batch_size=128, progress=False, seed=seed, val_pgd_steps=10, val_batches=1)
    runs: dict[str, FinetuneConfig] = {name: FinetuneConfig(method="advgan-at", **{**base, **FULL, **v}) for name, v in VARIANTS.items()}
    runs["fgsm-rs+ramp"] = FinetuneConfig(method="fgsm-rs", eps_ramp_epochs=2.0, **base)
    if args.only:
        keep = {s.strip() for s in args.only.split(",")}
        unknown = keep - set(runs)
        if unknown:
            ap.error(f"unknown variants {sorted(unknown)}; valid: {', '.join(runs)}")
        runs = {k: v for k, v in runs.items() if k in keep}
    pgd40 = PGD(eps=eps, steps=40, seed=seed)
    rows: dict[str, dict[str, Any]] = {}
    clean_secs: list[float] = []

    def clean_epoch(tag: str) -> None:
        _, h = finetune(clf, data.loader(train_ft, 128, shuffle=True, seed=seed),
                        FinetuneConfig(method="clean", **{**base, "epochs": 1}), out_dir=work / f"clean_{tag}")
        s = epoch_seconds(h)
        if s:
            clean_secs.append(s)
        print(f"clean epoch ({tag}): {s:.1f}s", flush=True)

    def dump(final: bool) -> None:
        unit = sum(clean_secs) / len(clean_secs) if clean_secs else None
        for r in rows.values():
            r["epoch_cost_vs_clean"] = r["seconds_per_epoch"] / unit if unit and r.get("seconds_per_epoch") else None
        out = {"benchmark": "advgan_at", "partial": not final, "quick": q, "dataset": "mnist5k", "eps": eps, "norm": "linf",
               "target": {"arch": "small_cnn", "test_accuracy": thist.epochs[-1]["test_accuracy"]}, "epochs": epochs,
               "n_train": len(train_ft), "n_test": n_test, "full_recipe": FULL, "variants": VARIANTS,
               "clean_epoch_seconds": clean_secs, "rows": rows, "total_seconds": time.time() - t_start,
               "autoattack": "make_attack('autoattack') not registered: column absent" if autoattack_or_none(eps) is None else "included",
               "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}}
        res_path.parent.mkdir(parents=True, exist_ok=True)
        res_path.write_text(json.dumps(out, indent=2, default=str))

    clean_epoch("before")
    for name, cfg in runs.items():
        t = time.time()
        out = work / "runs" / "".join(c if c.isalnum() else "_" for c in name)
        robust, hist = finetune(clf, data.loader(train_ft, 128, shuffle=True, seed=seed), cfg, val_loader=val_loader, out_dir=out)
        m = measure(robust, test_loader, pgd40)
        rows[name] = {"method": cfg.method, "clean_acc": m.clean_accuracy, "robust_acc_pgd40": m.robust_accuracy,
                      "seconds_per_epoch": epoch_seconds(hist),
                      "best_epoch": next((e["epoch"] for e in hist.epochs[::-1] if e.get("best")), None),
                      "history": hist.epochs}
        print(f"{name:24s} {time.time() - t:7.1f}s  clean {m.clean_accuracy:.3f}  PGD-40 {m.robust_accuracy:.3f}  "
              f"s/epoch {epoch_seconds(hist) or 0:.1f}", flush=True)
        dump(False)
    clean_epoch("after")

    # the strong evaluation for the best advgan-at rows and the reference
    at_rows = sorted((k for k in rows if rows[k]["method"] == "advgan-at"), key=lambda k: -rows[k]["robust_acc_pgd40"])
    strong = at_rows[: args.strong_for] + [k for k in rows if rows[k]["method"] != "advgan-at"]
    pgd100 = PGD(eps=eps, steps=100, restarts=5, early_stop=True, seed=seed)
    aa = autoattack_or_none(eps)
    for name in strong:
        out = work / "runs" / "".join(c if c.isalnum() else "_" for c in name)
        robust = Classifier.load(out)
        t = time.time()
        r = rows[name]
        r["robust_acc_pgd100x5"] = measure(robust, test_loader, pgd100).robust_accuracy
        if aa is not None:
            r["robust_acc_autoattack"] = measure(robust, test_loader, aa).robust_accuracy
        r["worst_case"] = min(v for k, v in r.items() if k.startswith("robust_acc_"))
        print(f"{name:24s} PGD-100x5 {r['robust_acc_pgd100x5']:.3f}  ({time.time() - t:.0f}s)", flush=True)
        dump(False)
    dump(True)

    print("\n| run | clean | PGD-40 | PGD-100x5 | cost (x clean epoch) |\n|---|---|---|---|---|")
    for name, r in rows.items():
        strong_acc = r.get("robust_acc_pgd100x5")
        cost = r.get("epoch_cost_vs_clean")
        print(f"| {name} | {r['clean_acc']:.3f} | {r['robust_acc_pgd40']:.3f} | "
              f"{'' if strong_acc is None else f'{strong_acc:.3f}'} | {'' if cost is None else f'{cost:.2f}'} |")
    print(f"\nwrote {res_path}  ({time.time() - t_start:.0f}s)")
    return 0


def merge(tags: list[str]) -> int:
    """One table from runs made by several processes: each row keeps the cost unit of its own process."""
    res = ROOT / "benchmarks" / "results"
    parts = [json.loads((res / f"advgan_at_{t}.json").read_text()) for t in tags]
    out = {**parts[0], "merged_from": tags, "rows": {}, "clean_epoch_seconds": {}, "partial": any(p["partial"] for p in parts)}
    for t, p in zip(tags, parts):
        out["rows"].update({k: {**v, "process": t} for k, v in p["rows"].items()})
        out["clean_epoch_seconds"][t] = p["clean_epoch_seconds"]
    (res / "advgan_at.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"merged {tags} -> {res / 'advgan_at.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
