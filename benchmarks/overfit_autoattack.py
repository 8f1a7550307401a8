"""AutoAttack (standard: APGD-CE + APGD-T) on models returned by ``benchmarks/overfit.py``, on all 1,000 MNIST-5k
test images and on the 750 of them that did not pick the best epoch (overfit.py validates on the last 250 of its
seed-0 permutation of the test split).

    python benchmarks/overfit_autoattack.py runs/bench_overfit/at30m75/advgan-at-fast-m75/best --tag at30m75

Every adversarial batch is checked (inside the L-inf ball, in [0, 1]) and re-classified here; the counts are
written after every batch to ``benchmarks/results/overfit_aa1000_TAG.json``, so a stopped run keeps what it measured.
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

from advgan import data  # noqa: E402
from attacks import Classifier, make_attack  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a saved classifier directory (an overfit.py run's best/)")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--batch", type=int, default=250)
    args = ap.parse_args()
    if not args.tag.replace("-", "").replace("_", "").isalnum():
        ap.error(f"--tag must be letters, digits, - or _, got {args.tag!r}")
    torch.set_num_threads(1)
    model = Classifier.load(args.model).eval()
    _, test = data.load("mnist5k")
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(0)).tolist()
    val = set(perm[-250:])
    x_all, y_all = test.images, test.labels
    in_val = torch.tensor([i in val for i in range(len(test))])
    aa = make_attack("autoattack", eps=args.eps, norm="linf", seed=0)
    out = ROOT / "benchmarks" / "results" / f"overfit_aa1000_{args.tag}.json"
    clean_ok, robust_ok, seen, t0 = [], [], 0, time.perf_counter()
    for s in range(0, len(test), args.batch):
        x, y = x_all[s:s + args.batch], y_all[s:s + args.batch]
        x_adv = aa(model, x, y)
        if not (x_adv.min() >= 0 and x_adv.max() <= 1 and (x_adv - x).abs().max() <= args.eps + 1e-6):
            raise RuntimeError("AutoAttack returned examples outside the threat model")
        with torch.no_grad():
            c = model(x).argmax(1) == y
            r = c & (model(x_adv).argmax(1) == y)
        clean_ok.append(c)
        robust_ok.append(r)
        seen += x.shape[0]
        cl, ro, v = torch.cat(clean_ok), torch.cat(robust_ok), in_val[:seen]
        res = {"benchmark": "overfit_autoattack", "model": args.model, "eps": args.eps, "images": seen,
               "clean_all": cl.float().mean().item(), "autoattack_all": ro.float().mean().item(),
               "images_not_val": int((~v).sum()), "clean_not_val": cl[~v].float().mean().item(),
               "autoattack_not_val": ro[~v].float().mean().item(), "seconds": time.perf_counter() - t0,
               "threads": 1, "machine": platform.platform()}
        out.write_text(json.dumps(res, indent=1))
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
