"""AdvGAN (the attacker), its :class:`attacks.Attack` (``GeneratorAttack``) and black-box AdvGAN."""
from .blackbox import MODES, BlackBox, BlackBoxAdvGAN, DynamicDistillationGame, distill_labels
from .callbacks import AdvGANValidation, QueryCount
from .config import GENERATORS, AdvGANConfig, build_generator, generator_shape
from .game import KIND, AdvGANGame
from .generator_attack import GeneratorAttack, generator_delta
from .model import AdvGAN

__all__ = ["AdvGAN", "AdvGANConfig", "AdvGANGame", "GENERATORS", "KIND", "build_generator", "generator_shape", "GeneratorAttack",
           "generator_delta", "AdvGANValidation", "QueryCount", "BlackBox", "BlackBoxAdvGAN", "DynamicDistillationGame",
           "distill_labels", "MODES"]
