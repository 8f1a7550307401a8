"""advgan train-attacker: train an AdvGAN attacker against a saved classifier (white- or black-box)."""
from __future__ import annotations

import argparse

from ..attacker import AdvGANConfig
from .common import RUN_FLAGS, nonneg_int, positive_int
from .flags import add_config_flags, config_values

NAME = "train-attacker"
HELP = "train an AdvGAN generator against a saved classifier; saves it, a sample grid, loss curves and test ASR"
#: AdvGANConfig fields as flags (their defaults)
FIELDS = ("eps", "norm", "targeted", "batch_size", "generator", "kappa", "alpha", "beta", "g_steps", "div_weight", "spread_weight",
          "spread_floor", "aux_weight", "shift", "ema_decay", "best_epoch", "width", "image_size") + RUN_FLAGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", required=True, help="directory of a saved classifier (advgan train-classifier)")
    p.add_argument("--black-box", choices=("static", "dynamic"), default=None,
                   help="only query the classifier: distil a surrogate (static) and keep distilling (dynamic)")
    p.add_argument("--surrogate", default="small_cnn", help="surrogate architecture for --black-box")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs in total; re-running resumes")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (train split trains, test split is reported)")
    p.add_argument("--data-root", default=None, help="root folder for torchvision datasets / imagefolder")
    p.add_argument("--train-size", type=nonneg_int, default=0, help="use a stratified subset of this many training images (0: all)")
    p.add_argument("--out", required=True, help="output directory (re-running the same command resumes)")
    add_config_flags(p, AdvGANConfig, FIELDS)


def _train(args: argparse.Namespace, clf, cfg: AdvGANConfig, train, test):
    """The attacker (white-box, or through a BlackBox), its history and the black-box queries (None: white-box)."""
    from pathlib import Path

    from advgan import data
    from advgan.attacker import AdvGAN, BlackBox, BlackBoxAdvGAN

    out = Path(args.out)
    if args.black_box:
        bb = BlackBox(clf)
        bba = BlackBoxAdvGAN(bb, cfg, mode=args.black_box, surrogate=args.surrogate)
        hist = bba.fit(train, args.epochs, out_dir=out)
        return AdvGAN.load(out, clf), hist, bba.queries
    atk = AdvGAN(clf, cfg)
    # validation (and the best epoch) on training images: the reported test numbers stay unselected
    import torch

    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))[:min(500, len(train))]
    val = torch.utils.data.Subset(train, idx.tolist())
    hist = atk.fit(train, args.epochs, out_dir=out, val_loader=data.loader(val, 256))
    return atk, hist, None


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from advgan import data
    from attacks import Classifier
    from attacks.checkpoint import save_json

    clf = Classifier.load(args.classifier)
    cfg = AdvGANConfig(**config_values(args, AdvGANConfig, FIELDS))
    kwargs = {"root": args.data_root} if args.data_root else {}
    train, test = data.load(args.dataset, **kwargs)
    if args.train_size:
        train = data.to_image_dataset(train) if not isinstance(train, data.ImageDataset) else train
        train = train.subset(args.train_size, seed=args.seed)
    out = Path(args.out)
    t0 = time.perf_counter()
    atk, hist, queries = _train(args, clf, cfg, train, test)
    seconds = time.perf_counter() - t0
    res = atk.rates(data.loader(test, 256), model=clf)  # against the real target (black-box: trained on a surrogate)
    diag = atk.diagnostics(data.loader(test, 256), model=clf)
    xs = next(iter(data.loader(test, 8, shuffle=True, seed=args.seed)))
    atk.sample_grid(out / "samples.png", xs[0], xs[1])
    hist.plot(out / "losses.png", title=f"AdvGAN {cfg.norm} eps={cfg.eps:g}" + (f" black-box {args.black_box}" if args.black_box else ""))
    result = {"dataset": args.dataset, "eps": cfg.eps, "norm": cfg.norm, "targeted": cfg.targeted,
              "black_box": args.black_box, "epochs": args.epochs, "test_attack_success_rate": res["asr"],
              "test_clean_accuracy": res["clean_acc"], "test_shared_energy": diag["shared_energy"],
              "test_adv_class_entropy": diag["adv_class_entropy"], "train_seconds_this_run": seconds, "queries": queries,
              "config": cfg.to_dict()}
    save_json(out / "result.json", result)
    what = "hit-rate of random targets" if cfg.targeted else "attack success rate"
    print(f"AdvGAN ({cfg.norm} eps={cfg.eps:g}{', black-box ' + args.black_box if args.black_box else ''}): test {what} "
          f"{res['asr']:.4f} over correctly classified inputs (clean accuracy {res['clean_acc']:.4f}); shared energy "
          f"{diag['shared_energy']:.3f}, adversarial-class entropy {diag['adv_class_entropy']:.2f} nats -> {out}")
    if queries:
        print(f"black-box queries: {queries}")
    return 0
