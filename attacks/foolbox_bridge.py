"""Any foolbox 3 attack, selected by its class name, run through our ``Attack`` protocol.

``FoolboxAttack("LinfPGD", eps=0.3, steps=40)(clf, x, y)``. The model is wrapped with
``foolbox.PyTorchModel(model, bounds=(0, 1))`` on the model's device; the Classifier already holds
its normalization, and the base class has frozen its parameters (eval mode, ``requires_grad=False``),
so foolbox's ``loss.backward()`` cannot leave gradients in the model. Foolbox's clipped result is
projected once more into our threat model by the base class.

Each foolbox class gets its own subclass of ``FoolboxAttack`` (built once, cached), so the flags are
class variables that tell the truth about that foolbox attack (targeted or not, gradient-free...).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from .base import Attack, register_attack_prefix
from .seeding import check_seed

# attacks whose foolbox implementation ignores or refuses TargetedMisclassification
_UNTARGETED_ONLY = {
    "L1FastGradientAttack", "L2FastGradientAttack", "LinfFastGradientAttack",
    "NewtonFoolAttack", "VirtualAdversarialAttack", "L2DeepFoolAttack", "LinfDeepFoolAttack",
}
_TARGETED_ONLY = {"GenAttack"}
# score- / decision-based searches (they never ask for a gradient)
_GRADIENT_FREE = {
    "BoundaryAttack", "HopSkipJumpAttack", "GenAttack", "PointwiseAttack", "SaltAndPepperNoiseAttack",
    "BinarySearchContrastReductionAttack", "LinearSearchContrastReductionAttack", "LinearSearchBlendedUniformNoiseAttack",
    "GaussianBlurAttack", "InversionAttack", "DatasetAttack", "BinarizationRefinementAttack", "SpatialAttack",
    "L2ContrastReductionAttack",
}
# random noise: a baseline, not a search
_NOISE = {"BaseAdditiveNoiseAttack", "BaseRepeatedAdditiveNoiseAttack"}


def foolbox_attack_names() -> list[str]:
    """Names accepted by ``FoolboxAttack`` (foolbox 3 attack classes and their aliases)."""
    import foolbox.attacks as fa

    out = []
    for n in dir(fa):
        obj = getattr(fa, n)
        if inspect.isclass(obj) and issubclass(obj, fa.base.Attack) and not inspect.isabstract(obj) and n != "Repeated":
            out.append(n)
    return sorted(out)


def foolbox_attack_class(name: str) -> type:
    """The foolbox attack class called ``name``; ValueError listing the valid names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"foolbox attack name must be a string such as 'LinfPGD', got {type(name).__name__}.")
    names = foolbox_attack_names()
    if name not in names:
        lower = {n.lower(): n for n in names}
        hint = f" Did you mean {lower[name.lower()]!r}?" if name.lower() in lower else ""
        raise ValueError(f"unknown foolbox attack {name!r}.{hint} Valid names: {', '.join(names)}.")
    import foolbox.attacks as fa

    found: type = getattr(fa, name)
    return found


def _norm_of(distance: Any) -> str | None:
    p = getattr(distance, "p", None)
    if p is None:
        return None
    if p == float("inf"):
        return "linf"
    if p == 2:
        return "l2"
    return None


