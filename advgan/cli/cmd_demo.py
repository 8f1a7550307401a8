"""advgan demo: the main job, offline on MNIST-5k (resumable; see advgan/cli/demo.py)."""
from __future__ import annotations

import argparse

from .demo import DemoConfig
from .flags import add_config_flags, config_values

NAME = "demo"
HELP = ("the main job, offline: train a timm target on MNIST-5k, train AdvGAN, compare with FGSM/PGD/foolbox, "
        "fine-tune with adversarial augmentation, re-attack (incl. a retrained AdvGAN), write a report")
FIELDS = ("dataset", "model", "eps", "norm", "finetune_method", "corruptions", "corruption_severity", "progress", "device",
          "seed")   #: DemoConfig fields as flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output directory (re-running skips finished stages)")
    p.add_argument("--quick", action="store_true", help="CI-sized run (~1-3 min on a CPU; rougher numbers): DemoConfig.quick()")
    add_config_flags(p, DemoConfig, FIELDS)


def run(args: argparse.Namespace) -> int:
    from .demo import run_demo

    kw = config_values(args, DemoConfig, FIELDS)
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**kw)
    run_demo(cfg, args.out)
    print(f"\nreport: {args.out}/report.md (+ report.json, grid.png, eps_curves.png, gan_losses.png, cgan_samples.png)")
    return 0
