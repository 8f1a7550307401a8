"""advgan pix2pix: image-to-image translation on paired data built from an image dataset (advgan.pairs)."""
from __future__ import annotations

import argparse

from ..gans import Pix2PixConfig
from .common import positive_int
from .flags import add_config_flags, config_values
from .gan_common import add_classifier_argument, add_train_arguments, eval_classifier, print_metrics, train_kwargs, write_outputs

NAME = "pix2pix"
HELP = "train pix2pix (cGAN + λ·L1, or L1 / cGAN alone) on colorize / edges / superres / nextframe pairs"
TASKS = ("colorize", "edges", "superres", "nextframe")
FIELDS = ("mode", "lambda_l1", "loss", "depth", "d_layers")   #: Pix2PixConfig fields as flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASKS, default="edges")
    p.add_argument("--dataset", choices=("mnist5k", "digits"), default="mnist5k")
    add_config_flags(p, Pix2PixConfig, FIELDS)
    p.add_argument("--width", type=positive_int, default=32, help="base channels of G and D")
    p.add_argument("--factor", type=positive_int, default=4, help="superres: downsampling factor")
    p.add_argument("--canny", action="store_true", help="edges: Canny-like binary edges instead of Sobel magnitude")
    p.add_argument("--n-train", type=positive_int, default=None, help="train on a stratified subset of this size")
    add_classifier_argument(p)
    add_train_arguments(p, epochs=5, batch_size=16, lr=2e-4)


def task_options(args: argparse.Namespace) -> dict:
    if args.task == "superres":
        return {"factor": args.factor}
    if args.task == "edges":
        return {"canny": args.canny}
    return {}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from advgan import data, metrics, pairs
    from advgan.gans import Pix2Pix
    from advgan.gans.figures import save_rows

    kw = {"image_size": 32} if args.dataset == "digits" else {}
    train, test = data.load(args.dataset, **kw)
    if args.n_train:
        train = train.subset(args.n_train, seed=args.seed)
    ptrain, ptest = pairs.build(args.task, train, **task_options(args)), pairs.build(args.task, test, **task_options(args))
    cfg = Pix2PixConfig(g_width=args.width, d_width=args.width, **config_values(args, Pix2PixConfig, FIELDS), **train_kwargs(args))
    out = Path(args.out)
    model = Pix2Pix(cfg, ptrain.in_channels, ptrain.out_channels)
    hist = model.fit(ptrain, args.epochs, out_dir=out / "train")
    model.save(out / "model")
    if ptest.x is None or ptest.y is None:  # in-memory datasets: the pairs are precomputed
        raise ValueError(f"the {args.dataset} pairs were not precomputed; use an in-memory dataset.")
    y_hat = model.translate(ptest.x)
    show = torch.arange(min(10, len(ptest))) * max(1, len(ptest) // 10)     # spread over the (class-ordered) test split
    save_rows({"input": ptest.x[show], "target": ptest.y[show], args.mode: y_hat[show]}, out / "samples.png",
              title=f"pix2pix {args.task} ({args.mode})")
    res = {"task": args.task, "dataset": args.dataset, "mode": args.mode, "epochs": args.epochs,
           "test_l1": float((y_hat - ptest.y).abs().mean()), "input_l1": float((ptest.x - ptest.y).abs().mean())
           if ptest.x.shape == ptest.y.shape else None}
    if ptest.y.shape[1] == train.images.shape[1]:
        clf = eval_classifier(args, train, test)
        res["frechet_distance"] = metrics.classifier_frechet_distance(clf, y_hat, ptest.y)
    write_outputs(out, res, hist)
    print_metrics(f"Pix2Pix {args.task} ({args.mode}) on {args.dataset}", res, out)
    return 0
