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
        channels_last: run the generator and its input batches in channels-last memory format.
        compile: ``torch.compile`` the generator on first use (True: inductor, or a backend name); the first
            call pays the compilation.
        in_chans: the generator's image channels (default: ``generator.in_chans``); other inputs are refused.

    Inference runs under ``torch.no_grad`` on contiguous (or channels-last) batches, one forward per batch.
    """

    name = "advgan"

    def __init__(self, generator: nn.Module, eps: float, norm: str = "linf", *, targeted: bool = False,
                 num_classes: int | None = None, batch_size: int = 256, seed: int = 0,
                 bounds: tuple[float, float] = (0.0, 1.0), channels_last: bool = False,
                 compile: bool | str = False, in_chans: int | None = None) -> None:
        super().__init__(eps, norm, bounds=bounds)
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be a torch.nn.Module, got {type(generator).__name__}.")
        Integer(1)(batch_size, "batch_size")
        if targeted and not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError("a targeted generator needs num_classes (>= 2) to draw random targets.")
        if not isinstance(channels_last, bool):
            raise TypeError(f"channels_last must be True or False, got {channels_last!r}.")
        if not isinstance(compile, (bool, str)) or compile == "":
            raise TypeError(f"compile must be True/False or a torch.compile backend name, got {compile!r}.")
        self.in_chans = in_chans if in_chans is not None else getattr(generator, "in_chans", None)
        self.generator = copy.deepcopy(generator).eval().requires_grad_(False)
        self.channels_last, self.compile = channels_last, compile
        if channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
        self._forward: nn.Module | None = None
        self.targeted = bool(targeted)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.seed = int(seed)

    def describe(self) -> dict:
        return {**super().describe(), "targeted": self.targeted, "batch_size": self.batch_size,
                "channels_last": self.channels_last, "compile": self.compile}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if target is not None and not self.targeted:
            raise ValueError(
                "this AdvGAN generator was trained untargeted (targeted=False) and cannot aim at a target; "
                "call it without target=, or train with AdvGANConfig(targeted=True)."
            )
        if self.targeted and target is None:
            g = torch.Generator().manual_seed(self.seed)
            target = random_targets(y.cpu(), int(self.num_classes or 0), generator=g).to(y.device)
        if self.in_chans is not None and x.dim() == 4 and x.shape[1] != self.in_chans:
            raise ValueError(f"this generator makes {self.in_chans}-channel perturbations, but the images have {x.shape[1]} "
                             "channel(s); train an AdvGAN for this classifier.")
        G = self._net(x.device)
        fmt = torch.channels_last if self.channels_last and x.dim() == 4 else torch.contiguous_format
        out = []
        # no_grad (not inference_mode): the adversarial images may feed a training step (fine-tuning)
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                xb = x[i:i + self.batch_size].contiguous(memory_format=fmt)
                tb = target[i:i + self.batch_size] if target is not None else None
                delta = generator_delta(G, xb, tb, self.threat)
                out.append((xb + delta).clamp_(*self.threat.bounds))
        return torch.cat(out) if len(out) > 1 else out[0].contiguous()

    def _net(self, device: torch.device) -> nn.Module:
        """The generator on ``device`` (compiled on first use when ``compile`` is set)."""
        if next(iter(self.generator.parameters()), torch.empty(0)).device != device:
            self.generator.to(device)
            self._forward = None
        if self._forward is None:
            if self.compile:
                backend = "inductor" if self.compile is True else str(self.compile)
                self._forward = torch.compile(self.generator, backend=backend, dynamic=False)  # type: ignore[assignment]
            else:
                self._forward = self.generator
        assert self._forward is not None
        return self._forward

    def __repr__(self) -> str:
        return f"GeneratorAttack(eps={self.eps:g}, norm={self.norm!r}, targeted={self.targeted})"
