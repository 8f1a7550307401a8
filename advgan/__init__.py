"""advgan: the GAN workshop (one min-max engine, GAN / cGAN / pix2pix, the AdvGAN attacker) and the CLI.

    from advgan import AdvGAN, AdvGANConfig, GAN, ConditionalGAN, Pix2Pix, data, losses, nets, pairs, metrics
"""
from . import data, losses, metrics, nets, pairs
from .attacker import AdvGAN, AdvGANConfig
from .engine import DivergenceError, MinMaxGame, MinMaxTrainer, Player, TrainConfig
from .gan import GAN, ConditionalGAN, ConditionalGANConfig, GANConfig
from .history import History
from .pix2pix import Pix2Pix, Pix2PixConfig
from .training import ClassifierConfig, accuracy, train_classifier

__version__ = "0.1.0"
__all__ = [
    "AdvGAN", "AdvGANConfig", "GAN", "GANConfig", "ConditionalGAN", "ConditionalGANConfig", "Pix2Pix", "Pix2PixConfig",
    "MinMaxGame", "MinMaxTrainer", "Player", "TrainConfig", "DivergenceError", "History",
    "ClassifierConfig", "accuracy", "train_classifier",
    "data", "losses", "metrics", "nets", "pairs",
]
