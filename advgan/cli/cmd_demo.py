"""advgan demo: the main job, offline on MNIST-5k (resumable; see advgan/cli/demo.py)."""
from __future__ import annotations

import argparse

from .common import add_device, add_seed, positive_float

NAME = "demo"
HELP = ("the main job, offline: train a timm target on MNIST-5k, train AdvGAN, compare with FGSM/PGD/foolbox, "
        "fine-tune with adversarial augmentation, re-attack (incl. a retrained AdvGAN), write a report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output directory (re-running skips finished stages)")
    p.add_argument("--quick", action="store_true", help="CI-sized run (~1-3 min on a CPU; rougher numbers)")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--model", default="resnet18", help="timm model name or built-in (small_cnn, tiny_cnn)")
    p.add_argument("--eps", type=positive_float, default=0.3)
    p.add_argument("--norm", default="linf", choices=["linf", "l2"])
    p.add_argument("--method", default="augment", choices=["augment", "pgd-at", "fgsm-rs", "trades"],
                   help="fine-tuning method")
    p.add_argument("--no-progress", action="store_true")
    add_device(p)
    add_seed(p)


def run(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    kw = dict(dataset=args.dataset, model=args.model, eps=args.eps, norm=args.norm, finetune_method=args.method,
              seed=args.seed, device=args.device, progress=not args.no_progress)
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**kw)
    run_demo(cfg, args.out)
    print(f"\nreport: {args.out}/report.md (+ report.json, grid.png, eps_curves.png, gan_losses.png, cgan_samples.png)")
    return 0
