"""advgan gan: an unconditional GAN on a toy mixture (ring8, grid25) or on MNIST-5k images."""
from __future__ import annotations

import argparse

from ..gans import GANConfig
from .common import positive_int
from .flags import add_config_flags, config_values
from .gan_common import add_classifier_argument, add_train_arguments, eval_classifier, print_metrics, train_kwargs, write_outputs

NAME = "gan"
HELP = "train an unconditional GAN (ring8 / grid25 mode-collapse benchmark, or mnist5k) and report its metrics"
DATASETS = ("ring8", "grid25", "mnist5k")
FIELDS = ("loss", "z_dim", "gp_weight", "r1_weight", "spectral_norm")   #: GANConfig fields as flags
#: this command's default: --z-dim None = 2 for toy data, 64 for images (GANConfig's is 64)
DEFAULTS = {"z_dim": None}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, default="ring8")
    add_config_flags(p, GANConfig, FIELDS, defaults=DEFAULTS, helps={"z_dim": "latent size (default: 2 for toy data, 64 for images)"})
    p.add_argument("--width", type=positive_int, default=None, help="hidden units / base channels of G and D (default 256 toy, 64 images)")
    p.add_argument("--n-train", type=positive_int, default=None, help="toy data: training samples (default 100,000); mnist5k: subset size")
    add_classifier_argument(p)
    add_train_arguments(p, epochs=20, batch_size=256, lr=2e-4)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from advgan import data, metrics
    from advgan.gans import GAN

    toy = args.dataset != "mnist5k"
    if toy:
        train, test = data.load(args.dataset, **({"n_train": args.n_train} if args.n_train else {}))
        shape = (2,)
    else:
        train, test = data.load("mnist5k")
        if args.n_train:
            train = train.subset(args.n_train, seed=args.seed)
        shape = tuple(train.images.shape[1:])
    width = args.width or (256 if toy else 64)
    model_kw = {**config_values(args, GANConfig, FIELDS), "z_dim": args.z_dim or (2 if toy else 64)}
    cfg = GANConfig(g_width=width, d_width=width, **model_kw, **train_kwargs(args))
    out = Path(args.out)
    model = GAN(cfg, shape)
    hist = model.fit(train, args.epochs, out_dir=out / "train")
    model.save(out / "model")
    model.sample_grid(out / "samples.png")
    steps = model.trainer.state.step if model.trainer else 0
    res: dict = {"dataset": args.dataset, "loss": cfg.loss, "epochs": args.epochs, "steps": steps}
    if toy:
        cov = metrics.mode_coverage(model.sample(2500, seed=args.seed + 1), train.modes, train.std)
        res.update({"modes_captured": cov["modes_captured"], "num_modes": cov["num_modes"],
                    "high_quality": cov["high_quality"], "reverse_kl": cov["reverse_kl"], "counts": cov["counts"]})
    else:
        clf = eval_classifier(args, train, test)
        fake = model.sample(len(test), seed=args.seed + 1)
        res["frechet_distance"] = metrics.classifier_frechet_distance(clf, fake, test.images)
        res["frechet_distance_real_train_vs_test"] = metrics.classifier_frechet_distance(
            clf, train.subset(len(test), seed=args.seed).images, test.images)
    write_outputs(out, res, hist)
    print_metrics(f"GAN ({cfg.loss}) on {args.dataset}", res, out)
    return 0
