"""advgan: the GAN workshop (one min-max engine, GAN / cGAN / pix2pix, the AdvGAN attacker) and the CLI.

    from advgan import AdvGAN, AdvGANConfig, GAN, ConditionalGAN, Pix2Pix, data, losses, nets, pairs, metrics
"""
from . import data
from .attacker import AdvGAN, AdvGANConfig
from .data import pairs
from .engine import DivergenceError, History, MinMaxGame, MinMaxTrainer, Player, TrainConfig
from .gans import GAN, ConditionalGAN, ConditionalGANConfig, GANConfig, Pix2Pix, Pix2PixConfig, losses, metrics, nets
from .modelio import load
from .training import ClassifierConfig, accuracy, train_classifier

__version__ = "0.2.0"
__all__ = [
    "AdvGAN", "AdvGANConfig", "GAN", "GANConfig", "ConditionalGAN", "ConditionalGANConfig", "Pix2Pix", "Pix2PixConfig",
    "MinMaxGame", "MinMaxTrainer", "Player", "TrainConfig", "DivergenceError", "History",
    "ClassifierConfig", "accuracy", "train_classifier",
    "data", "losses", "metrics", "nets", "pairs", "load",
]

from . import _compat  # noqa: E402  (the 0.1 module paths: advgan.gan, advgan.nets, ... as aliases)

_compat.install()