class FoolboxAttack(Attack):
    """A foolbox 3 attack by class name (e.g. ``"LinfPGD"``, ``"FGSM"``, ``"L2CarliniWagnerAttack"``).

    Args:
        name: foolbox class name or alias (see ``foolbox_attack_names()``).
        eps: budget passed to foolbox as ``epsilons`` and used for our threat model.
        norm: threat-model norm; default taken from the foolbox attack's distance (L-inf or L2).
            Required for L0/L1 attacks and attacks without a distance (their result is projected
            into this norm's ball).
        seed: seeds torch's global RNG (forked, restored afterwards) for the attack's randomness.
        **kwargs: passed to the foolbox attack's constructor (e.g. ``steps=40``).
    """

    name = "foolbox"

    fb_class: ClassVar[type | None] = None  # set on the per-foolbox-class subclasses

    def __new__(cls, name: str | None = None, *args: Any, **kwargs: Any) -> FoolboxAttack:
        if cls.fb_class is None:  # FoolboxAttack(...) itself: pick the subclass of this foolbox attack
            if name is None:
                raise TypeError("FoolboxAttack needs the foolbox attack's class name, e.g. FoolboxAttack('LinfPGD', eps=0.3).")
            cls = _flavour(foolbox_attack_class(name))
        return object.__new__(cls)

    def __init__(self, name: str, eps: float = 0.3, *, norm: str | None = None, seed: int | None = None,
                 bounds: tuple[float, float] = (0.0, 1.0), **kwargs: Any) -> None:
        cls = foolbox_attack_class(name)
        self.seed = check_seed(seed)
        import foolbox

        params = inspect.signature(cls).parameters
        if "distance" in params and "distance" not in kwargs and norm is not None:
            kwargs["distance"] = foolbox.distances.linf if norm == "linf" else foolbox.distances.l2
        elif "distance" in params and "distance" not in kwargs:
            kwargs["distance"] = foolbox.distances.linf
            norm = "linf"
        try:
            attack = cls(**kwargs)
        except TypeError as e:
            raise TypeError(f"foolbox {name} does not accept these arguments ({e}); its signature is "
                            f"{cls.__name__}{inspect.signature(cls)}.") from None
        except ImportError as e:
            raise ImportError(f"foolbox {name} needs an extra package: {e}. Install it or choose another attack.") from e
        dist = getattr(attack, "_distance", None) or _safe_distance(attack)
        inferred = _norm_of(dist)
        if norm is None:
            if inferred is None:
                raise ValueError(f"foolbox {name} works with {dist or 'no'} distance; our threat models are 'linf' "
                                 "and 'l2': pass norm='linf' or norm='l2' to project its result into that ball.")
            norm = inferred
        super().__init__(eps, norm, bounds=bounds)
        self.fb_name = name
        self.fb_kwargs = {k: v for k, v in kwargs.items() if k != "distance"}
        self.fb_attack = attack
        self.uses_epsilons = isinstance(attack, foolbox.attacks.base.AttackWithDistance)

    def describe(self) -> dict[str, Any]:
        kw = {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v) for k, v in self.fb_kwargs.items()}
        return {**super().describe(), "name": f"foolbox:{self.fb_name}", "foolbox_kwargs": kw, "seed": self.seed}

    def __repr__(self) -> str:
        return f"FoolboxAttack({self.fb_name!r}, eps={self.eps:g}, norm={self.norm!r})"

    def _check_call(self, target: torch.Tensor | None) -> None:
        if target is not None and not self.supports_targeted:
            raise ValueError(f"foolbox {self.fb_name} does not support targeted attacks; call it without target= or "
                             "use e.g. FoolboxAttack('LinfPGD', ...) / our PGD for targeted runs.")
        if target is None and not self.supports_untargeted:
            raise ValueError(f"foolbox {self.fb_name} only supports targeted attacks; pass target=.")

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        import foolbox
        from foolbox.models.pytorch import PyTorchModel

        fmodel = PyTorchModel(model, bounds=self.threat.bounds, device=x.device)
        criterion: Any
        if target is not None:
            criterion = foolbox.criteria.TargetedMisclassification(target)
        else:
            criterion = foolbox.criteria.Misclassification(y)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=self.seed is not None), torch.enable_grad():
            if self.seed is not None:
                torch.manual_seed(self.seed)
            try:
                if self.uses_epsilons:
                    _, clipped, _ = self.fb_attack(fmodel, x.contiguous(), criterion, epsilons=self.eps)
                else:
                    _, clipped, _ = self.fb_attack(fmodel, x.contiguous(), criterion)
            except ValueError as e:
                if "unsupported criterion" in str(e):
                    raise ValueError(f"foolbox {self.fb_name} does not support this criterion "
                                     f"({'targeted' if target is not None else 'untargeted'}).") from e
                raise
        out: torch.Tensor = clipped.to(x.dtype)
        return out


@functools.cache
def _flavour(fb_cls: type) -> type[FoolboxAttack]:
    """The subclass of FoolboxAttack for one foolbox attack class, with its flags as class variables."""
    names = {c.__name__ for c in fb_cls.__mro__}
    noise = bool(names & _NOISE)
    flags = {
        "fb_class": fb_cls,
        "supports_targeted": not (names & _UNTARGETED_ONLY),
        "supports_untargeted": not (names & _TARGETED_ONLY),
        "strong": any(k in fb_cls.__name__ for k in ("ProjectedGradientDescent", "BasicIterative")),
        "uses_gradients": not (noise or names & _GRADIENT_FREE),
        "queries_model": not noise,
        "__module__": __name__,
        "__doc__": f"FoolboxAttack running foolbox's {fb_cls.__name__}.",
    }
    return type(f"FoolboxAttack_{fb_cls.__name__}", (FoolboxAttack,), flags)


def _factory(name: str, **kwargs: Any) -> FoolboxAttack:
    return FoolboxAttack(name, **kwargs)


register_attack_prefix("foolbox", _factory)


def _safe_distance(attack: Any) -> Any:
    try:
        return attack.distance
    except (AttributeError, ValueError):
        return None
