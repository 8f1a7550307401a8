"""advgan finetune: robust fine-tuning of a saved classifier (augment | pgd-at | fgsm-rs | trades), optionally in rounds."""
from __future__ import annotations

import argparse

from .common import add_device, add_seed, fraction, positive_float, positive_int

NAME = "finetune"
HELP = "fine-tune a classifier for robustness (adversarial augmentation, PGD-AT, fast AT, TRADES) and report before/after"
METHODS = ("augment", "pgd-at", "fgsm-rs", "trades", "clean")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", required=True, help="directory of a saved Classifier (advgan train-classifier --out DIR)")
    p.add_argument("--method", choices=METHODS, default="augment")
    p.add_argument("--source", action="append", default=[], metavar="SPEC",
                   help="adversarial source (repeatable): advgan:DIR, pgd, fgsm, noise, foolbox:NAME. "
                        "Used for training by --method augment; validated each epoch by the other methods")
    p.add_argument("--eps", type=positive_float, default=0.3, help="budget in pixel units (8/255 = 0.0314, not 8)")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--epochs", type=positive_int, default=3, help="epochs (per round with --rounds)")
    p.add_argument("--fraction", type=fraction, default=0.5, help="augment: share of each batch replaced")
    p.add_argument("--mode", choices=("weighted", "round_robin"), default="weighted", help="augment: how sources are picked")
    p.add_argument("--rounds", type=int, default=0,
                   help="attacker<->defender rounds: retrain an AdvGAN against the current model, fine-tune on it (augment)")
    p.add_argument("--attacker-epochs", type=positive_int, default=2, help="AdvGAN epochs per round / for the retrained attacker")
    p.add_argument("--pgd-steps", type=positive_int, default=10, help="training PGD steps (pgd-at, trades, pgd source)")
    p.add_argument("--eps-ramp-epochs", type=float, default=0.0, help="ramp eps up linearly over this many epochs")
    p.add_argument("--trades-beta", type=float, default=6.0)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--grad-clip", type=positive_float, default=None)
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 where supported)")
    p.add_argument("--dataset", default="mnist5k", help="dataset name (mnist5k, digits, mnist, cifar10, ...)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-subset", type=positive_int, default=None, help="use only this many (random) training images")
    p.add_argument("--val-batches", type=positive_int, default=None, help="validate on this many test batches per epoch")
    p.add_argument("--report", action="store_true",
                   help="write a before/after report (PGD-40, FGSM, AdvGAN sources; --retrain-attacker adds a retrained AdvGAN)")
    p.add_argument("--retrain-attacker", action="store_true", help="report: train a fresh AdvGAN against the fine-tuned model")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output directory (re-running resumes)")
    add_device(p)
    add_seed(p)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import Subset

    from advgan import data
    from attacks import Classifier
    from defenses import FinetuneConfig, finetune, parse_sources
    from defenses.report import before_after
    from defenses.rounds import play_rounds, rounds_markdown

    if args.rounds < 0:
        raise ValueError(f"--rounds must be >= 0, got {args.rounds}.")
    if args.rounds and args.method != "augment":
        raise ValueError("--rounds fine-tunes on retrained AdvGAN attackers: use --method augment.")
    cfg = FinetuneConfig(method=args.method, epochs=args.epochs, eps=args.eps, norm=args.norm, fraction=args.fraction,
                         mode=args.mode, pgd_steps=args.pgd_steps, eps_ramp_epochs=args.eps_ramp_epochs,
                         trades_beta=args.trades_beta, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
                         grad_clip=args.grad_clip, amp=args.amp, val_batches=args.val_batches, seed=args.seed,
                         device=args.device, progress=not args.no_progress)
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
