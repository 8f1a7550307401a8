"""Benchmark of the cGAN core (CPU-sized): mode coverage, conditional generation, pix2pix L1 vs cGAN.

    python benchmarks/gan_core.py                # full run (about 15 min on 2 idle CPU cores)
    python benchmarks/gan_core.py --quick        # a smoke run (a minute or two)
    python benchmarks/gan_core.py --only toy     # one section: toy, cgan, pix2pix (updates the JSON in place)

1. Ring of 8 Gaussians (radius 1, σ 0.01) and 5x5 grid (spacing 2, σ 0.05): modes captured and % of
   high-quality samples (within 3σ of the nearest mode) over 2,500 samples, for two GAN losses.
   Anchor: PacGAN reports 7.9 / 8 modes, 95.6 % high quality on the ring, 24.8 / 25 modes on the grid.
2. ConditionalGAN on mnist5k: accuracy of an independently trained classifier (small_cnn) on generated
   samples of each requested class, and the Fréchet distance (small_cnn penultimate features) to real
   test digits, next to the same distance between real train and real test digits.
3. Pix2Pix edges -> digit on mnist5k: L1-only vs cGAN-only vs L1+cGAN: test L1, Fréchet distance and
   sharpness (mean Sobel magnitude of outputs / of targets; blurry outputs score < 1). PNG side by side.

Writes benchmarks/results/gan_core.json and PNGs (samples, loss curves) in benchmarks/results/gan_core/.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advgan import data, metrics, pairs  # noqa: E402
from advgan.gans import GAN, ConditionalGAN, ConditionalGANConfig, GANConfig, Pix2Pix, Pix2PixConfig  # noqa: E402  # noqa: E402
from advgan.gans.figures import save_rows  # noqa: E402

PACGAN = {"ring8": {"modes": 7.9, "high_quality": 0.956}, "grid25": {"modes": 24.8}}


def toy(args, out: Path) -> list[dict]:
    rows = []
    for name, z_dim in (("ring8", 2), ("grid25", 2)):
        train, _ = data.load(name, n_train=25_600)
        for loss in args.losses:
            cfg = GANConfig(loss=loss, z_dim=z_dim, g_width=256, d_width=256, depth=3, batch_size=256, lr_g=1e-3, lr_d=1e-3,
                            lr_schedule="linear", ema_decay=0.99, seed=args.seed, progress=False, device="cpu")
            model = GAN(cfg, (2,))
            t = time.perf_counter()
            hist = model.fit(train, args.toy_epochs)
            secs = time.perf_counter() - t
            cov = metrics.mode_coverage(model.sample(2500, seed=args.seed + 1), train.modes, train.std)
            model.sample_grid(out / f"{name}_{loss}.png")
            hist.plot(out / f"{name}_{loss}_losses.png", title=f"{name} {loss}")
            row = {"dataset": name, "loss": loss, "steps": hist.steps[-1]["step"], "seconds": round(secs, 1),
                   "modes_captured": cov["modes_captured"], "num_modes": cov["num_modes"],
                   "high_quality": round(cov["high_quality"], 4), "reverse_kl": round(cov["reverse_kl"], 4),
                   "pacgan": PACGAN[name]}
            print(f"  {name:<7} {loss:<15} modes {row['modes_captured']:>2}/{row['num_modes']}  high-quality "
                  f"{100 * row['high_quality']:5.1f} %  ({row['steps']} steps, {secs:.0f} s)", flush=True)
            rows.append(row)
    return rows


def eval_classifier(args, train, test):
    from advgan.training import ClassifierConfig, train_classifier
    from attacks import Classifier

    torch.manual_seed(args.seed)
    clf = Classifier.create("small_cnn", 10, in_chans=1)
    cfg = ClassifierConfig(seed=args.seed + 100, device="cpu", progress=False, batch_size=128)
    clf, hist = train_classifier(clf, train, test, cfg, epochs=args.clf_epochs)
    acc = hist.epochs[-1].get("test_accuracy")
    print(f"  evaluation classifier small_cnn: test accuracy {acc:.4f}", flush=True)
    return clf.to("cpu"), float(acc)


@torch.no_grad()
def _predict(clf, x):
    return torch.cat([clf(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])


def cgan(args, out: Path, clf, train, test) -> dict:
    cfg = ConditionalGANConfig(z_dim=64, g_width=args.cgan_width, d_width=args.cgan_width, batch_size=64, ema_decay=0.99,
                               seed=args.seed, progress=False, device="cpu")
    model = ConditionalGAN(cfg, (1, 28, 28), 10)
    t = time.perf_counter()
    hist = model.fit(train, args.cgan_epochs)
    secs = time.perf_counter() - t
    labels = torch.arange(10).repeat_interleave(100)
    fake = model.sample(1000, labels, seed=args.seed + 1)
    pred = _predict(clf, fake)
    per_class = [round(float(pred[labels == c].eq(c).float().mean()), 3) for c in range(10)]
    model.sample_grid(out / "cgan_samples.png")
    hist.plot(out / "cgan_losses.png", title="ConditionalGAN mnist5k")
    res = {"epochs": args.cgan_epochs, "steps": hist.steps[-1]["step"], "seconds": round(secs, 1),
           "generated_class_accuracy": round(float(pred.eq(labels).float().mean()), 4), "per_class_accuracy": per_class,
           "frechet_distance": round(metrics.classifier_frechet_distance(clf, fake, test.images), 3),
           "frechet_distance_real_train_vs_test": round(metrics.classifier_frechet_distance(
               clf, train.subset(1000, seed=args.seed).images, test.images), 3)}
    print(f"  cGAN: generated-class accuracy {100 * res['generated_class_accuracy']:.1f} %  FD {res['frechet_distance']:.2f} "
          f"(real train vs test {res['frechet_distance_real_train_vs_test']:.2f})  ({res['steps']} steps, {secs:.0f} s)", flush=True)
    return res


def _sharpness(x: torch.Tensor) -> float:
    gx, gy = pairs._sobel(x)
    return float(torch.sqrt(gx ** 2 + gy ** 2).mean())


def pix2pix(args, out: Path, clf, train, test) -> dict:
    ptrain = pairs.build("edges", train.subset(args.p2p_train, seed=args.seed))
    ptest = pairs.build("edges", test)
    show = torch.arange(10) * (len(ptest) // 10)          # one of each class (mnist5k's test split is class-ordered)
    rows, images = {}, {"edges (input)": ptest.x[show], "digit (target)": ptest.y[show]}
    sharp_real = _sharpness(ptest.y)
    for mode in ("l1", "cgan", "l1+cgan"):
        cfg = Pix2PixConfig(mode=mode, depth=3, g_width=32, d_width=32, d_layers=2, batch_size=16, seed=args.seed,
                            progress=False, device="cpu")
        model = Pix2Pix(cfg, 1, 1)
        t = time.perf_counter()
        hist = model.fit(ptrain, args.p2p_epochs)
        secs = time.perf_counter() - t
        y_hat = model.translate(ptest.x)
        hist.plot(out / f"pix2pix_{mode}_losses.png", title=f"pix2pix edges->digit {mode}")
        rows[mode] = {"test_l1": round(float((y_hat - ptest.y).abs().mean()), 4),
                      "frechet_distance": round(metrics.classifier_frechet_distance(clf, y_hat, ptest.y), 3),
                      "sharpness_ratio": round(_sharpness(y_hat) / sharp_real, 3),
                      "class_accuracy_on_outputs": round(float(_predict(clf, y_hat).eq(test.labels).float().mean()), 4),
                      "steps": hist.steps[-1]["step"], "seconds": round(secs, 1)}
        images[mode] = y_hat[show]
        r = rows[mode]
        print(f"  pix2pix {mode:<8} L1 {r['test_l1']:.4f}  FD {r['frechet_distance']:.2f}  sharpness {r['sharpness_ratio']:.2f}  "
              f"acc {100 * r['class_accuracy_on_outputs']:.1f} %  ({r['steps']} steps, {secs:.0f} s)", flush=True)
    save_rows(images, out / "pix2pix_l1_vs_cgan.png", title="edges -> digit: L1 vs cGAN vs L1+cGAN (λ=100)")
    return {"task": "edges -> digit (Sobel magnitude)", "train_pairs": len(ptrain), "epochs": args.p2p_epochs, "modes": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, numbers not meaningful")
    p.add_argument("--only", choices=("toy", "cgan", "pix2pix"), action="append", help="run only these sections")
    p.add_argument("--losses", nargs="+", default=["non_saturating", "lsgan"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for this run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    args.toy_epochs, args.clf_epochs = (2, 1) if q else (20, 4)
    args.cgan_epochs, args.cgan_width = (1, 16) if q else (10, 32)
    args.p2p_epochs, args.p2p_train = (1, 256) if q else (4, 2000)
    sections = args.only or ["toy", "cgan", "pix2pix"]
    out = Path(args.out)
    figs = out / "gan_core"
    figs.mkdir(parents=True, exist_ok=True)
    secs: dict[str, float] = {}
    result: dict = {"benchmark": "gan_core", "quick": q, "seed": args.seed, "torch": torch.__version__,
                    "platform": platform.platform(), "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if "toy" in sections:
        print("Mode coverage (2,500 samples; high quality = within 3σ of the nearest mode)", flush=True)
        result["toy"] = toy(args, figs)
        secs["toy"], t0 = round(time.perf_counter() - t0, 1), time.perf_counter()
    if "cgan" in sections or "pix2pix" in sections:
        train, test = data.load("mnist5k")
        clf, acc = eval_classifier(args, train, test)
        result["eval_classifier"] = {"arch": "small_cnn", "epochs": args.clf_epochs, "test_accuracy": round(acc, 4)}
        secs["eval_classifier"], t0 = round(time.perf_counter() - t0, 1), time.perf_counter()
        for name, fn in (("cgan", cgan), ("pix2pix", pix2pix)):
            if name in sections:
                result[name] = fn(args, figs, clf, train, test)
                secs[name], t0 = round(time.perf_counter() - t0, 1), time.perf_counter()
    result["seconds"] = secs
    name = "gan_core_quick.json" if q else "gan_core.json"
    path = out / name
    if args.only and path.is_file():          # a partial run updates the sections it ran, keeps the others
        old = json.loads(path.read_text())
        old["seconds"] = {**old.get("seconds", {}), **result.pop("seconds")}
        result = {**old, **result}
    result["total_seconds"] = round(sum(result["seconds"].values()), 1)
    path.write_text(json.dumps(result, indent=2))
    print(f"total {result['total_seconds']:.0f} s -> {out / name}, figures in {figs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
