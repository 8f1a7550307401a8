"""The ``Attack`` protocol and the base class that owns everything but the algorithm.

``attack(model, x, y, *, target=None) -> x_adv``: x in [0, 1] of shape (N, C, H, W), y int64 labels.
The result is a new tensor inside the threat model and the pixel bounds; x and the model's weights
are untouched; the model's train/eval mode and its parameters' ``requires_grad`` flags are restored.
A subclass implements only ``run`` (torchattacks' split; foolbox's final ``__call__``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from .checks import check_images, check_labels, check_targets
from .classifier import Classifier, data_chans_of, num_classes_of
from .threat import ThreatModel


@runtime_checkable
class AttackLike(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor: ...


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside; the previous modes and flags restored after."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t
        for p, f in flags:
            p.requires_grad_(f)


def input_gradient(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of ``loss`` w.r.t. the input only (never accumulates into parameters)."""
    (g,) = torch.autograd.grad(loss, [x])
    return g


def random_targets(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly random target classes different from ``y``."""
    off = torch.randint(1, num_classes, y.shape, device=y.device, generator=generator)
    return (y + off) % num_classes


class Attack:
    """Base class of every attack. Subclasses set ``name`` and implement ``run``."""

    name: ClassVar[str] = "attack"
    supports_targeted: ClassVar[bool] = True
    #: True when the attack guarantees the threat model itself (e.g. minimal-norm attacks report their own)
    needs_projection: ClassVar[bool] = True

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        self.threat = ThreatModel(norm=norm, eps=eps, bounds=bounds)

    @property
    def eps(self) -> float:
        return self.threat.eps

    @property
    def norm(self) -> str:
        return self.threat.norm

    def with_eps(self, eps: float) -> Attack:
        """A copy of this attack with another budget (used by epsilon sweeps)."""
        import copy

        other = copy.copy(self)
        other.threat = ThreatModel(norm=self.threat.norm, eps=eps, bounds=self.threat.bounds)
        other._on_eps_change()
        return other

    def _on_eps_change(self) -> None:
        """Hook for subclasses whose step sizes derive from eps."""

    def describe(self) -> dict:
        """JSON-able description for reports."""
        return {"name": self.name, **self.threat.to_dict()}

    # ------------------------------------------------------------------ the protocol
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (e.g. attacks.Classifier), got {type(model).__name__}.")
        x = check_images(x, channels=data_chans_of(model), bounds=self.threat.bounds)
        num_classes = num_classes_of(model)
        y = check_labels(y, x.shape[0], num_classes)
        if target is not None:
            if not self.supports_targeted:
                raise ValueError(f"{type(self).__name__} does not support targeted attacks; call it without target=.")
            target = check_targets(target, y, num_classes)
        device = _device_of(model, x)
        x_in = x.detach().to(device)
        y_in = y.to(device)
        t_in = target.to(device) if target is not None else None
        with frozen_eval(model):
            _check_logits_shape(model, x_in, num_classes)
            x_adv = self.run(model, x_in, y_in, t_in)
            if self.needs_projection:
                x_adv = self.threat.project(x_in, x_adv.detach())
        return x_adv.detach().to(device=x.device, dtype=x.dtype)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """The algorithm: model is frozen and in eval mode, inputs are validated and on the model's device."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:g}, norm={self.norm!r})"


def _check_logits_shape(model: nn.Module, x: torch.Tensor, num_classes: int | None) -> None:
    """One-image forward (no grad, no host sync) of a Classifier: it must return (N, num_classes) logits."""
    if num_classes is None or not isinstance(model, Classifier):
        return
    with torch.no_grad():
        out = model(x[:1])
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != num_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the model returned {shape} for one image but declares num_classes={num_classes}; it must return "
            f"(N, {num_classes}) logits. Fix num_classes or the model's head."
        )


def _device_of(model: nn.Module, x: torch.Tensor) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return x.device


# ---------------------------------------------------------------------- registry
_ATTACKS: dict[str, Callable[..., Attack]] = {}


def register_attack(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        _ATTACKS[name] = cls
        return cls

    return deco


def available_attacks() -> list[str]:
    return sorted(_ATTACKS)


def make_attack(name: str, **kwargs) -> Attack:
    """Build an attack by name (``"pgd"``, ``"fgsm"``, ``"cw"``, ``"noise"``, ``"foolbox:LinfPGD"``...)."""
    if name.startswith("foolbox:"):
        from .foolbox_bridge import FoolboxAttack

        return FoolboxAttack(name.split(":", 1)[1], **kwargs)
    if name not in _ATTACKS:
        raise ValueError(
            f"unknown attack {name!r}; valid: {', '.join(available_attacks())}, or foolbox:<AttackName>."
        )
    return _ATTACKS[name](**kwargs)
