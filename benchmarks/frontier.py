"""The cost–robustness frontier of the defenses (run through ``benchmarks/defenses.py --frontier``).

Every method is fine-tuned from the same trained target for the same number of epochs (ε ramped up over
the first epoch for all adversarial methods), one after another in one process, so the seconds per
epoch are measured side by side; the clean fine-tune gives the cost unit. Each model is then evaluated on
``n`` MNIST-5k test images (disjoint from the 250 images used for best-epoch selection) at L-inf ε = 0.3:

- worst case per image over PGD-40, PGD-100 × 5 restarts and — once ``attacks.make_attack("autoattack")``
  is registered — AutoAttack (the column says which attacks were run);
- clean accuracy, and the ASR of an AdvGAN retrained against each defended model.

Writes ``benchmarks/results/defense_frontier[_TAG].json`` and ``defense_frontier[_TAG].png``.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from advgan import data
from advgan.attacker import AdvGANConfig
from advgan.training import ClassifierConfig, train_classifier
from attacks import PGD, Classifier, available_attacks, evaluate, make_attack, measure
from defenses import METHODS, FinetuneConfig, finetune, retrain_attacker
from defenses.report import epoch_seconds

#: every frontier method and its settings on top of the shared ones (clean = the cost unit)
SETTINGS: dict[str, dict[str, Any]] = {
    "clean": {"method": "clean", "eps_ramp_epochs": 0.0},
    "fgsm-rs": {"method": "fgsm-rs"},
    "n-fgsm": {"method": "n-fgsm"},
    "pgd-at": {"method": "pgd-at"},
    "trades": {"method": "trades"},
    "mart": {"method": "mart"},
    "awp": {"method": "awp", "awp_base": "pgd-at"},
    "advgan-at": {"method": "advgan-at"},
}
DEFAULT_METHODS = tuple(m for m in SETTINGS if SETTINGS[m]["method"] in METHODS)
#: variants for screens (``--methods``), not on the default frontier
SETTINGS.update({
    "n-fgsm-k1": {"method": "n-fgsm", "nfgsm_k": 1.0},
    "fgsm-rs-noguard": {"method": "fgsm-rs", "overfit_guard": False},
    "n-fgsm-noramp": {"method": "n-fgsm", "eps_ramp_epochs": 0.0},
    "fgsm-rs-noguard-noramp": {"method": "fgsm-rs", "overfit_guard": False, "eps_ramp_epochs": 0.0},
    "awp-trades": {"method": "awp", "awp_base": "trades"},
})


def eval_attacks(eps: float, seed: int) -> dict[str, Any]:
    """PGD-40, PGD-100 × 5 restarts and AutoAttack when ``attacks`` registers it."""
    # early stopping changes no robust accuracy (a fooled image stays fooled), only the cost
    atks: dict[str, Any] = {"pgd40": PGD(eps=eps, steps=40, seed=seed, early_stop=True),
                            "pgd100x5": PGD(eps=eps, steps=100, restarts=5, seed=seed, early_stop=True)}
    if "autoattack" in available_attacks():
        atks["autoattack"] = make_attack("autoattack", eps=eps, norm="linf", seed=seed)
    return atks


def run_frontier(args: Any, root: Path) -> int:
    eps, seed = 0.3, 0
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(DEFAULT_METHODS)
    unknown = [m for m in methods if m not in SETTINGS or SETTINGS[m]["method"] not in METHODS]
    if unknown:
        have = ", ".join(m for m in SETTINGS if SETTINGS[m]["method"] in METHODS)
        raise SystemExit(f"--methods: unknown or unavailable {unknown}; available: {have}")
    if "clean" not in methods:
        methods.insert(0, "clean")  # the cost unit
    epochs = args.epochs or 3
    n = args.n or 500
    tag = args.tag
    work = Path(args.work) / ("frontier" + (f"_{tag}" if tag else ""))
    torch.manual_seed(seed)
    train, test = data.load("mnist5k")
    if not 1 <= n <= len(test) - 250:
        raise SystemExit(f"--n must be in [1, {len(test) - 250}] (250 test images are kept for best-epoch selection)")
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).tolist()
    test_loader = data.loader(Subset(test, perm[:n]), 250, shuffle=False)
    val_loader = data.loader(Subset(test, perm[-250:]), 250, shuffle=False)
    train_loader = data.loader(train, 128, shuffle=True, seed=seed)
    t_start = time.time()
    clf, thist = train_classifier(Classifier.create("small_cnn", 10, in_chans=1), train, test,
                                  ClassifierConfig(progress=False, seed=seed), epochs=4,
                                  out_dir=Path(args.work) / "frontier_target")  # shared by every tag
    print(f"target small_cnn: test accuracy {thist.epochs[-1]['test_accuracy']:.4f}", flush=True)
    base = dict(eps=eps, epochs=epochs, lr=1e-3, batch_size=128, progress=False, seed=seed, val_pgd_steps=10,
                val_batches=1, pgd_steps=args.pgd_steps, eps_ramp_epochs=1.0)
    models: dict[str, Classifier] = {"no defense": clf}
    hists: dict[str, Any] = {}
    for m in methods:
        cfg = FinetuneConfig(**{**base, **SETTINGS[m]})
        t = time.time()
        robust, hist = finetune(clf, train_loader, cfg, val_loader=val_loader, out_dir=work / "defenses" / m)
        models[m], hists[m] = robust, hist
        print(f"{m:10s} {time.time() - t:7.1f}s  s/epoch {epoch_seconds(hist) or 0:.2f}", flush=True)
    clean_sec = epoch_seconds(hists["clean"])
    atks = eval_attacks(eps, seed)
    atk_cfg = AdvGANConfig(eps=eps, progress=False, seed=seed + 7)
    rows: dict[str, dict[str, Any]] = {}
    res_path = root / "benchmarks" / "results" / (f"defense_frontier_{tag}.json" if tag else "defense_frontier.json")
    for name, model in models.items():
        t = time.time()
        rep = evaluate(model, test_loader, atks, seed=seed, progress=False, sanity_checks=False, grid_images=0)
        sec = epoch_seconds(hists[name]) if name in hists else None
        row: dict[str, Any] = {
            "clean_acc": rep.clean_accuracy, "worst_case_acc": rep.worst_case().robust_accuracy,
            **{f"robust_acc_{a}": rep[a].robust_accuracy for a in atks},
            "seconds_per_epoch": sec, "cost_vs_clean_epoch": sec / clean_sec if sec and clean_sec else None,
            "asr_advgan_retrained": None,
        }
        if not args.no_retrain:
            atk = retrain_attacker(model, train_loader, eps=eps, epochs=args.attacker_epochs or 2, attacker_config=atk_cfg,
                                   out_dir=work / "attackers" / name.replace(" ", "_"))
            row["asr_advgan_retrained"] = measure(model, test_loader, atk, seed=seed).attack_success_rate
        rows[name] = row
        print(f"{name:10s} eval {time.time() - t:6.1f}s  clean {row['clean_acc']:.3f}  worst {row['worst_case_acc']:.3f}  "
              f"cost {row['cost_vs_clean_epoch'] or 0:.2f}x  ASR(retrained) {row['asr_advgan_retrained']}", flush=True)
        _write(res_path, rows, hists, atks, epochs, n, args, thist, t_start, partial=True)
    _write(res_path, rows, hists, atks, epochs, n, args, thist, t_start, partial=False)
    print()
    print(markdown(rows, list(atks)))
    plot(rows, res_path.with_suffix(".png"), epochs=epochs, n=n, attacks=list(atks))
    print(f"\nwrote {res_path} and {res_path.with_suffix('.png')} ({time.time() - t_start:.0f} s)")
    return 0


def _write(path: Path, rows: dict, hists: dict, atks: dict, epochs: int, n: int, args: Any, thist: Any, t0: float, *,
           partial: bool) -> None:
    out = {"benchmark": "defense_frontier", "partial": partial, "dataset": "mnist5k", "eps": 0.3, "norm": "linf",
           "n_test": n, "n_val": 250, "finetune_epochs": epochs, "train_pgd_steps": args.pgd_steps, "eps_ramp_epochs": 1.0,
           "attacker_epochs": None if args.no_retrain else (args.attacker_epochs or 2),
           "worst_case_over": list(atks), "autoattack": "autoattack" in atks,
           "target": {"arch": "small_cnn", "test_accuracy": thist.epochs[-1]["test_accuracy"]},
           "rows": rows, "histories": {k: h.epochs for k, h in hists.items()}, "total_seconds": time.time() - t0,
           "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str))


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def markdown(rows: dict[str, dict[str, Any]], attacks: list[str]) -> str:
    head = ["model", "cost × clean epoch", "worst case (" + " + ".join(attacks) + ")", "clean", *attacks,
            "retrained AdvGAN ASR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cost = "—" if r["cost_vs_clean_epoch"] is None else f"{r['cost_vs_clean_epoch']:.2f}×"
        lines.append("| " + " | ".join([name, cost, _pct(r["worst_case_acc"]), _pct(r["clean_acc"]),
                                        *[_pct(r[f"robust_acc_{a}"]) for a in attacks], _pct(r["asr_advgan_retrained"])]) + " |")
    return "\n".join(lines)


def plot(rows: dict[str, dict[str, Any]], path: Path, *, epochs: int, n: int, attacks: list[str]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, r in rows.items():
        x = r["cost_vs_clean_epoch"] if r["cost_vs_clean_epoch"] is not None else 0.0
        y = 100 * r["worst_case_acc"]
        ax.scatter([x], [y], s=40)
        ax.annotate(f"{name}\n(clean {100 * r['clean_acc']:.0f}%)", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    pts = sorted((r["cost_vs_clean_epoch"] or 0.0, 100 * r["worst_case_acc"]) for r in rows.values())
    best, hull = -1.0, []
    for x, y in pts:  # the non-dominated points: cheapest first, each more robust than every cheaper one
        if y > best:
            best = y
            hull.append((x, y))
    ax.step([h[0] for h in hull], [h[1] for h in hull], where="post", color="gray", alpha=0.5, linestyle="--", label="frontier")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("fine-tuning cost per epoch (× a clean epoch; no defense at 0)")
    ax.set_ylabel("worst-case robust accuracy (%)")
    ax.set_title(f"MNIST-5k, L-inf ε=0.3, {epochs} epochs, {n} test images; worst of {', '.join(attacks)}", fontsize=9)
    ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
