"""advgan cgan: a label-conditional GAN on MNIST-5k (or digits); reports class accuracy of its samples and FD."""
from __future__ import annotations

import argparse

from ..gans import ConditionalGANConfig
from .common import positive_int
from .flags import add_config_flags, config_values
from .gan_common import add_classifier_argument, add_train_arguments, eval_classifier, print_metrics, train_kwargs, write_outputs

NAME = "cgan"
HELP = "train a class-conditional GAN; report a classifier's accuracy on its samples per class and the Fréchet distance"
FIELDS = ("loss", "d_net", "z_dim", "gp_weight", "r1_weight", "spectral_norm")   #: ConditionalGANConfig fields as flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=("mnist5k", "digits"), default="mnist5k")
    add_config_flags(p, ConditionalGANConfig, FIELDS, helps={"d_net": "auto (projection D), proj_dcgan_d, cond_dcgan_d, ..."})
    p.add_argument("--width", type=positive_int, default=64, help="base channels of G and D")
    p.add_argument("--n-train", type=positive_int, default=None, help="train on a stratified subset of this size")
    p.add_argument("--per-class", type=positive_int, default=100, help="samples per class for the metrics")
    add_classifier_argument(p)
    add_train_arguments(p, epochs=15, batch_size=64, lr=2e-4)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from advgan import data, metrics
    from advgan.gans import ConditionalGAN

    kw = {"image_size": 28} if args.dataset == "digits" else {}
    train, test = data.load(args.dataset, **kw)
    if args.n_train:
        train = train.subset(args.n_train, seed=args.seed)
    cfg = ConditionalGANConfig(g_width=args.width, d_width=args.width, **config_values(args, ConditionalGANConfig, FIELDS),
                               **train_kwargs(args))
    out = Path(args.out)
    model = ConditionalGAN(cfg, tuple(train.images.shape[1:]), train.num_classes)
    hist = model.fit(train, args.epochs, out_dir=out / "train")
    model.save(out / "model")
    model.sample_grid(out / "samples.png")
    clf = eval_classifier(args, train, test)
    labels = torch.arange(train.num_classes).repeat_interleave(args.per_class)
    fake = model.sample(len(labels), labels, seed=args.seed + 1)
    with torch.no_grad():
        pred = torch.cat([clf(fake[i:i + 512]).argmax(1) for i in range(0, len(fake), 512)])
        real_acc = torch.cat([clf(test.images[i:i + 512]).argmax(1) for i in range(0, len(test), 512)]).eq(test.labels).float().mean()
    per_class = [float(pred[labels == c].eq(c).float().mean()) for c in range(train.num_classes)]
    res = {"dataset": args.dataset, "loss": cfg.loss, "epochs": args.epochs,
           "generated_class_accuracy": float(pred.eq(labels).float().mean()), "per_class_accuracy": per_class,
           "classifier_test_accuracy": float(real_acc),
           "frechet_distance": metrics.classifier_frechet_distance(clf, fake, test.images),
           "frechet_distance_real_train_vs_test": metrics.classifier_frechet_distance(
               clf, train.subset(len(test), seed=args.seed).images, test.images)}
    write_outputs(out, res, hist)
    print_metrics(f"ConditionalGAN ({cfg.loss}) on {args.dataset}", res, out)
    return 0
