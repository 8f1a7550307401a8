"""The class-spread screen of AdvGAN round 2: 10-epoch untargeted AdvGANs with ``spread_weight`` in W.

Same target (small_cnn, 5 epochs), training set, best-epoch validation (500 training images), seed and 1,000 test
images as the ``eps`` section of ``benchmarks/advgan.py``, so ``spread_weight=0`` reproduces that section.

    python benchmarks/advgan_spread.py 0,0.5,1 0.2,0.3            # weights, budgets (L-inf); 10 epochs
    python benchmarks/advgan_spread.py 1:1.5,1:2 0.2,0.3          # weight:floor, the hinge relu(floor - H)
    python benchmarks/advgan_spread.py 0,1:1.5 0.2 10 out.json 1,2 # AdvGAN seeds 1 and 2 (the target stays seed 0)
    python benchmarks/advgan_spread.py 1 0.3 2 /tmp/smoke.json    # a smoke run: 2 epochs

Prints one JSON row per run (ASR, shared energy, adversarial-class entropy and counts, training seconds) and writes
the list to the path given (default ``/tmp/advgan_spread.json``; the committed results are
``benchmarks/results/advgan_spread.json``).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advgan import data  # noqa: E402
from advgan.attacker import AdvGANConfig  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("bm", ROOT / "benchmarks" / "advgan.py")
    bm = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bm)  # type: ignore[union-attr]
    weights = [(float(w.split(":")[0]), float(w.split(":")[1]) if ":" in w else None) for w in sys.argv[1].split(",")]
    budgets = [float(e) for e in sys.argv[2].split(",")]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    out = Path(sys.argv[4]) if len(sys.argv) > 4 else Path("/tmp/advgan_spread.json")
    seeds = [int(v) for v in sys.argv[5].split(",")] if len(sys.argv) > 5 else [0]  # AdvGAN seeds (the target stays seed 0)
    train, test = data.load("mnist5k")
    val = train.subset(500, seed=0)
    x, y = test.images, test.labels
    clf = bm.make_target("small_cnn", train, test, 5, 0)
    rows = []
    for eps in budgets:
        for (w, floor), seed in ((wf, s) for s in seeds for wf in weights):
            cfg = AdvGANConfig(eps=eps, spread_weight=w, spread_floor=floor, progress=False, device="cpu", seed=seed)
            atk, secs, _ = bm.fit(clf, train, cfg, epochs, val)
            d = bm.diagnose(clf, x, y, atk.as_attack()(clf, x, y))
            rows.append({"eps": eps, "spread_weight": w, "spread_floor": floor, "seed": seed, "epochs": epochs, **d,
                         "train_seconds": secs})
            print(json.dumps(rows[-1]), flush=True)
            out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
