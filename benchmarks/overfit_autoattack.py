"""AutoAttack (standard: APGD-CE + APGD-T) on models returned by ``benchmarks/overfit.py``, on all 1,000 MNIST-5k
test images and on the 750 of them that did not pick the best epoch (overfit.py validates on the last 250 of its
seed-0 permutation of the test split).

    python benchmarks/overfit_autoattack.py runs/bench_overfit/at30m75/advgan-at-fast-m75/best --tag at30m75

A long run can be split over cores: ``--start 0 --stop 500`` and ``--start 500 --stop 1000`` in two processes, then
``--merge TAG_0-500 TAG_500-1000 --tag TAG`` adds their counts into ``overfit_aa1000_TAG.json``.

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
    ap.add_argument("--start", type=int, default=0, help="first test image (a part of a split run)")
    ap.add_argument("--stop", type=int, default=None, help="one past the last test image (default: all)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="PART_TAG",
                    help="add up the counts of these part runs' results into overfit_aa1000_TAG.json (no attack)")
    args = ap.parse_args()
    for t in [args.tag, *(args.merge or [])]:
        if not t.replace("-", "").replace("_", "").isalnum():
            ap.error(f"tags must be letters, digits, - or _, got {t!r}")
    if args.merge:
        return merge(args.merge, args.tag)
    torch.set_num_threads(1)
    model = Classifier.load(args.model).eval()
    _, test = data.load("mnist5k")
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(0)).tolist()
    val = set(perm[-250:])
    x_all, y_all = test.images, test.labels
    in_val = torch.tensor([i in val for i in range(len(test))])
    aa = make_attack("autoattack", eps=args.eps, norm="linf", seed=0)
    stop = len(test) if args.stop is None else args.stop
    if not 0 <= args.start < stop <= len(test):
        ap.error(f"need 0 <= --start < --stop <= {len(test)}, got {args.start} and {stop}")
    part = "" if (args.start, stop) == (0, len(test)) else f"_{args.start}-{stop}"
    out = ROOT / "benchmarks" / "results" / f"overfit_aa1000_{args.tag}{part}.json"
    clean_ok, robust_ok, seen, t0 = [], [], 0, time.perf_counter()
    in_val = in_val[args.start:stop]
    for s in range(args.start, stop, args.batch):
        x, y = x_all[s:min(s + args.batch, stop)], y_all[s:min(s + args.batch, stop)]
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
               "threads": 1, "machine": platform.platform(), "start": args.start, "stop": args.start + seen,
               "counts": {"clean": int(cl.sum()), "robust": int(ro.sum()), "not_val": int((~v).sum()),
                          "clean_not_val": int(cl[~v].sum()), "robust_not_val": int(ro[~v].sum())}}
        out.write_text(json.dumps(res, indent=1))
        print(json.dumps(res), flush=True)
    return 0


def _counts(r: dict) -> dict[str, int]:
    """A result's counts (older results, written before the counts were stored: from their rates)."""
    if "counts" in r:
        return r["counts"]
    n, nv = r["images"], r["images_not_val"]
    return {"clean": round(r["clean_all"] * n), "robust": round(r["autoattack_all"] * n), "not_val": nv,
            "clean_not_val": round(r["clean_not_val"] * nv), "robust_not_val": round(r["autoattack_not_val"] * nv)}


def merge(tags: list[str], tag: str) -> int:
    res_dir = ROOT / "benchmarks" / "results"
    parts = [json.loads((res_dir / f"overfit_aa1000_{t}.json").read_text()) for t in tags]
    spans = sorted((p.get("start", 0), p.get("start", 0) + p["images"]) for p in parts)
    if spans[0][0] != 0 or any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
        raise SystemExit(f"the parts must cover consecutive images from 0 without overlap, got {spans}")
    if len({p["model"] for p in parts}) != 1 or len({p["eps"] for p in parts}) != 1:
        raise SystemExit("the parts attacked different models or budgets")
    c = {k: sum(_counts(p)[k] for p in parts) for k in _counts(parts[0])}
    n = spans[-1][1]
    res = {"benchmark": "overfit_autoattack", "model": parts[0]["model"], "eps": parts[0]["eps"], "images": n,
           "clean_all": c["clean"] / n, "autoattack_all": c["robust"] / n, "images_not_val": c["not_val"],
           "clean_not_val": c["clean_not_val"] / c["not_val"], "autoattack_not_val": c["robust_not_val"] / c["not_val"],
           "seconds": sum(p["seconds"] for p in parts), "threads": 1, "machine": parts[0]["machine"], "start": 0, "stop": n,
           "counts": c, "merged_from": {t: [p.get("start", 0), p.get("start", 0) + p["images"]] for t, p in zip(tags, parts)}}
    (res_dir / f"overfit_aa1000_{tag}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
