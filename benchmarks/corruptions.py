"""Benchmark: our 19 batched corruptions vs the reference ImageNet-C code (``imagecorruptions-imaug``).

For every corruption x severity, on the same images:
  * strength ratio ours / reference of mean |x_c - x| (MNIST-5k digits padded to 32 px, and RGB crops);
    target 0.67 - 1.5;
  * pixel agreement for the deterministic corruptions (and motion blur at fixed angles): max and mean
    |ours - reference| in 8-bit levels; the reference truncates to uint8, so 1 level is the floor;
  * accuracy of a trained ``small_cnn`` under ours vs under the reference on 1,000 MNIST-5k test
    images (corrupted at 32 x 32, centre 28 x 28 classified); target |difference| <= 5 points;
  * speed: corrupting one batch of 256 images, ours (batched torch) vs the reference's per-image loop,
    same CPU, timed alternately; target >= 10x over all corruptions.

    python benchmarks/corruptions.py                 # full run (single thread; ~30 min on a busy 2-core box)
    python benchmarks/corruptions.py --quick         # smoke run (subsets) -> corruptions_quick.json
    python benchmarks/corruptions.py --speed-224     # also time 224 x 224 RGB batches
    python benchmarks/corruptions.py --speed-only --speed-224   # re-time only the speed rows, update the JSON

The classifier is cached under ``--work`` (default runs/bench_corruptions). Writes
``benchmarks/results/corruptions.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from corruption_reference import (  # noqa: E402
    crop_center,
    mnist_images,
    pad_to,
    reference_corrupt,
    reference_failed,
    reference_motion,
    rgb_crops,
    warm_reference,
)

from attacks import CORRUPTIONS, Classifier, corrupt  # noqa: E402
from attacks.checkpoint import save_json  # noqa: E402
from attacks.corruptions import RANDOM_CORRUPTIONS  # noqa: E402
from attacks.corruptions.blur import motion_blur  # noqa: E402

RATIO = (0.67, 1.5)
ACC_POINTS = 5.0
SPEEDUP = 10.0
MOTION_ANGLES = (-40.0, -12.5, 0.0, 21.7, 45.0)


def get_classifier(work: Path, epochs: int, seed: int) -> tuple[Classifier, dict]:
    from advgan import data
    from advgan.training import train_classifier

    d = work / f"small_cnn_e{epochs}_s{seed}"
    if (d / "config.json").exists() and (d / "model.safetensors").exists():
        return Classifier.load(d), {"source": str(d), "cached": True}
    train, test = data.load("mnist5k")
    t = time.perf_counter()
    clf = Classifier.create("small_cnn", 10, in_chans=1, seed=seed)
    clf, hist = train_classifier(clf, train, test, epochs=epochs, seed=seed, out_dir=d, progress=False)
    return clf, {"source": str(d), "cached": False, "epochs": epochs, "train_seconds": round(time.perf_counter() - t, 1),
                 "history": hist.epochs[-1]}


def ratio(a: float, b: float) -> float:
    if a < 1e-6 and b < 1e-6:
        return 1.0  # both leave the images unchanged (saturate on gray images, severities 1-3)
    return a / max(b, 1e-12)


@torch.no_grad()
def accuracy(clf: Classifier, x32: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> float:
    pred = torch.cat([clf(crop_center(x32[i: i + 500], 28, 28)).argmax(1) for i in range(0, len(x32), 500)])
    return float((pred == y)[keep].float().mean())


def cross_check(clf, xm, ym, xr, severities, seed) -> list[dict]:
    """Strength, pixel agreement and accuracy rows, ours vs reference, per corruption x severity."""
    from tqdm.auto import tqdm

    rows = []
    for name in tqdm(CORRUPTIONS, desc="cross-check"):
        for s in severities:
            row: dict = {"corruption": name, "severity": s, "random": name in RANDOM_CORRUPTIONS}
            for tag, x in (("mnist32", xm), ("rgb64", xr)):
                ours = corrupt(x, name, s, seed=seed)
                ref = reference_corrupt(x, name, s, seed=seed)
                bad = reference_failed(x, ref) if name == "spatter" else torch.zeros(len(x), dtype=torch.bool)
                keep = ~bad
                so = float((ours - x).abs()[keep].mean())
                sr = float((ref - x).abs()[keep].mean())
                row[tag] = {"strength_ours": so, "strength_ref": sr, "ratio": ratio(so, sr), "reference_black": int(bad.sum())}
                if name not in RANDOM_CORRUPTIONS:
                    lv = (ours - ref).abs()[keep] * 255
                    row[tag].update(max_levels=float(lv.max()), mean_levels=float(lv.mean()),
                                    within_1_level=float((lv <= 1.001).float().mean()),
                                    within_2_levels=float((lv <= 2.001).float().mean()))
                if tag == "mnist32" and clf is not None:
                    row["acc_ours"] = accuracy(clf, ours, ym, keep)
                    row["acc_ref"] = accuracy(clf, ref, ym, keep)
                    row["acc_diff_points"] = 100 * (row["acc_ours"] - row["acc_ref"])
            rows.append(row)
    return rows


def motion_fixed_angle(xm, xr, severities) -> list[dict]:
    out = []
    for s in severities:
        for ang in MOTION_ANGLES:
            for tag, x in (("mnist32", xm), ("rgb64", xr)):
                ours = motion_blur(x, s, None, angles=torch.full((x.shape[0],), ang)).clamp(0, 1)
                lv = (ours - reference_motion(x, s, ang)).abs() * 255
                out.append({"severity": s, "angle": ang, "images": tag, "max_levels": float(lv.max()),
                            "mean_levels": float(lv.mean())})
    return out


def speed(x: torch.Tensor, tag: str, severities, seed: int, repeats: int) -> list[dict]:
    """Ours (best of ``repeats``) vs one reference loop, alternating, per corruption x severity."""
    from tqdm.auto import tqdm

    rows = []
    for name in tqdm(CORRUPTIONS, desc=f"speed {tag}"):
        corrupt(x[:2], name, 1, seed=seed)
        for s in severities:
            t_ours = []
            for _ in range(repeats):
                t = time.perf_counter()
                corrupt(x, name, s, seed=seed)
                t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            reference_corrupt(x, name, s, seed=seed)
            t_ref = time.perf_counter() - t
            rows.append({"images": tag, "batch": len(x), "corruption": name, "severity": s, "ours_seconds": min(t_ours),
                         "ref_seconds": t_ref, "speedup": t_ref / min(t_ours)})
    return rows


def speed_table(batch: int, sev, args) -> list[dict]:
    """The speed rows: digits and 64 px photos at every severity, 224 px photos at severity 3 (``--speed-224``)."""
    xs_m, _ = mnist_images(batch, split="train")
    rows = speed(pad_to(xs_m), "mnist 32x32 gray", sev, args.seed, 2)
    rows += speed(rgb_crops(batch, 64), "rgb 64x64", sev, args.seed, 2)
    if args.speed_224:
        rows += speed(rgb_crops(batch, 224), "rgb 224x224", (3,), args.seed, 1)
    return rows


def speed_only(out: Path, batch: int, sev, args) -> int:
    """Re-time the speed rows and replace them in the results file ``out`` (its cross-check rows stay)."""
    if not out.is_file():
        raise SystemExit(f"--speed-only updates an existing {out}; run the full benchmark first")
    result = json.loads(out.read_text())
    t0 = time.perf_counter()
    warm_reference()
    rows = speed_table(batch, sev, args)
    sp = summarise_speed(rows)
    for tag, sm in sp.items():
        print(f"speed {tag}: ours {sm['ours_seconds']:.2f} s, reference {sm['ref_seconds']:.2f} s: {sm['speedup']:.1f}x "
              f"({'MET' if sm['target_met'] else 'NOT met'} >= {SPEEDUP:g}x)")
        for name, (o, r) in sm["per_corruption_seconds"].items():
            print(f"   {name:18s} {o:7.3f} {r:7.3f} {r / o:6.1f}x")
    result["summary"]["speed"] = sp
    result.update(speed_rows=rows, speed_batch=batch, speed_seconds=time.perf_counter() - t0,
                  speed_torch_threads=torch.get_num_threads())
    save_json(out, result)
    print(f"updated the speed rows of {out}")
    return 0


def summarise_speed(rows: list[dict]) -> dict:
    out: dict = {}
    for tag in dict.fromkeys(r["images"] for r in rows):
        sub = [r for r in rows if r["images"] == tag]
        ours, ref = sum(r["ours_seconds"] for r in sub), sum(r["ref_seconds"] for r in sub)
        per = {}
        for name in CORRUPTIONS:
            rr = [r for r in sub if r["corruption"] == name]
            per[name] = (sum(r["ours_seconds"] for r in rr), sum(r["ref_seconds"] for r in rr))
        out[tag] = {"ours_seconds": ours, "ref_seconds": ref, "speedup": ref / ours, "per_corruption_seconds": per,
                    "per_corruption_speedup": {k: r / o for k, (o, r) in per.items()},
                    "target_met": ref / ours >= SPEEDUP}
    return out


def print_tables(rows, motion_rows, speed_summary, clean_acc, batch) -> None:
    print(f"\nCross-check (strength = mean |x_c - x|; ratio ours/reference; pixel = max / mean |ours - ref| in 8-bit levels; "
          f"accuracy of small_cnn, clean {100 * clean_acc:.1f} %)\n")
    print("| corruption | sev | ratio MNIST | ratio RGB | pixel MNIST | pixel RGB | acc ours | acc ref | diff (pts) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        px = ["-", "-"]
        if not r["random"]:
            px = [f"{r[t]['max_levels']:.0f} / {r[t]['mean_levels']:.2f}" for t in ("mnist32", "rgb64")]
        acc = [f"{100 * r['acc_ours']:.1f}", f"{100 * r['acc_ref']:.1f}", f"{r['acc_diff_points']:+.1f}"] if "acc_ours" in r else ["-"] * 3
        print(f"| {r['corruption']} | {r['severity']} | {r['mnist32']['ratio']:.2f} | {r['rgb64']['ratio']:.2f} | "
              f"{px[0]} | {px[1]} | {' | '.join(acc)} |")
    worst = max(m["max_levels"] for m in motion_rows)
    print(f"\nmotion blur at fixed angles {MOTION_ANGLES}: max |ours - ref| = {worst:.0f} level(s)")
    print(f"\n| images (batch of {batch}) | corruption | ours s | reference s | speed-up |\n|---|---|---|---|---|")
    for tag, sm in speed_summary.items():
        for name in CORRUPTIONS:
            o, r = sm["per_corruption_seconds"][name]
            print(f"| {tag} | {name} | {o:.3f} | {r:.3f} | {r / o:.1f}x |")
        print(f"| {tag} | **all** | {sm['ours_seconds']:.2f} | {sm['ref_seconds']:.2f} | **{sm['speedup']:.1f}x** |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 200 MNIST / 12 RGB images, severities 1,3,5, batch 64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=1000, help="MNIST-5k test images for strength and accuracy")
    p.add_argument("--n-rgb", type=int, default=48, help="64 x 64 RGB crops for strength and pixel agreement")
    p.add_argument("--batch", type=int, default=256, help="batch size of the speed rows")
    p.add_argument("--speed-224", action="store_true", help="also time 224 x 224 RGB batches (slow reference)")
    p.add_argument("--speed-only", action="store_true",
                   help="re-time the speed rows only and update them in the existing results JSON")
    p.add_argument("--epochs", type=int, default=3, help="small_cnn training epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_corruptions"))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # the reference's skimage / numpy warnings
    q = args.quick
    sev = (1, 3, 5) if q else (1, 2, 3, 4, 5)
    n, n_rgb, batch = (200, 12, 64) if q else (args.n, args.n_rgb, args.batch)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / ("corruptions_quick.json" if q else "corruptions.json")

    t0 = time.perf_counter()
    if args.speed_only:
        return speed_only(out, batch, sev, args)
    clf, clf_info = get_classifier(Path(args.work), args.epochs, args.seed)
    xm28, ym = mnist_images(n)
    xm = pad_to(xm28)
    xr = rgb_crops(n_rgb, 64)
    clean_acc = accuracy(clf, xm, ym, torch.ones(len(ym), dtype=torch.bool))
    warm_reference()
    rows = cross_check(clf, xm, ym, xr, sev, args.seed)
    motion_rows = motion_fixed_angle(xm[:16], xr[:8], sev)

    speed_rows = speed_table(batch, sev, args)
    sp = summarise_speed(speed_rows)
    print_tables(rows, motion_rows, sp, clean_acc, batch)

    ratios = [r[t]["ratio"] for r in rows for t in ("mnist32", "rgb64")]
    diffs = [abs(r["acc_diff_points"]) for r in rows]
    summary = {
        "strength_ratio_min": min(ratios), "strength_ratio_max": max(ratios),
        "strength_target_met": all(RATIO[0] <= v <= RATIO[1] for v in ratios),
        "accuracy_diff_max_points": max(diffs), "accuracy_target_met": max(diffs) <= ACC_POINTS,
        "pixel_max_levels_excluding_jpeg": max(r[t]["max_levels"] for r in rows if not r["random"]
                                               and r["corruption"] != "jpeg_compression" for t in ("mnist32", "rgb64")),
        "motion_fixed_angle_max_levels": max(m["max_levels"] for m in motion_rows),
        "speed": sp,
    }
    print(f"\nstrength ratios {summary['strength_ratio_min']:.2f} - {summary['strength_ratio_max']:.2f} "
          f"(target {RATIO[0]} - {RATIO[1]}: {'MET' if summary['strength_target_met'] else 'NOT met'}); "
          f"accuracy |diff| <= {summary['accuracy_diff_max_points']:.1f} points "
          f"({'MET' if summary['accuracy_target_met'] else 'NOT met'})")
    for tag, s in sp.items():
        print(f"speed {tag}: {s['speedup']:.1f}x over all corruptions ({'MET' if s['target_met'] else 'NOT met'} >= {SPEEDUP:g}x)")
    result = {
        "benchmark": "corruptions", "quick": q, "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "torch": torch.__version__, "classifier": clf_info, "clean_accuracy": clean_acc, "n_mnist": n, "n_rgb": n_rgb,
        "speed_batch": batch, "severities": list(sev), "seed": args.seed, "summary": summary, "rows": rows,
        "motion_fixed_angle": motion_rows, "speed_rows": speed_rows, "wall_seconds": time.perf_counter() - t0,
    }
    save_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
