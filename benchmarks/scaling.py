"""Scaling benchmark: 1 vs N processes (torch.distributed, DDP / sharded evaluate) and GPU fast paths.

CPU (gloo): AdvGAN training throughput (global images/s and steps/s per rank) and evaluate() images/s
with 1 and 2 processes (``torch.multiprocessing.spawn``; threads per process = cores // processes,
so both use the same cores; plus 1 process x 1 thread as a baseline). GPU (``--device cuda``): evaluate() images/s in fp32 vs AMP and with
channels_last off/on (timm resnet18, one process), and 1 vs all GPUs (nccl) when there are several.

    python benchmarks/scaling.py                     # CPU part
    python benchmarks/scaling.py --device cuda       # + GPU part

Prints a table and writes ``benchmarks/results/scaling.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(args):
    from advgan import data
    from attacks import Classifier

    train, test = data.load("mnist5k")
    torch.manual_seed(0)
    clf = Classifier.create(args.model, 10, in_chans=1)
    clf.freeze()
    return data, train, test, clf


def _cpu_worker(rank: int, world: int, port: int, threads: int, args, out: str) -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        from advgan.attacker import AdvGAN, AdvGANConfig
        from attacks import PGD, evaluate

        data, train, test, clf = _setup(args)
        sub = torch.utils.data.Subset(train, range(args.train_images))
        atk = AdvGAN(clf, AdvGANConfig(eps=0.3, batch_size=args.batch_size, progress=False, device="cpu"))
        t = time.perf_counter()
        hist = atk.fit(sub, epochs=1)
        fit_s = time.perf_counter() - t
        loader = data.loader(torch.utils.data.Subset(test, range(args.eval_images)), args.batch_size)
        rep = evaluate(clf, loader, {"pgd": PGD(eps=0.3, steps=args.pgd_steps)}, progress=False, sanity_checks=False,
                       grid_images=0, device="cpu")
        r = rep["pgd"]
        times = torch.tensor([fit_s])
        if world > 1:
            dist.all_reduce(times, op=dist.ReduceOp.MAX)
        if rank == 0:
            steps = len(hist.steps)
            res = {"processes": world, "threads_per_process": threads,
                   "advgan_train_images_per_s": args.train_images / float(times[0]),
                   "advgan_steps_per_s_per_rank": steps / float(times[0]), "advgan_steps_per_rank": steps,
                   "advgan_fit_seconds": float(times[0]),
                   "eval_images": rep.n, "eval_pgd_images_per_s": r.images_per_second,
                   "eval_wall_seconds": rep.meta["wall_seconds"]}
            Path(out).write_text(json.dumps(res))
    finally:
        if world > 1:
            dist.destroy_process_group()


def cpu_part(args) -> list[dict]:
    cores = os.cpu_count() or 1
    rows = []
    runs = [(w, max(1, cores // w)) for w in args.processes]
    if args.one_thread_baseline and (1, 1) not in runs:
        runs.insert(1, (1, 1))  # separates "more processes" from "fewer threads per process"
    for world, threads in runs:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            mp.spawn(_cpu_worker, args=(world, _port(), threads, args, out), nprocs=world, join=True)
            rows.append(json.loads(Path(out).read_text()))
    return rows


def _gpu_eval(args, dev, amp: bool, channels_last: bool) -> dict:
    from advgan import data as data_mod
    from attacks import PGD, Classifier, evaluate

    _, test = data_mod.load("mnist5k")
    torch.manual_seed(0)
    clf = Classifier.create(args.gpu_model, 10, in_chans=1).to(dev).freeze()
    loader = data_mod.loader(test, args.gpu_batch_size, pin_memory=True)
    kw = dict(device=dev, amp=amp, channels_last=channels_last, progress=False, sanity_checks=False, grid_images=0)
    evaluate(clf, loader, {"pgd": PGD(eps=0.3, steps=2)}, max_batches=2, **kw)  # warm-up (cudnn autotune)
    rep = evaluate(clf, loader, {"pgd": PGD(eps=0.3, steps=args.pgd_steps)}, **kw)
    r = rep["pgd"]
    return {"amp": amp, "channels_last": channels_last, "model": args.gpu_model, "images": rep.n,
            "pgd_steps": args.pgd_steps, "eval_pgd_images_per_s": r.images_per_second,
            "wall_images_per_s": rep.n / rep.meta["wall_seconds"], "robust_accuracy": r.robust_accuracy}


def gpu_part(args) -> list[dict]:
    dev = torch.device(args.device)
    rows = []
    for amp in (False, True):
        for cl in (False, True):
            rows.append(_gpu_eval(args, dev, amp, cl))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (CPU part only) or cuda (CPU part + GPU part)")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="small_cnn", help="target classifier of the CPU part")
    p.add_argument("--gpu-model", default="resnet18", help="target classifier of the GPU part (timm names work)")
    p.add_argument("--train-images", type=int, default=1024)
    p.add_argument("--eval-images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--gpu-batch-size", type=int, default=500)
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--no-one-thread-baseline", dest="one_thread_baseline", action="store_false",
                   help="skip the extra 1 process x 1 thread run")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    p.add_argument("--out", default=str(ROOT / "results" / "scaling.json"))
    args = p.parse_args(argv)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "load_average_at_start": load, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "note": args.note, "cpu": [], "gpu": []}
    if not args.skip_cpu:
        result["cpu"] = cpu_part(args)
        print(f"CPU ({os.cpu_count()} cores, load average {load}): AdvGAN fit on {args.train_images} images, "
              f"evaluate PGD-{args.pgd_steps} on {args.eval_images}, {args.model}, batch {args.batch_size} per process")
        print(f"{'procs':>5} {'thr/proc':>8} {'AdvGAN img/s':>13} {'steps/s/rank':>13} {'eval img/s':>11}")
        for r in result["cpu"]:
            print(f"{r['processes']:>5} {r['threads_per_process']:>8} {r['advgan_train_images_per_s']:>13.1f} "
                  f"{r['advgan_steps_per_s_per_rank']:>13.2f} {r['eval_pgd_images_per_s']:>11.1f}")
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("--device cuda: no CUDA device here; GPU part skipped.")
        else:
            result["gpu"] = gpu_part(args)
            print(f"GPU {torch.cuda.get_device_name(0)}: evaluate PGD-{args.pgd_steps}, {args.gpu_model}, batch {args.gpu_batch_size}")
            print(f"{'amp':>5} {'ch_last':>7} {'attack img/s':>13} {'wall img/s':>11}")
            for r in result["gpu"]:
                print(f"{str(r['amp']):>5} {str(r['channels_last']):>7} {r['eval_pgd_images_per_s']:>13.0f} "
                      f"{r['wall_images_per_s']:>11.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
