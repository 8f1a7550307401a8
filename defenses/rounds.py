"""Attacker <-> defender rounds: the min-max game played at the level of whole models.

Round r: (1) train a fresh AdvGAN attacker against the current classifier; (2) measure its attack
success rate; (3) fine-tune the classifier on adversarial examples from the attackers (the pool of
all rounds so far, or only the newest) plus any extra sources (e.g. PGD); (4) measure again: the
round's attacker's ASR against the fine-tuned model, clean accuracy and PGD robust accuracy.

    clf, rounds = play_rounds(clf, train_loader, FinetuneConfig(method="augment", eps=0.3, epochs=1),
                              rounds=3, val_loader=test_loader, out_dir="runs/rounds")

Each step writes into ``out_dir/round_<r>/{attacker,classifier}``; re-running resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from advgan.config import Integer
from advgan.data import as_loader
from attacks import PGD, Classifier
from attacks.checkpoint import save_json

from .finetune import FinetuneConfig, finetune
from .validation import attack_stats


def play_rounds(classifier: Classifier, train_loader: DataLoader | Dataset, config: FinetuneConfig, *, rounds: int = 2,
                val_loader: DataLoader | Dataset, attacker_config: Any = None, attacker_epochs: int = 2,
                extra_sources: Sequence[Any] = (), pool: bool = True, pgd_steps: int = 40,
                max_batches: int | None = None, out_dir: str | Path | None = None) -> tuple[Classifier, list[dict]]:
    """Alternate attacker training and robust fine-tuning for ``rounds`` rounds (see the module docstring).

    Returns the final classifier (``classifier`` itself is untouched) and one record per round
    (round 0: the starting model) with ``clean_acc``, ``robust_acc`` (PGD-``pgd_steps``),
    ``attacker_asr_before`` / ``attacker_asr_after`` (the round's new attacker against the model it was
    trained on / the model fine-tuned against it).
    """
    from advgan.attacker import AdvGAN, AdvGANConfig

    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier must be an attacks.Classifier, got {type(classifier).__name__}.")
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}.")
    Integer(1)(rounds, "rounds")
    Integer(1)(attacker_epochs, "attacker_epochs")
    if config.method != "augment":
        raise ValueError(f"rounds fine-tune on the attackers' examples: use method='augment' (got {config.method!r}).")
    acfg = attacker_config or AdvGANConfig(eps=config.eps, norm=config.norm, seed=config.seed, device=config.device,
                                           progress=config.progress)
    if abs(acfg.eps - config.eps) > 1e-9 or acfg.norm != config.norm:
        raise ValueError(f"attacker_config's threat model ({acfg.norm}, {acfg.eps:g}) differs from the fine-tuning one "
                         f"({config.norm}, {config.eps:g}).")
    train = as_loader(train_loader, config.batch_size, shuffle=True, seed=config.seed, what="train_loader")
    val = as_loader(val_loader, 512, shuffle=False, seed=config.seed, what="val_loader")
    out = Path(out_dir) if out_dir is not None else None
    pgd = PGD(eps=config.eps, norm=config.norm, steps=pgd_steps, seed=config.seed)
    clf = classifier
    s = attack_stats(clf, val, pgd, max_batches=max_batches)
    records: list[dict] = [{"round": 0, "clean_acc": s["clean_acc"], "robust_acc": s["robust_acc"]}]
    attackers: list[Any] = []
    for r in range(1, rounds + 1):
        rdir = out / f"round_{r}" if out is not None else None
        atk = AdvGAN(clf, dataclasses.replace(acfg, seed=acfg.seed + r))
        atk.fit(train, attacker_epochs, out_dir=rdir / "attacker" if rdir else None)
        attack = atk.as_attack()
        before = attack_stats(clf, val, attack, max_batches=max_batches)["asr"]
        attackers = attackers + [attack] if pool else [attack]
        cfg = dataclasses.replace(config, seed=config.seed + r)
        clf, hist = finetune(clf, train, cfg, sources=attackers + list(extra_sources), val_loader=val,
                             out_dir=rdir / "classifier" if rdir else None)
        after = attack_stats(clf, val, attack, max_batches=max_batches)
        s = attack_stats(clf, val, pgd, max_batches=max_batches)
        records.append({"round": r, "attacker_asr_before": before, "attacker_asr_after": after["asr"],
                        "clean_acc": s["clean_acc"], "robust_acc": s["robust_acc"], "attackers_in_pool": len(attackers),
                        "train_seconds": sum(e.get("train_seconds", 0.0) for e in hist.epochs)})
        if out is not None:
            save_json(out / "rounds.json", {"rounds": records, "pgd_steps": pgd_steps, "finetune_config": config.to_dict()})
    return clf, records


def rounds_markdown(records: list[dict]) -> str:
    """A Markdown table of ``play_rounds`` records."""
    def pct(v: Any) -> str:
        return "—" if v is None else f"{100 * v:.1f}%"

    lines = ["| round | new attacker ASR (before fine-tune) | same attacker ASR (after) | clean acc | PGD robust acc |",
             "|---|---|---|---|---|"]
    for rec in records:
        lines.append(f"| {rec['round']} | {pct(rec.get('attacker_asr_before'))} | {pct(rec.get('attacker_asr_after'))} | "
                     f"{pct(rec.get('clean_acc'))} | {pct(rec.get('robust_acc'))} |")
    return "\n".join(lines)
