"""The ``Attack`` protocol and the base class that owns everything but the algorithm.

``attack(model, x, y, *, target=None) -> x_adv``: x in [0, 1] of shape (N, C, H, W), y int64 labels.
The result is a new tensor inside the threat model and the pixel bounds; x and the model's weights
are untouched; the model's train/eval mode and its parameters' ``requires_grad`` flags are restored.
A subclass declares its flags as class variables and implements only ``run`` (torchattacks' split;
foolbox's final ``__call__``). ``generate`` is the trusted entry of library-internal loops.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, final, runtime_checkable

import torch
from torch import nn

from .checks import check_images, check_labels, check_targets, compute_dtype
from .classifier import Classifier, data_chans_of, num_classes_of
from .outputs import select_output
from .threat import ThreatModel


@runtime_checkable
class AttackLike(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 target: torch.Tensor | None = None) -> torch.Tensor: ...


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


class NonDifferentiableWarning(UserWarning):
    """The model's output has no gradient with respect to its input: gradient attacks cannot work on it."""


def input_gradient(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of ``loss`` w.r.t. the input only (never accumulates into parameters).

    A model that cannot be differentiated (it detaches, rounds through NumPy, runs under ``no_grad``)
    gives a zero gradient and a :class:`NonDifferentiableWarning` instead of an autograd error:
    gradient attacks then leave the input as it is, and ``evaluate`` flags it as gradient masking.
    """
    g: torch.Tensor | None = None
    if loss.requires_grad:
        try:
            (g,) = torch.autograd.grad(loss, [x], allow_unused=True)
        except (RuntimeError, NotImplementedError) as e:  # a backward that is not implemented / not differentiable
            if isinstance(e, torch.OutOfMemoryError) or not any(w in str(e).lower() for w in ("grad", "derivative", "backward")):
                raise
    if g is None:
        warnings.warn("the model's output does not depend differentiably on its input (no gradient reaches the "
                      "image): gradient attacks cannot work on it and their results overstate robustness (gradient "
                      "masking). Use a gradient-free attack, or fix the model's forward (no .detach(), NumPy or "
                      "torch.no_grad() inside).", NonDifferentiableWarning, stacklevel=3)
        return torch.zeros_like(x)
    return g


@contextlib.contextmanager
def autograd_enabled() -> Iterator[None]:
    """Autograd on, even when the caller runs under ``torch.inference_mode()`` or ``torch.no_grad()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def normal_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or a clone when it is an inference tensor (those cannot take part in autograd)."""
    return t.clone() if t.is_inference() else t


def random_targets(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly random target classes different from ``y``."""
    off = torch.randint(1, num_classes, y.shape, device=y.device, generator=generator)
    return (y + off) % num_classes


class Attack:
    """Base class of every attack. Subclasses set the class variables below and implement ``run``."""

    #: registry / report name
    name: ClassVar[str] = "attack"
    supports_targeted: ClassVar[bool] = True
    supports_untargeted: ClassVar[bool] = True
    #: evaluate(): at a budget large enough, a working attack of this kind fools ~every input
    strong: ClassVar[bool] = False
    #: False for gradient-free attacks (score- or decision-based search, random noise)
    uses_gradients: ClassVar[bool] = True
    #: False when the attack never looks at the model's outputs (random noise): not a search
    queries_model: ClassVar[bool] = True

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
        other = copy.copy(self)
        other.threat = ThreatModel(norm=self.threat.norm, eps=eps, bounds=self.threat.bounds)
        other._on_eps_change()
        return other

    def _on_eps_change(self) -> None:
        """Hook for subclasses whose step sizes derive from eps."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for reports."""
        return {"name": self.name, **self.threat.to_dict()}

    # ------------------------------------------------------------------ the protocol
    @final
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        """Validate, freeze the model, ``run``, project into the threat model, restore the model's modes."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (e.g. attacks.Classifier), got {type(model).__name__}.")
        self._check_call(target)
        x = check_images(x, channels=data_chans_of(model), bounds=self.threat.bounds)
        num_classes = num_classes_of(model)
        y = check_labels(y, x.shape[0], num_classes)
        if target is not None:
            target = check_targets(target, y, num_classes)
        device = _device_of(model, x)
        with autograd_enabled():  # attacks work under torch.inference_mode() too (inputs cloned out of it)
            x_in = normal_tensor(x.detach().to(device=device, dtype=compute_dtype(model)))
            y_in = normal_tensor(y.to(device))
            t_in = normal_tensor(target.to(device)) if target is not None else None
            with frozen_eval(model):
                _check_logits_shape(model, x_in, num_classes)
                x_adv = self._run_projected(model, x_in, y_in, t_in)
            out = x_adv.to(device=x.device, dtype=x.dtype)
            if out.dtype != x_adv.dtype:  # rounding to a lower precision must not leave the threat model
                out = self.threat.project(x, out)
            return normal_tensor(out)

    @final
    def generate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        """The trusted entry for library loops whose batches were validated already (e.g. training).

        No input validation and no logits-shape probe; x, y (and target) must be on the model's
        device. The same freezing (eval, no parameter gradients, modes restored), projection and
        detach as ``__call__``.
        """
        with autograd_enabled(), frozen_eval(model):
            return self._run_projected(model, normal_tensor(x.detach()), normal_tensor(y),
                                       normal_tensor(target) if target is not None else None)

    def _run_projected(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       target: torch.Tensor | None) -> torch.Tensor:
        try:
            out = self.run(model, x, y, target)
        except (TypeError, AttributeError, RuntimeError, IndexError) as e:
            _explain_non_tensor_output(model, x, e)
            raise
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{type(self).__name__}.run returned {got} for inputs of shape {tuple(x.shape)}; "
                             "an attack must return a tensor of the input's shape.")
        return self.threat.project(x, out.detach().to(x.dtype)).detach()

    def _check_call(self, target: torch.Tensor | None) -> None:
        """Hook for adapters: refuse a call mode (targeted / untargeted) before any work."""
        if target is not None and not self.supports_targeted:
            raise ValueError(f"{type(self).__name__} does not support targeted attacks; call it without target=.")
        if target is None and not self.supports_untargeted:
            raise ValueError(f"{type(self).__name__} only supports targeted attacks; pass target=.")

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """The algorithm: model is frozen and in eval mode, inputs are validated and on the model's device."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:g}, norm={self.norm!r})"


@dataclass(frozen=True)
class AttackTraits:
    """What ``evaluate()`` knows about an attack: its declared flags, or safe defaults for a plain callable."""

    name: str
    eps: float
    norm: str
    threat: ThreatModel
    supports_targeted: bool = True
    supports_untargeted: bool = True
    strong: bool = False
    uses_gradients: bool = True
    queries_model: bool = True

    @property
    def gradient_free_search(self) -> bool:
        """A score- or decision-based search (Square, Boundary...): gradient-free but not random noise."""
        return not self.uses_gradients and self.queries_model


def traits_of(attack: object) -> AttackTraits:
    """The flags of an ``Attack``; for any other callable with ``eps``/``norm``: conservative defaults
    (not strong, treated as a gradient attack, the [0, 1] pixel box)."""
    if isinstance(attack, Attack):
        cls = type(attack)
        return AttackTraits(cls.name, attack.eps, attack.norm, attack.threat, cls.supports_targeted,
                            cls.supports_untargeted, cls.strong, cls.uses_gradients, cls.queries_model)
    eps, norm = getattr(attack, "eps"), getattr(attack, "norm")  # noqa: B009 (callers checked hasattr)
    threat = ThreatModel(norm=norm, eps=eps)
    return AttackTraits(type(attack).__name__, threat.eps, threat.norm, threat)


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


def _explain_non_tensor_output(model: nn.Module, x: torch.Tensor, error: BaseException) -> None:
    """After an attack failed: if the model does not return a tensor, raise a TypeError saying what it returns."""
    try:
        with torch.no_grad():
            out = model(x[:1])
    except Exception:  # noqa: BLE001 - the original error is the one to show
        return
    if not isinstance(out, torch.Tensor):
        try:
            select_output(out, None)
        except TypeError as clear:
            raise clear from error


def _device_of(model: nn.Module, x: torch.Tensor) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return x.device


# ---------------------------------------------------------------------- registry
_ATTACKS: dict[str, Callable[..., Attack]] = {}
_PREFIXES: dict[str, Callable[..., Attack]] = {}


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    """Class decorator: make ``make_attack(name, **kwargs)`` build this attack."""
    def deco(cls: type[Attack]) -> type[Attack]:
        _ATTACKS[name] = cls
        return cls

    return deco


def register_attack_prefix(prefix: str, factory: Callable[..., Attack]) -> None:
    """``make_attack(f"{prefix}:{arg}", **kwargs)`` calls ``factory(arg, **kwargs)`` (e.g. ``foolbox:LinfPGD``)."""
    _PREFIXES[prefix] = factory


def available_attacks() -> list[str]:
    return sorted(_ATTACKS)


def make_attack(name: str, **kwargs: Any) -> Attack:
    """Build an attack by name (``"pgd"``, ``"fgsm"``, ``"cw"``, ``"noise"``, ``"foolbox:LinfPGD"``...)."""
    prefix, sep, rest = name.partition(":") if isinstance(name, str) else ("", "", "")
    if sep and prefix in _PREFIXES:
        return _PREFIXES[prefix](rest, **kwargs)
    if name not in _ATTACKS:
        prefixes = "".join(f", or {p}:<AttackName>" for p in sorted(_PREFIXES))
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(available_attacks())}{prefixes}.")
    return _ATTACKS[name](**kwargs)
