"""defenses: adversarial augmentation, robust fine-tuning, attacker <-> defender rounds.

    from defenses import AdversarialAugmentation, finetune, FinetuneConfig
    robust_clf, history = finetune(clf, train_loader, FinetuneConfig(method="pgd-at", eps=0.3),
                                   sources=[attacker, PGD(eps=0.3, steps=10)], val_loader=test_loader)
"""
from .augmentation import AdversarialAugmentation, AugmentedLoader
from .augmix import AugMix, augmix_loss, jensen_shannon
from .callbacks import BestEpoch, OverfitGuard, TrainTime, Validation
from .corruption_source import CorruptionSource
from .finetune import FinetuneConfig, FinetuneGame, finetune
from .methods import METHODS
from .report import DefenseReport, before_after, retrain_attacker
from .rounds import play_rounds, rounds_markdown
from .sources import load_advgan_pool, parse_source, parse_sources
from .validation import attack_stats, guard_accuracy

__all__ = [
    "AdversarialAugmentation", "AugmentedLoader", "FinetuneConfig", "FinetuneGame", "finetune", "METHODS",
    "BestEpoch", "OverfitGuard", "TrainTime", "Validation",
    "DefenseReport", "before_after", "retrain_attacker", "play_rounds", "rounds_markdown",
    "load_advgan_pool", "parse_source", "parse_sources", "attack_stats", "guard_accuracy",
    "AugMix", "augmix_loss", "jensen_shannon", "CorruptionSource",
]
