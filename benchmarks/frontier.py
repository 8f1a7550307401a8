"""The cost–robustness frontier of the defenses (run through ``benchmarks/defenses.py --frontier``).

Every method is fine-tuned from the same trained target for the same number of epochs (ε ramped up over
the first epoch for all adversarial methods), one after another in one process, so the seconds per
epoch are measured side by side; the clean fine-tune gives the cost unit. Each model is then evaluated on
``n`` MNIST-5k test images (disjoint from the 250 images used for best-epoch selection) at L-inf ε = 0.3:

- worst case per image over PGD-40 and AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square; PGD-100 × 5
  restarts stands in if ``attacks.make_attack("autoattack")`` is not registered; the columns say which ran);
- clean accuracy, and the ASR of an AdvGAN retrained against each defended model.

Writes ``benchmarks/results/defense_frontier[_TAG].json`` and ``defense_frontier[_TAG].png``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.data import Subset

from advgan import data
from advgan.attacker import AdvGANConfig
from advgan.training import ClassifierConfig, train_classifier
from attacks import PGD, Classifier, available_attacks, evaluate, make_attack, measure
from defenses import METHODS, FinetuneConfig, finetune, retrain_attacker
from defenses.advgan_at import GAN_GAME
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
    "advgan-at": {"method": "advgan-at"},  # the defaults: G a learned FGSM start, trained by gradient reversal
}
DEFAULT_METHODS = tuple(m for m in SETTINGS if SETTINGS[m]["method"] in METHODS)
#: variants for screens (``--methods``), not on the default frontier
SETTINGS.update({
    "n-fgsm-k1": {"method": "n-fgsm", "nfgsm_k": 1.0},
    "fgsm-rs-noguard": {"method": "fgsm-rs", "overfit_guard": False},
    "n-fgsm-noramp": {"method": "n-fgsm", "eps_ramp_epochs": 0.0},
    "n-fgsm-k1-noramp": {"method": "n-fgsm", "nfgsm_k": 1.0, "eps_ramp_epochs": 0.0},
    "fgsm-rs-noguard-noramp": {"method": "fgsm-rs", "overfit_guard": False, "eps_ramp_epochs": 0.0},
    "awp-trades": {"method": "awp", "awp_base": "trades"},
    # short-budget tuning screen (#16): smaller MART beta, smaller AWP gamma, AWP after a pgd-at warm-up
    "mart-b1": {"method": "mart", "mart_beta": 1.0},
    "mart-b3": {"method": "mart", "mart_beta": 3.0},
    "awp-g1e3": {"method": "awp", "awp_base": "pgd-at", "awp_gamma": 1e-3},
    "awp-w4": {"method": "awp", "awp_base": "pgd-at", "awp_warmup_epochs": 4.0},
    "awp-trades-g1e3": {"method": "awp", "awp_base": "trades", "awp_gamma": 1e-3},
    # advgan-at screen on the D-and-G game (the earlier defaults): the generator alone (no fgsm-rs share, no KL),
    # and with the gradient input; "advgan-at-game" is the frontier's earlier advgan-at row
    "advgan-at-game": {"method": "advgan-at", **GAN_GAME},
    "advgan-at-bare": {"method": "advgan-at", **GAN_GAME, "gen_mix": 0.0, "gen_kl": 0.0},
    "advgan-at-grad": {"method": "advgan-at", **GAN_GAME, "gen_grad": True},
    "advgan-at-grad-nomix": {"method": "advgan-at", **GAN_GAME, "gen_grad": True, "gen_mix": 0.0},
})


def eval_attacks(eps: float, seed: int) -> dict[str, Any]:
    """PGD-40 and AutoAttack (standard); PGD-100 × 5 restarts stands in where AutoAttack is not registered."""
    # early stopping changes no robust accuracy (a fooled image stays fooled), only the cost
    atks: dict[str, Any] = {"pgd40": PGD(eps=eps, steps=40, seed=seed, early_stop=True)}
    if "autoattack" in available_attacks():
        atks["autoattack"] = make_attack("autoattack", eps=eps, norm="linf", seed=seed)
    else:
        atks["pgd100x5"] = PGD(eps=eps, steps=100, restarts=5, seed=seed, early_stop=True)
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
    if args.train_size:  # a smoke run on fewer training images
        train = train.subset(args.train_size, seed=seed)
    train_loader = data.loader(train, 128, shuffle=True, seed=seed)
    t_start = time.time()
    tdir = Path(args.work) / "frontier_target"  # shared by every tag
    if args.eval_only:  # a second process that evaluates the models as the training process finishes them
        while not (tdir / "model.safetensors").is_file():
            time.sleep(20)
        clf = Classifier.load(tdir)
        thist = SimpleNamespace(epochs=json.loads((tdir / "config.json").read_text())["extra"]["history"])
    else:
        clf, thist = train_classifier(Classifier.create("small_cnn", 10, in_chans=1), train, test,
                                      ClassifierConfig(progress=False, seed=seed), epochs=4, out_dir=tdir)
    print(f"target small_cnn: test accuracy {thist.epochs[-1]['test_accuracy']:.4f}", flush=True)
    base = dict(eps=eps, epochs=epochs, lr=1e-3, batch_size=128, progress=False, seed=seed, val_pgd_steps=10,
                val_batches=1, pgd_steps=args.pgd_steps, eps_ramp_epochs=1.0)
    for m in [] if args.eval_only else methods:
        cfg = FinetuneConfig(**{**base, **SETTINGS[m]})
        t = time.time()
        _, hist = finetune(clf, train_loader, cfg, val_loader=val_loader, out_dir=work / "defenses" / m)
        print(f"{m:10s} {time.time() - t:7.1f}s  s/epoch {epoch_seconds(hist) or 0:.2f}", flush=True)
    probe_file = work / "cost_probe.json"
    if not args.eval_only and not probe_file.is_file():
        probe_file.write_text(json.dumps(cost_probe(clf, train_loader, {m: FinetuneConfig(**{**base, **SETTINGS[m]}) for m in methods})))
    atks = eval_attacks(eps, seed)
    atk_cfg = AdvGANConfig(eps=eps, progress=False, seed=seed + 7)
    res_path = root / "benchmarks" / "results" / (f"defense_frontier_{tag}.json" if tag else "defense_frontier.json")
    rows_dir = work / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)

    def evaluate_row(name: str, model: Classifier) -> dict[str, Any]:
        t = time.time()
        rep = evaluate(model, test_loader, atks, seed=seed, progress=False, sanity_checks=False, grid_images=0)
        row: dict[str, Any] = {"clean_acc": rep.clean_accuracy, "worst_case_acc": rep.worst_case().robust_accuracy,
                               **{f"robust_acc_{a}": rep[a].robust_accuracy for a in atks}, "asr_advgan_retrained": None}
        if not args.no_retrain:
            atk = retrain_attacker(model, train_loader, eps=eps, epochs=args.attacker_epochs or 2, attacker_config=atk_cfg,
                                   out_dir=work / "attackers" / name.replace(" ", "_"))
            row["asr_advgan_retrained"] = measure(model, test_loader, atk, seed=seed).attack_success_rate
        row["eval_seconds"] = time.time() - t
        print(f"{name:10s} eval {row['eval_seconds']:6.1f}s  clean {row['clean_acc']:.3f}  worst {row['worst_case_acc']:.3f}  "
              f"ASR(retrained) {row['asr_advgan_retrained']}", flush=True)
        return row

    # each model is evaluated once, by whichever process claims it first (lock file, then the row's JSON)
    pending = ["no defense", *methods]
    found: dict[str, dict[str, Any]] = {}
    while pending:
        progressed = False
        for name in list(pending):
            row_file, lock = rows_dir / f"{name}.json", rows_dir / f"{name}.lock"
            mdir = tdir if name == "no defense" else work / "defenses" / name
            if row_file.is_file():
                found[name] = json.loads(row_file.read_text())
                pending.remove(name)
                progressed = True
            elif (mdir / "model.safetensors").is_file() and _claim(lock):
                row = evaluate_row(name, clf if name == "no defense" else Classifier.load(mdir))
                tmp = row_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(row))
                tmp.replace(row_file)
                progressed = True
        if not progressed:
            time.sleep(20)
    while not probe_file.is_file():
        time.sleep(20)
    probe = json.loads(probe_file.read_text())
    hists = {m: SimpleNamespace(epochs=json.loads((work / "defenses" / m / "config.json").read_text())["extra"]["history"])
             for m in methods}
    clean_sec = epoch_seconds(hists["clean"])
    rows: dict[str, dict[str, Any]] = {}
    for name in ["no defense", *methods]:
        sec = epoch_seconds(hists[name]) if name in hists else None
        rows[name] = {**found[name], "seconds_per_epoch": sec,
                      "epoch_time_vs_clean": sec / clean_sec if sec and clean_sec else None,
                      "cost_vs_clean_epoch": probe[name] / probe["clean"] if name in probe else None}
    _write(res_path, rows, hists, atks, epochs, n, args, thist, t_start, partial=False)
    print()
    print(markdown(rows, list(atks)))
    plot(rows, res_path.with_suffix(".png"), epochs=epochs, n=n, attacks=list(atks))
    print(f"\nwrote {res_path} and {res_path.with_suffix('.png')} ({time.time() - t_start:.0f} s)")
    return 0


def cost_probe(clf: Classifier, loader: Any, cfgs: dict[str, FinetuneConfig], *, batches: int = 6, rounds: int = 3) -> dict[str, float]:
    """Median CPU seconds (``time.process_time``: this process only, so other jobs on the machine do not count) of
    one fine-tuning epoch over the same ``batches`` batches, through :func:`defenses.finetune` itself (so every
    method, the three-player advgan-at included, is timed the same way), interleaved round-robin for ``rounds``.
    fgsm-rs's overfitting guard (PGD-10 on 256 held-out images once per epoch) is switched off here: on a
    6-batch probe epoch it would weigh ~5x what it weighs in a real 32-batch epoch."""
    import statistics

    from torch.utils.data import TensorDataset

    xs, ys = zip(*[b for _, b in zip(range(batches), loader)])
    probe = data.loader(TensorDataset(torch.cat(xs), torch.cat(ys)), int(xs[0].shape[0]), shuffle=False)
    times: dict[str, list[float]] = {m: [] for m in cfgs}
    for _ in range(rounds):
        for m, cfg in cfgs.items():
            t = time.process_time()
            finetune(clf, probe, replace(cfg, epochs=1, overfit_guard=False))
            times[m].append(time.process_time() - t)
    out = {m: statistics.median(v) for m, v in times.items()}
    print("cost probe (median CPU s/epoch of " + str(batches) + " batches): "
          + ", ".join(f"{m} {v:.3f}" for m, v in out.items()), flush=True)
    return out


def _claim(lock: Path) -> bool:
    """Create ``lock`` (holding this pid) unless a live process holds it."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            return False
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)  # its holder died: take it over
            return _claim(lock)
        except PermissionError:
            return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


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
    head = ["model", "cost × clean step (probe)", "epoch time × clean", "worst case (" + " + ".join(attacks) + ")", "clean", *attacks,
            "retrained AdvGAN ASR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cost = "—" if r["cost_vs_clean_epoch"] is None else f"{r['cost_vs_clean_epoch']:.2f}×"
        et = "—" if r.get("epoch_time_vs_clean") is None else f"{r['epoch_time_vs_clean']:.2f}×"
        lines.append("| " + " | ".join([name, cost, et, _pct(r["worst_case_acc"]), _pct(r["clean_acc"]),
                                        *[_pct(r[f"robust_acc_{a}"]) for a in attacks], _pct(r["asr_advgan_retrained"])]) + " |")
    return "\n".join(lines)


def plot(rows: dict[str, dict[str, Any]], path: Path, *, epochs: int, n: int, attacks: list[str]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pts = sorted((r["cost_vs_clean_epoch"] or 0.0, 100 * r["worst_case_acc"]) for r in rows.values())
    xr = max(max(p[0] for p in pts), 1.0)
    yr = max(max(p[1] for p in pts), 10.0)
    xlim, ylim = (-0.1 * xr, xr * 1.18), (-0.14 * yr - 3, yr * 1.15 + 3)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    w_pt, h_pt = 390.0, 250.0  # the axes' size in points (7 x 4.5 in figure), for label placement
    boxes: list[tuple[float, float]] = []  # lower-left corners of the placed labels (64 x 22 pt each)
    for name, r in rows.items():
        x = r["cost_vs_clean_epoch"] if r["cost_vs_clean_epoch"] is not None else 0.0
        y = 100 * r["worst_case_acc"]
        ax.scatter([x], [y], s=40)
        px = (x - xlim[0]) / (xlim[1] - xlim[0]) * w_pt
        py = (y - ylim[0]) / (ylim[1] - ylim[0]) * h_pt
        # the first label slot (right-above, right-below, left-above, left-below, above, below) clear of earlier labels
        slots = [(5, 4), (5, -24), (-66, 4), (-66, -24), (-30, 14), (-30, -36)]
        ox, oy = next((o for o in slots if not any(px + o[0] < bx + 64 and bx < px + o[0] + 64 and py + o[1] < by + 22
                                                   and by < py + o[1] + 22 for bx, by in boxes)), slots[0])
        boxes.append((px + ox, py + oy))
        ax.annotate(f"{name}\n(clean {100 * r['clean_acc']:.0f}%)", (x, y), textcoords="offset points", xytext=(ox, oy),
                    fontsize=8)
    best, hull = -1.0, []
    for x, y in pts:  # the non-dominated points: cheapest first, each more robust than every cheaper one
        if y > best:
            best = y
            hull.append((x, y))
    ax.step([h[0] for h in hull], [h[1] for h in hull], where="post", color="gray", alpha=0.5, linestyle="--", label="frontier")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("fine-tuning cost (× a clean epoch; interleaved step timing; no defense at 0)")
    ax.set_ylabel("worst-case robust accuracy (%)")
    ax.set_title(f"MNIST-5k, L-inf ε=0.3, {epochs} epochs, {n} test images; worst of {', '.join(attacks)}", fontsize=9)
    ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
