"""advgan finetune: robust fine-tuning of a saved classifier (augment | pgd-at | fgsm-rs | trades | mart | awp |
n-fgsm | advgan-at), optionally in rounds."""
from __future__ import annotations

import argparse

from defenses.finetune import FinetuneConfig  # the CLI is the one advgan module that may import defenses

from .common import RUN_FLAGS, positive_int
from .flags import add_config_flags, config_values

NAME = "finetune"
HELP = ("fine-tune a classifier for robustness (adversarial augmentation, PGD-AT, fast AT, TRADES, MART, AWP, N-FGSM, "
        "online AdvGAN) and report before/after")
#: FinetuneConfig fields as flags
FIELDS = ("method", "eps", "norm", "epochs", "fraction", "mode", "pgd_steps", "eps_ramp_epochs", "trades_beta", "mart_beta",
          "nfgsm_k", "awp_gamma", "awp_base", "awp_warmup_epochs", "optimizer", "lr", "batch_size", "grad_clip", "amp",
          "val_batches", "gen_steps", "gen_noise", "gen_mix", "gen_clean", "gen_kl", "gen_alpha", "gen_kappa", "gen_lr",
          "gen_width", "gen_fraction", "gen_grad", "gen_init", "gen_init_step", "gen_reverse") + RUN_FLAGS
#: this command's defaults where they differ from FinetuneConfig's (method "pgd-at", epochs 5): augment, for 3 epochs
DEFAULTS = {"method": "augment", "epochs": 3}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", required=True, help="directory of a saved Classifier (advgan train-classifier --out DIR)")
    p.add_argument("--source", action="append", default=[], metavar="SPEC",
                   help="adversarial source (repeatable): advgan:DIR, pgd, fgsm, noise, foolbox:NAME. "
                        "Used for training by --method augment; validated each epoch by the other methods")
    p.add_argument("--rounds", type=int, default=0,
                   help="attacker<->defender rounds: retrain an AdvGAN against the current model, fine-tune on it (augment)")
    p.add_argument("--attacker-epochs", type=positive_int, default=2, help="AdvGAN epochs per round / for the retrained attacker")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (mnist5k, digits, mnist, cifar10, ...)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-subset", type=positive_int, default=None, help="use only this many (random) training images")
    p.add_argument("--report", action="store_true",
                   help="write a before/after report (PGD-40, FGSM, AdvGAN sources; --retrain-attacker adds a retrained AdvGAN)")
    p.add_argument("--retrain-attacker", action="store_true", help="report: train a fresh AdvGAN against the fine-tuned model")
    p.add_argument("--out", required=True, help="output directory (re-running resumes)")
    add_config_flags(p, FinetuneConfig, FIELDS, defaults=DEFAULTS, affirm=("gen_init",))  # gen_init: on since 0.2.x


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import Subset

    from advgan import data
    from attacks import Classifier
    from defenses import finetune, parse_sources
    from defenses.report import before_after
    from defenses.rounds import play_rounds, rounds_markdown

    if args.rounds < 0:
        raise ValueError(f"--rounds must be >= 0, got {args.rounds}.")
    if args.rounds and args.method != "augment":
        raise ValueError("--rounds fine-tunes on retrained AdvGAN attackers: use --method augment.")
    cfg = FinetuneConfig(**config_values(args, FinetuneConfig, FIELDS))
    if args.method == "augment" and not args.source and not args.rounds:
        raise ValueError("--method augment needs at least one --source (advgan:DIR, pgd, fgsm, noise, foolbox:NAME).")
    clf = Classifier.load(args.classifier)
    sources = parse_sources(args.source, clf, eps=args.eps, norm=args.norm, pgd_steps=args.pgd_steps) if args.source else []
    kwargs = {"root": args.data_root} if args.data_root else {}
    train, test = data.load(args.dataset, **kwargs)
    if args.train_subset:
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[:args.train_subset]
        train = Subset(train, idx.tolist())
    train_loader = data.loader(train, args.batch_size, shuffle=True, seed=args.seed)
    # a shuffled (fixed) order: datasets are often sorted by label and --val-batches takes the first batches
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed)).tolist()
    test_loader = data.loader(Subset(test, perm), 256, shuffle=False)
    if args.rounds:
        robust, records = play_rounds(clf, train_loader, cfg, rounds=args.rounds, val_loader=test_loader,
                                      attacker_epochs=args.attacker_epochs, extra_sources=sources,
                                      max_batches=args.val_batches, out_dir=args.out)
        robust.save(args.out, extra={"rounds": records, "finetune_config": cfg.to_dict()})
        print(rounds_markdown(records))
        histories = None
    else:
        robust, hist = finetune(clf, train_loader, cfg, sources=sources, val_loader=test_loader, out_dir=args.out)
        last = hist.epochs[-1] if hist.epochs else {}
        print(f"fine-tuned ({args.method}) -> {args.out}: val clean {last.get('val_clean_acc', float('nan')):.4f}, "
              f"val PGD-{cfg.val_pgd_steps} robust {last.get('val_robust_acc', float('nan')):.4f} (last epoch); "
              f"best epoch saved to {args.out}/best")
        histories = {"fine-tuned": hist}
    if args.report:
        advgan_src = next((s for s in sources if getattr(s, "name", "") == "advgan"), None)
        rep = before_after({"original": clf, "fine-tuned": robust}, test_loader, eps=args.eps, norm=args.norm,
                           original_attacker=advgan_src, retrain=args.retrain_attacker, train_loader=train_loader,
                           attacker_epochs=args.attacker_epochs, histories=histories, max_batches=args.val_batches,
                           seed=args.seed, progress=not args.no_progress, out_dir=args.out)
        print(rep.to_markdown())
    return 0
