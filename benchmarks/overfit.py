"""Catastrophic overfitting of one-step adversarial training, epoch by epoch: fgsm-rs (guard off / on) vs N-FGSM.

Every method fine-tunes the same ``small_cnn`` target (the defenses benchmark's, 4 clean epochs) on the 4,000
MNIST-5k training images at L-inf ``--eps`` with no eps ramp (the ramp is what usually hides the collapse). After
every epoch the engine's validation measures clean and PGD-10 robust accuracy on 250 test images; catastrophic
overfitting shows as PGD robust accuracy collapsing towards 0 while the one-step training examples are still beaten.
The model each run returns (its best epoch) is then measured with PGD-40 on 500 other test images.

    python benchmarks/overfit.py --epochs 10                      # eps 0.3, the three methods
    python benchmarks/overfit.py --epochs 10 --eps 0.35 --tag e35 # a larger budget
    python benchmarks/overfit.py --methods n-fgsm --epochs 2      # a smoke run
    python benchmarks/overfit.py --methods n-fgsm-k1,n-fgsm-k0.5 --tag nk  # N-FGSM with less noise (k = 1, 0.5)
    python benchmarks/overfit.py --methods advgan-at-fast --epochs 30 --ramp 1 --probe --tag at30  # advgan-at, long

``--probe`` also times one epoch of every method against a clean epoch (``frontier.cost_probe``: CPU seconds of the
same 6 batches, round-robin, median of ``--probe-rounds``, default 3) and records the ratio as ``cost_vs_clean_epoch``;
``--probe-only`` does only that, side by side, and writes ``benchmarks/results/overfit_probe[_TAG].json``:

    python benchmarks/overfit.py --probe-only --probe-rounds 5 --methods fgsm-rs-noguard,advgan-at-sdi-h,advgan-at-sdi-min --tag cost

Prints a table and writes ``benchmarks/results/overfit[_TAG].json`` and ``.png`` (PGD-10 accuracy per epoch).
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
from attacks import PGD, Classifier, measure  # noqa: E402
from defenses import FinetuneConfig, finetune  # noqa: E402
from defenses.advgan_at import GAN_GAME  # noqa: E402

#: name -> FinetuneConfig overrides (advgan-at rows start from GAN_GAME, the defaults they were measured with)
#: advgan-at's earlier defaults (the D-and-G game), the base every advgan-at row below was measured on
_AT = {"method": "advgan-at", **GAN_GAME}
#: advgan-at with gen_init and G trained on the loss after the step (Jia et al. 2022): C on the stepped examples only
_SDI = {**_AT, "gen_mix": 0.0, "gen_clean": 0.0, "gen_alpha": 0.0, "gen_fraction": 0.25, "gen_init": True}
METHODS = {
    "clean": {"method": "clean"},  # the cost unit of --probe
    "fgsm-rs-noguard": {"method": "fgsm-rs", "overfit_guard": False},
    "fgsm-rs": {"method": "fgsm-rs", "overfit_guard": True},
    "n-fgsm": {"method": "n-fgsm"},
    "n-fgsm-k1": {"method": "n-fgsm", "nfgsm_k": 1.0},
    "n-fgsm-k0.5": {"method": "n-fgsm", "nfgsm_k": 0.5},
    "pgd-at": {"method": "pgd-at"},
    # advgan-at for as long as the one-step methods (#16): half fgsm-rs, half generator, no D, G on a quarter batch
    "advgan-at-fast": {**_AT, "gen_mix": 0.5, "gen_clean": 0.0, "gen_alpha": 0.0, "gen_fraction": 0.25},
    "advgan-at-fast-grad": {**_AT, "gen_mix": 0.5, "gen_clean": 0.0, "gen_alpha": 0.0, "gen_fraction": 0.25,
                            "gen_grad": True},
    "advgan-at-fast-m75": {**_AT, "gen_mix": 0.75, "gen_clean": 0.0, "gen_alpha": 0.0, "gen_fraction": 0.25},
    # G's example starts one FGSM step (a learned initialisation, Jia et al. 2022), every row
    "advgan-at-init": {**_AT, "gen_mix": 0.0, "gen_clean": 0.0, "gen_alpha": 0.0, "gen_fraction": 0.25,
                       "gen_init": True},
    # gen_init with G trained on the loss after the step (Jia et al. 2022), the paper's step (eps) and half of it
    "advgan-at-sdi": {**_SDI, "gen_init_step": 1.0},
    "advgan-at-sdi-h": {**_SDI, "gen_init_step": 0.5},
    "advgan-at-sdi-lite": {**_SDI, "gen_init_step": 0.5, "gen_fraction": 0.125, "gen_width": 4},  # the same, cheaper G
    "advgan-at-sdi-h-frozen": {**_SDI, "gen_init_step": 0.5, "gen_lr": 1e-9},  # control: G stays at its random init
    "advgan-at-sdi-min": {**_SDI, "gen_init_step": 0.5, "gen_fraction": 0.0625, "gen_width": 4},  # G on 1/16 of a batch
    "advgan-at-sdi-w2": {**_SDI, "gen_init_step": 0.5, "gen_fraction": 0.0625, "gen_width": 2},  # ... quarter-width G
    # G as C's gradient-reversal partner: it ascends C's own loss from C's backward, on every row (no G step)
    **{f"advgan-at-rev-w{w}": {**_SDI, "gen_init_step": 0.5, "gen_fraction": 1.0, "gen_reverse": True, "gen_width": w}
       for w in (2, 4, 8)},
    "advgan-at-kl": {**_AT, "gen_mix": 0.5, "gen_kl": 1.0, "gen_alpha": 0.0, "gen_fraction": 0.25},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--ramp", type=float, default=0.0, help="eps ramp epochs (default 0: none)")
    ap.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: FinetuneConfig's)")
    ap.add_argument("--methods", default="fgsm-rs-noguard,fgsm-rs,n-fgsm", help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--probe", action="store_true", help="time each method's epoch against a clean epoch first")
    ap.add_argument("--probe-only", action="store_true",
                    help="only time the methods' epochs against a clean epoch (side by side, one process) and stop")
    ap.add_argument("--probe-rounds", type=int, default=3, help="round-robin repeats of the probe (median)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the fine-tuning runs and their data order (the target and the splits stay at seed 0)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_overfit"))
    args = ap.parse_args()
    names = [m for m in args.methods.split(",") if m]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        ap.error(f"unknown method(s) {bad}; valid: {', '.join(METHODS)}")
    if args.probe_rounds < 1:
        ap.error(f"--probe-rounds must be >= 1, got {args.probe_rounds}")
    if args.tag and not args.tag.replace("-", "").replace("_", "").isalnum():
        ap.error(f"--tag must be letters, digits, - or _, got {args.tag!r}")
    torch.set_num_threads(1)
    seed, ft_seed = 0, args.seed
    work = Path(args.work) / (args.tag or "default")
    train, test = data.load("mnist5k")
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).tolist()
    val_loader = data.loader(Subset(test, perm[-250:]), 250, shuffle=False)
    x_eval = torch.stack([test[i][0] for i in perm[:500]])
    y_eval = torch.tensor([int(test[i][1]) for i in perm[:500]])
    train_loader = data.loader(train, 128, shuffle=True, seed=ft_seed)
    clf, thist = train_classifier(Classifier.create("small_cnn", 10, in_chans=1, seed=seed), train, test,
                                  ClassifierConfig(progress=False, seed=seed), epochs=4, out_dir=work / "target")
    print(f"target small_cnn: test accuracy {thist.epochs[-1]['test_accuracy']:.4f}", flush=True)
    cost: dict[str, float] = {}
    if args.probe or args.probe_only:
        from frontier import cost_probe

        cfgs = {m: FinetuneConfig(eps=args.eps, epochs=1, progress=False, seed=seed, device="cpu", **METHODS[m])
                for m in ["clean", *names]}
        times = cost_probe(clf, train_loader, cfgs, rounds=args.probe_rounds)
        cost = {m: times[m] / times["clean"] for m in names}
        if args.probe_only:
            print("\n| method | CPU s / probe epoch | cost x clean epoch |\n|---|---:|---:|")
            for m in ["clean", *names]:
                print(f"| {m} | {times[m]:.3f} | {cost.get(m, 1.0):.2f}x |")
            out = ROOT / "benchmarks" / "results" / f"overfit_probe{'_' + args.tag if args.tag else ''}.json"
            out.write_text(json.dumps({"benchmark": "overfit_probe", "eps": args.eps, "rounds": args.probe_rounds,
                                       "batches": 6, "seconds": times, "cost_vs_clean_epoch": cost, "threads": 1,
                                       "machine": platform.platform()}, indent=1))
            return 0
    rows = []
    for name in names:
        extra = {"lr": args.lr} if args.lr is not None else {}
        cfg = FinetuneConfig(eps=args.eps, epochs=args.epochs, eps_ramp_epochs=args.ramp, progress=False, seed=ft_seed,
                             device="cpu", **METHODS[name], **extra)
        t0 = time.perf_counter()
        robust, hist = finetune(clf, train_loader, cfg, val_loader=val_loader, out_dir=work / name)
        secs = time.perf_counter() - t0
        curve = [{"epoch": i + 1, "clean": e.get("val_clean_acc"), "pgd10": e.get("val_robust_acc"),
                  "train_adv_acc": _epoch_mean(hist.steps, i, "C/adv_acc"),
                  "guard": e.get("guard_robust_acc"), "rolled_back": bool(e.get("rolled_back", False))}
                 for i, e in enumerate(hist.epochs)]
        pgd40 = PGD(eps=args.eps, steps=40, seed=seed)
        m = measure(robust, [(x_eval[:250], y_eval[:250]), (x_eval[250:], y_eval[250:])], pgd40)
        pgd_curve = [c["pgd10"] for c in curve if c["pgd10"] is not None]
        peak = max(pgd_curve) if pgd_curve else float("nan")
        row = {"method": name, "config": METHODS[name], "curve": curve, "peak_pgd10": peak,
               "last_pgd10": pgd_curve[-1] if pgd_curve else None,
               "collapsed": bool(pgd_curve and peak - min(pgd_curve[pgd_curve.index(peak):]) > 0.2),
               "rollbacks": sum(c["rolled_back"] for c in curve),
               "returned_clean": m.clean_accuracy, "returned_pgd40": m.robust_accuracy, "seconds": secs,
               "cost_vs_clean_epoch": cost.get(name)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
        print("  per epoch, PGD-10 / training-example accuracy: " + " ".join(
            f"{c['pgd10']:.2f}/{c['train_adv_acc'] if c['train_adv_acc'] is not None else float('nan'):.2f}" for c in curve
            if c["pgd10"] is not None), flush=True)
        _write(args, rows, clf_acc=thist.epochs[-1]["test_accuracy"])
    print()
    print("| method | peak PGD-10 (epoch) | last-epoch PGD-10 | collapse (> 20 points after the peak) | rollbacks |"
          " returned model: clean / PGD-40 |")
    print("|---|---:|---:|---|---:|---:|")
    for r in rows:
        ep = next(c["epoch"] for c in r["curve"] if c["pgd10"] == r["peak_pgd10"])
        print(f"| {r['method']} | {r['peak_pgd10']:.1%} ({ep}) | {r['last_pgd10']:.1%} | {'yes' if r['collapsed'] else 'no'} |"
              f" {r['rollbacks']} | {r['returned_clean']:.1%} / {r['returned_pgd40']:.1%} |")
    return 0


def _epoch_mean(steps: list[dict], epoch: int, key: str) -> float | None:
    """Mean of a logged step value over one epoch (0-based): the accuracy on the one-step training examples."""
    vals = [s[key] for s in steps if s.get("epoch") == epoch and key in s]
    return sum(vals) / len(vals) if vals else None


def _write(args: argparse.Namespace, rows: list[dict], clf_acc: float) -> None:
    out = ROOT / "benchmarks" / "results" / f"overfit{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps({"benchmark": "overfit", "eps": args.eps, "epochs": args.epochs, "eps_ramp_epochs": args.ramp,
                               "lr": args.lr, "seed": args.seed, "target_clean": clf_acc, "val_images": 250, "eval_images": 500,
                               "threads": 1, "machine": platform.platform(), "rows": rows}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in rows:
        pts = [(c["epoch"], c["pgd10"]) for c in r["curve"] if c["pgd10"] is not None]
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=r["method"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("PGD-10 robust accuracy (%)")
    ax.set_title(f"one-step adversarial training, L-inf eps {args.eps:g}, no ramp" if not args.ramp else
                 f"one-step adversarial training, L-inf eps {args.eps:g}, ramp {args.ramp:g}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
