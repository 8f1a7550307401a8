"""AdvGAN (the attacker), its :class:`attacks.Attack` (``GeneratorAttack``) and black-box AdvGAN."""
from .blackbox import MODES, BlackBox, BlackBoxAdvGAN, DynamicDistillationGame, distill_labels
from .generator_attack import GeneratorAttack, generator_delta
from .model import GENERATORS, KIND, AdvGAN, AdvGANConfig, AdvGANGame, build_generator

__all__ = ["AdvGAN", "AdvGANConfig", "AdvGANGame", "GENERATORS", "KIND", "build_generator", "GeneratorAttack",
           "generator_delta", "BlackBox", "BlackBoxAdvGAN", "DynamicDistillationGame", "distill_labels", "MODES"]
