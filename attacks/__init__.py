"""attacks: the vocabulary of the library (threat model, Attack protocol, Classifier, evaluation).

Knows nothing of GANs. Everything here works on pixels in [0, 1].
"""
from .apgd import APGD, APGDCE, APGDDLR, APGDT
from .autoattack import AutoAttack
from .base import (
    Attack,
    AttackLike,
    AttackTraits,
    available_attacks,
    frozen_eval,
    make_attack,
    random_targets,
    register_attack,
    traits_of,
)
from .checkpoint import CheckpointError
from .classifier import Classifier
from .cw import CW
from .evaluate import evaluate
from .fab import FAB, FABT
from .fgsm import FGSM
from .foolbox_bridge import FoolboxAttack, foolbox_attack_names
from .losses import attack_loss, cw_margin, is_adversarial
from .measure import Measurement, measure
from .models import builtin_models, create_module, register_model
from .noise import RandomNoise
from .pgd import PGD
from .plots import attack_grid, image_grid, plot_eps_curves
from .report import AttackResult, Report
from .square import Square
from .ssim import ssim
from .threat import ThreatModel, flat_norm
from .transfer import TransferResult, transfer

__all__ = [
    "Attack", "AttackLike", "AttackTraits", "CheckpointError", "Classifier", "ThreatModel",
    "attack_loss", "available_attacks", "builtin_models", "create_module", "cw_margin", "flat_norm",
    "frozen_eval", "is_adversarial", "make_attack", "random_targets", "register_attack", "register_model", "traits_of",
    "FGSM", "PGD", "APGD", "APGDCE", "APGDDLR", "APGDT", "AutoAttack",
    "CW", "RandomNoise", "FoolboxAttack", "foolbox_attack_names", "AttackResult", "Report",
    "evaluate", "Measurement", "measure", "attack_grid", "image_grid", "plot_eps_curves", "ssim",
    "TransferResult", "transfer",
]
__all__ += ["FAB", "FABT", "Square"]

from .corruptions import CORRUPTION_FAMILIES, CORRUPTIONS, Corruption, corrupt, corruption_names  # noqa: E402

__all__ += ["CORRUPTIONS", "CORRUPTION_FAMILIES", "Corruption", "corrupt", "corruption_names"]
