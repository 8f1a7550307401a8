"""AdvGAN benchmark on MNIST-5k (train split trains, the 1,000 test images evaluate). Not a test.

    python benchmarks/advgan.py                 # full run
    python benchmarks/advgan.py --quick         # fewer epochs / images (smoke numbers)

Measures, against a trained target (``small_cnn`` trained here, or ``--classifier DIR``):
untargeted L-inf ASR at eps 0.1/0.2/0.3 over correctly classified test inputs; targeted hit rate per
target class at 0.3; black-box static and dynamic distillation ASR with query counts; images/s of the
trained attacker vs our PGD-40 vs foolbox LinfPGD-40 on the same images; training time; and the same
untargeted ASR against a second, different (timm) architecture. Prints a table and writes
``benchmarks/results/advgan.json`` (updated after every section, so a partial run keeps its numbers; a run with ``--skip`` keeps the
sections it skips from the existing file).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# this script is named like the package: keep its own folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import torch  # noqa: E402

from advgan import data  # noqa: E402
from advgan.attacker import AdvGAN, AdvGANConfig, BlackBox, BlackBoxAdvGAN  # noqa: E402  # noqa: E402
from advgan.training import train_classifier  # noqa: E402
from attacks import Classifier  # noqa: E402

OUT = Path(__file__).parent / "results" / "advgan.json"
RESULTS: dict = {}


def save() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(RESULTS, indent=2))


def log(msg: str) -> None:
    print(msg, flush=True)


def asr(clf, x, y, x_adv, target=None) -> float:
    with torch.no_grad():
        ok = clf(x).argmax(1) == y
        p = clf(x_adv).argmax(1)
    hit = (p != y) if target is None else (p == target)
    return float((hit & ok).sum() / ok.sum().clamp(min=1))


def make_target(arch: str, train, test, epochs: int, seed: int) -> Classifier:
    torch.manual_seed(seed)
    clf = Classifier.create(arch, 10, in_chans=1)
    t = time.perf_counter()
    clf, hist = train_classifier(clf, train, test, epochs=epochs, seed=seed, device="cpu", progress=False)
    log(f"target {arch}: test accuracy {hist.epochs[-1]['test_accuracy']:.4f} ({time.perf_counter() - t:.0f}s)")
    return clf


def fit(clf, train, cfg: AdvGANConfig, epochs: int) -> tuple[AdvGAN, float]:
    atk = AdvGAN(clf, cfg)
    t = time.perf_counter()
    atk.fit(train, epochs)
    return atk, time.perf_counter() - t


def throughput(fn, n_rep: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(n_rep):
        fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs and images (smoke numbers, not the targets)")
    ap.add_argument("--classifier", default=None, help="a saved target classifier instead of training small_cnn")
    ap.add_argument("--epochs", type=int, default=None, help="AdvGAN epochs (default 5; quick 2)")
    ap.add_argument("--target-epochs", type=int, default=None, help="epochs to train each target (default 5; quick 3)")
    ap.add_argument("--second-arch", default="resnet10t", help="second (timm) target architecture ('' to skip)")
    ap.add_argument("--pgd-images", type=int, default=None, help="images for the PGD-40 timing (default 200; quick 100)")
    ap.add_argument("--skip", action="append", default=[], help="skip a section: eps, targeted, blackbox, speed, second")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    epochs = a.epochs or (2 if a.quick else 5)
    t_epochs = a.target_epochs or (3 if a.quick else 5)
    n_pgd = a.pgd_images or (100 if a.quick else 200)
    train, test = data.load("mnist5k")
    x, y = test.images, test.labels
    if a.skip and OUT.is_file():  # a partial re-run updates its sections and keeps the others
        RESULTS.update(json.loads(OUT.read_text()))
        RESULTS["sections_rerun"] = sorted({"eps", "targeted", "blackbox", "speed", "second"} - set(a.skip))
    RESULTS.update({"dataset": "mnist5k", "train_images": len(train), "test_images": len(test), "advgan_epochs": epochs,
                    "quick": a.quick, "threads": torch.get_num_threads(), "defaults": AdvGANConfig().to_dict()})
    base = dict(progress=False, device="cpu", seed=a.seed)
    clf = Classifier.load(a.classifier) if a.classifier else make_target("small_cnn", train, test, t_epochs, a.seed)
    with torch.no_grad():
        RESULTS["target"] = {"arch": (clf.arch or {}).get("name"), "clean_accuracy": float((clf(x).argmax(1) == y).float().mean())}
    save()

    atk03 = None
    if "eps" not in a.skip:
        RESULTS["untargeted"] = {}
        for eps in (0.3, 0.2, 0.1):
            atk, secs = fit(clf, train, AdvGANConfig(eps=eps, **base), epochs)
            r = asr(clf, x, y, atk.as_attack()(clf, x, y))
            RESULTS["untargeted"][str(eps)] = {"asr": r, "train_seconds": secs}
            log(f"untargeted linf eps={eps}: ASR {r:.4f}  (train {secs:.0f}s)")
            save()
            if eps == 0.3:
                atk03 = atk

    if "speed" not in a.skip:
        if atk03 is None:
            atk03, _ = fit(clf, train, AdvGANConfig(eps=0.3, **base), epochs)
        gen = atk03.as_attack()
        gen(clf, x[:64], y[:64])  # warm-up
        t_gen = throughput(lambda: gen(clf, x, y), 3) / 3
        speed = {"advgan_images_per_s": len(x) / t_gen, "images": len(x)}
        xs, ys = x[:n_pgd], y[:n_pgd]
        try:
            from attacks import PGD

            pgd = PGD(eps=0.3, steps=40, step_size=0.01)
            t_pgd = throughput(lambda: pgd(clf, xs, ys))
            speed.update({"pgd40_images_per_s": n_pgd / t_pgd, "pgd40_asr": asr(clf, xs, ys, pgd(clf, xs, ys))})
        except ImportError as e:
            log(f"note: attacks.PGD not available ({e}); PGD-40 timing skipped")
        try:
            from attacks import FoolboxAttack

            fb = FoolboxAttack("LinfPGD", eps=0.3, steps=40)
            t_fb = throughput(lambda: fb(clf, xs, ys))
            speed.update({"foolbox_pgd40_images_per_s": n_pgd / t_fb, "foolbox_pgd40_asr": asr(clf, xs, ys, fb(clf, xs, ys))})
        except ImportError as e:
            log(f"note: foolbox adapter not available ({e}); foolbox timing skipped")
        if "pgd40_images_per_s" in speed:
            speed["speedup_vs_pgd40"] = speed["advgan_images_per_s"] / speed["pgd40_images_per_s"]
        RESULTS["speed"] = speed
        log("throughput (images/s): " + ", ".join(f"{k}={v:.4g}" for k, v in speed.items()))
        save()

    if "targeted" not in a.skip:
        atk, secs = fit(clf, train, AdvGANConfig(eps=0.3, targeted=True, **base), epochs)
        attack = atk.as_attack()
        per = {}
        for t in range(10):
            m = y != t
            tt = torch.full_like(y[m], t)
            per[t] = asr(clf, x[m], y[m], attack(clf, x[m], y[m], target=tt), target=tt)
        mean = sum(per.values()) / 10
        RESULTS["targeted"] = {"eps": 0.3, "per_target": per, "mean": mean, "train_seconds": secs}
        log(f"targeted eps=0.3: mean hit rate {mean:.4f}; per target " + " ".join(f"{k}:{v:.2f}" for k, v in per.items()))
        save()

    if "blackbox" not in a.skip:
        RESULTS["blackbox"] = {}
        for mode in ("static", "dynamic"):
            bb = BlackBox(clf)
            bba = BlackBoxAdvGAN(bb, AdvGANConfig(eps=0.3, **base), mode=mode, surrogate="small_cnn",
                                 surrogate_epochs=t_epochs)
            t = time.perf_counter()
            bba.fit(train, epochs)
            secs = time.perf_counter() - t
            r = asr(clf, x, y, bba.as_attack()(clf, x, y))
            RESULTS["blackbox"][mode] = {"asr": r, "queries": bba.queries, "train_seconds": secs}
            log(f"black-box {mode}: ASR {r:.4f}, queries {bba.queries}  (train {secs:.0f}s)")
            save()

    if a.second_arch and "second" not in a.skip:
        clf2 = make_target(a.second_arch, train, test, t_epochs, a.seed)
        atk, secs = fit(clf2, train, AdvGANConfig(eps=0.3, **base), epochs)
        r = asr(clf2, x, y, atk.as_attack()(clf2, x, y))
        with torch.no_grad():
            acc2 = float((clf2(x).argmax(1) == y).float().mean())
        RESULTS["second_arch"] = {"arch": a.second_arch, "clean_accuracy": acc2, "asr_eps0.3": r, "train_seconds": secs}
        log(f"second architecture {a.second_arch}: clean {acc2:.4f}, untargeted eps=0.3 ASR {r:.4f} (train {secs:.0f}s)")
        save()
        # cross-architecture black box: the surrogate (small_cnn) differs from the queried model
        bba = BlackBoxAdvGAN(BlackBox(clf2), AdvGANConfig(eps=0.3, **base), mode="static", surrogate="small_cnn")
        t = time.perf_counter()
        bba.fit(train, epochs)
        r = asr(clf2, x, y, bba.as_attack()(clf2, x, y))
        RESULTS["second_arch"]["blackbox_static_small_cnn_surrogate"] = {"asr": r, "queries": bba.queries,
                                                                          "train_seconds": time.perf_counter() - t}
        log(f"black-box static vs {a.second_arch} (small_cnn surrogate): ASR {r:.4f}")
        save()

    log("\n| measure | value |\n|---|---|")
    for k, v in RESULTS.get("untargeted", {}).items():
        log(f"| untargeted ASR eps={k} | {100 * v['asr']:.1f} % |")
    if "targeted" in RESULTS:
        log(f"| targeted mean hit rate eps=0.3 | {100 * RESULTS['targeted']['mean']:.1f} % |")
    for k, v in RESULTS.get("blackbox", {}).items():
        log(f"| black-box {k} ASR (queries) | {100 * v['asr']:.1f} % ({v['queries']['total']}) |")
    sp = RESULTS.get("speed", {})
    if "speedup_vs_pgd40" in sp:
        log(f"| AdvGAN vs PGD-40 speed | {sp['speedup_vs_pgd40']:.0f}x |")
    if "second_arch" in RESULTS:
        log(f"| {RESULTS['second_arch']['arch']} ASR eps=0.3 | {100 * RESULTS['second_arch']['asr_eps0.3']:.1f} % |")
        bb2 = RESULTS["second_arch"].get("blackbox_static_small_cnn_surrogate")
        if bb2:
            log(f"| {RESULTS['second_arch']['arch']} black-box static ASR (small_cnn surrogate) | {100 * bb2['asr']:.1f} % |")
    log(f"results -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
