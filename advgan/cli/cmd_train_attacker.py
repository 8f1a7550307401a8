"""advgan train-attacker: train an AdvGAN attacker against a saved classifier (white- or black-box)."""
from __future__ import annotations

import argparse

from .common import add_device, add_seed, nonneg_int, positive_float, positive_int

NAME = "train-attacker"
HELP = "train an AdvGAN generator against a saved classifier; saves it, a sample grid, loss curves and test ASR"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", required=True, help="directory of a saved classifier (advgan train-classifier)")
    p.add_argument("--eps", type=positive_float, default=0.3, help="budget in pixel units [0, 1] (e.g. 0.3, or 8/255=0.0314)")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--targeted", action="store_true", help="one generator conditioned on the target class")
    p.add_argument("--black-box", choices=("static", "dynamic"), default=None,
                   help="only query the classifier: distil a surrogate (static) and keep distilling (dynamic)")
    p.add_argument("--surrogate", default="small_cnn", help="surrogate architecture for --black-box")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--dataset", default="mnist5k", help="dataset name (train split trains, test split is reported)")
    p.add_argument("--data-root", default=None, help="root folder for torchvision datasets / imagefolder")
    p.add_argument("--train-size", type=nonneg_int, default=0, help="use a stratified subset of this many training images (0: all)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: AdvGANConfig's")
    p.add_argument("--generator", choices=("resnet", "unet"), default="resnet")
    p.add_argument("--kappa", type=float, default=None, help="C&W confidence (default: AdvGANConfig's)")
    p.add_argument("--alpha", type=float, default=None, help="GAN loss weight")
    p.add_argument("--beta", type=float, default=None, help="hinge loss weight")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output directory (re-running the same command resumes)")
    add_device(p)
    add_seed(p)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from advgan import data
    from advgan.attacker import AdvGAN, AdvGANConfig
    from attacks import Classifier
    from attacks.checkpoint import save_json

    clf = Classifier.load(args.classifier)
    overrides = {k: getattr(args, k) for k in ("batch_size", "kappa", "alpha", "beta") if getattr(args, k) is not None}
    cfg = AdvGANConfig(eps=args.eps, norm=args.norm, targeted=args.targeted, generator=args.generator, seed=args.seed,
                       device=args.device, progress=not args.no_progress, **overrides)
    kwargs = {"root": args.data_root} if args.data_root else {}
    train, test = data.load(args.dataset, **kwargs)
    if args.train_size:
        train = data.to_image_dataset(train) if not isinstance(train, data.ImageDataset) else train
        train = train.subset(args.train_size, seed=args.seed)
    out = Path(args.out)
    t0 = time.perf_counter()
    queries = None
    if args.black_box:
        from advgan.attacker import BlackBox, BlackBoxAdvGAN

        bb = BlackBox(clf)
        bba = BlackBoxAdvGAN(bb, cfg, mode=args.black_box, surrogate=args.surrogate)
        hist = bba.fit(train, args.epochs, out_dir=out)
        atk = AdvGAN.load(out, clf)
        queries = bba.queries
    else:
        atk = AdvGAN(clf, cfg)
        hist = atk.fit(train, args.epochs, out_dir=out, val_loader=data.loader(test, 256))
    seconds = time.perf_counter() - t0
    test_loader = data.loader(test, 256)
    res = atk.rates(test_loader, model=clf)  # against the real target (black-box: the attacker was trained on a surrogate)
    xs = next(iter(data.loader(test, 8, shuffle=True, seed=args.seed)))
    atk.sample_grid(out / "samples.png", xs[0], xs[1])
    hist.plot(out / "losses.png", title=f"AdvGAN {args.norm} eps={args.eps:g}" + (f" black-box {args.black_box}" if args.black_box else ""))
    result = {"dataset": args.dataset, "eps": args.eps, "norm": args.norm, "targeted": args.targeted,
              "black_box": args.black_box, "epochs": args.epochs, "test_attack_success_rate": res["asr"],
              "test_clean_accuracy": res["clean_acc"], "train_seconds_this_run": seconds, "queries": queries,
              "config": cfg.to_dict()}
    save_json(out / "result.json", result)
    what = "hit-rate of random targets" if args.targeted else "attack success rate"
    print(f"AdvGAN ({args.norm} eps={args.eps:g}{', black-box ' + args.black_box if args.black_box else ''}): test {what} "
          f"{res['asr']:.4f} over correctly classified inputs (clean accuracy {res['clean_acc']:.4f}) -> {out}")
    if queries:
        print(f"black-box queries: {queries}")
    return 0
