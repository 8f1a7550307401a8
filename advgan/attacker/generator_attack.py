"""A trained AdvGAN generator as an :class:`attacks.Attack`: one generator forward per batch.

``AdvGAN(...).as_attack()`` returns a :class:`GeneratorAttack`. L-inf: ``delta = eps * G(x)`` with
``G(x)`` in [-1, 1] (inside the ball by construction; ``with_eps`` rescales the same generator to
another budget). L2: ``delta`` is ``G(x)`` projected into the eps-ball. Then ``x_adv = clip(x + delta, 0, 1)``.

Targets: a generator trained with ``targeted=True`` aims at ``target=`` when given; called without
``target`` it draws a random target different from each label (seeded), so untargeted evaluation
still works. A generator trained untargeted refuses ``target=`` (it cannot aim).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from attacks.base import Attack, random_targets

from ..config import Integer


def generator_delta(generator: nn.Module, x: torch.Tensor, target: torch.Tensor | None, threat) -> torch.Tensor:
    """The perturbation for ``x`` inside ``threat``'s ball (differentiable w.r.t. the generator)."""
    raw = generator(x, target) if target is not None else generator(x)
    if threat.norm == "linf":
        return threat.eps * raw
    return threat.project_delta(raw)


class GeneratorAttack(Attack):
    """Attack with a (frozen copy of a) trained perturbation generator.

    Args:
        generator: ``G(x [, target]) -> [-1, 1]`` of x's shape.
        eps, norm: the threat model the generator was trained for.
        targeted: whether ``generator`` is target-conditioned.
        num_classes: number of classes (to draw random targets).
        batch_size: images per generator forward.
        seed: seeds the random targets drawn when a targeted generator is called without ``target``.
    """

    name = "advgan"

    def __init__(self, generator: nn.Module, eps: float, norm: str = "linf", *, targeted: bool = False,
                 num_classes: int | None = None, batch_size: int = 256, seed: int = 0,
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be a torch.nn.Module, got {type(generator).__name__}.")
        Integer(1)(batch_size, "batch_size")
        if targeted and not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError("a targeted generator needs num_classes (>= 2) to draw random targets.")
        self.generator = copy.deepcopy(generator).eval().requires_grad_(False)
        self.targeted = bool(targeted)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.seed = int(seed)

    def describe(self) -> dict:
        return {**super().describe(), "targeted": self.targeted, "batch_size": self.batch_size}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if target is not None and not self.targeted:
            raise ValueError(
                "this AdvGAN generator was trained untargeted (targeted=False) and cannot aim at a target; "
                "call it without target=, or train with AdvGANConfig(targeted=True)."
            )
        if self.targeted and target is None:
            g = torch.Generator().manual_seed(self.seed)
            target = random_targets(y.cpu(), int(self.num_classes or 0), generator=g).to(y.device)
        self.generator.to(x.device)
        out = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                xb = x[i:i + self.batch_size]
                tb = target[i:i + self.batch_size] if target is not None else None
                delta = generator_delta(self.generator, xb, tb, self.threat)
                out.append((xb + delta).clamp(*self.threat.bounds))
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"GeneratorAttack(eps={self.eps:g}, norm={self.norm!r}, targeted={self.targeted})"
