"""PGD (Madry et al. 2018): projected steepest ascent on the attack loss, L-inf or L2.

``keep="best"`` (evaluation) keeps the best adversarial example per sample over all iterates and
restarts: the first iterate that fools the model (or hits the target) is kept; for samples never
fooled, the iterate with the highest attack loss. With ``early_stop=True`` fooled samples leave the
batch, so later steps and restarts compute only on the samples still standing.

``keep="last"`` is Madry's training PGD: random start, ``steps`` steps, the last iterate, nothing else
(``seed=None`` draws the start from the global RNG, which a training checkpoint restores).

Options for transfer attacks: ``momentum=μ`` accumulates L1-normalised gradients (MI-FGSM, Dong et
al. 2018) and ``diversity=p`` differentiates at a randomly resized and padded input with probability
p per step (DI, Xie et al. 2019).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import Attack, input_gradient, register_attack
from .checks import check_choice, check_fraction, check_number, check_positive_int
from .diversity import diverse_input
from .losses import attack_loss, is_adversarial
from .seeding import check_seed, cpu_generator, make_generator
from .threat import _bcast

_TINY = 1e-12


@dataclass
class _Best:
    """Per-sample best over iterates and restarts: the first fooling iterate wins, else the highest loss."""

    adv: torch.Tensor
    loss: torch.Tensor
    fooled: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor) -> _Best:
        n = x.shape[0]
        return cls(x.clone(), torch.full((n,), float("-inf"), device=x.device),
                   torch.zeros(n, dtype=torch.bool, device=x.device))

    def update(self, idx: torch.Tensor, adv: torch.Tensor, loss: torch.Tensor, succ: torch.Tensor) -> None:
        """No host sync: index_copy_ of the samples ``idx``."""
        was = self.fooled[idx]
        better = ~was & ~succ & (loss > self.loss[idx])
        upd = (succ & ~was) | better
        self.adv.index_copy_(0, idx, torch.where(_bcast(upd, adv), adv.to(self.adv.dtype), self.adv[idx]))
        self.loss.index_copy_(0, idx, torch.where(better, loss, self.loss[idx]))
        self.fooled.index_copy_(0, idx, was | succ)


@dataclass
class _Active:
    """The samples one restart still attacks (all of them, or the unfooled ones with early stopping)."""

    idx: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    adv: torch.Tensor
    velocity: torch.Tensor | None  # MI-FGSM's accumulated gradient

    def select(self, keep: torch.Tensor) -> _Active:
        return _Active(self.idx[keep], self.x[keep], self.y[keep], None if self.target is None else self.target[keep],
                       self.adv[keep], None if self.velocity is None else self.velocity[keep])


@register_attack("pgd")
class PGD(Attack):
    """Projected gradient descent with random start, restarts and optional early stopping.

    Args:
        eps: budget in pixel units; norm: ``"linf"`` or ``"l2"``.
        steps: gradient steps per restart.
        step_size: step length; default ``2.5 * eps / steps`` (Madry et al.).
        random_start: start each restart from a uniformly random point of the ball.
        restarts: independent runs; the best result per sample is kept.
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (C&W logit margin).
        early_stop: stop computing on samples already fooled.
        seed: seeds the random starts (``None``: global RNG).
        keep: ``"best"`` (evaluation, see above) or ``"last"`` (training PGD: the last iterate;
            needs ``restarts=1`` and ``early_stop=False``).
        momentum: MI-FGSM's decay μ (0: none; Dong et al. use 1.0).
        diversity: DI's probability of transforming the input at a step (0: never; Xie et al. use 0.5).
    """

    name = "pgd"
    strong = True

    def __init__(self, eps: float = 0.3, norm: str = "linf", steps: int = 40, step_size: float | None = None,
                 random_start: bool = True, restarts: int = 1, loss: str = "ce", early_stop: bool = False, *,
                 seed: int | None = None, bounds: tuple[float, float] = (0.0, 1.0), keep: str = "best",
                 momentum: float = 0.0, diversity: float = 0.0) -> None:
        super().__init__(eps, norm, bounds=bounds)
        self.steps = check_positive_int(steps, "steps")
        self.restarts = check_positive_int(restarts, "restarts")
        self._step_size = None if step_size is None else check_number(
            step_size, "step_size", positive=True, hint=" Pass None for the default 2.5 * eps / steps.")
        self.random_start = bool(random_start)
        self.loss = check_choice(loss, "loss", ("ce", "margin"))
        self.early_stop = bool(early_stop)
        self.seed = check_seed(seed)
        self.keep = check_choice(keep, "keep", ("best", "last"))
        if self.keep == "last" and (self.restarts != 1 or self.early_stop):
            raise ValueError("keep='last' returns the last iterate of one run: use restarts=1 and early_stop=False "
                             "(or keep='best').")
        self.momentum = check_number(momentum, "momentum", minimum=0.0, hint=" 0: plain PGD; MI-FGSM uses 1.0.")
        self.diversity = check_fraction(diversity, "diversity")

    @property
    def step_size(self) -> float:
        return self._step_size if self._step_size is not None else 2.5 * self.eps / self.steps

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "steps": self.steps, "step_size": self.step_size, "random_start": self.random_start,
                "restarts": self.restarts, "loss": self.loss, "early_stop": self.early_stop, "seed": self.seed,
                "keep": self.keep, "momentum": self.momentum, "diversity": self.diversity}

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v, d in (("keep", self.keep, "best"), ("momentum", self.momentum, 0.0),
                                                       ("diversity", self.diversity, 0.0)) if v != d)
        return (f"PGD(eps={self.eps:g}, norm={self.norm!r}, steps={self.steps}, step_size={self.step_size:g}, "
                f"restarts={self.restarts}, loss={self.loss!r}, early_stop={self.early_stop}{extra})")

    # ------------------------------------------------------------------ the algorithm
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        gen = make_generator(x.device, self.seed)
        shapes = cpu_generator(self.seed, 1)  # DI's random sizes
        if self.keep == "last":
            return self._run_last(model, x, y, target, gen, shapes)
        n = x.shape[0]
        best = _Best.start(x)
        for _ in range(self.restarts):
            # draw the start for the whole batch so plain and early-stop runs share the same randomness
            delta = self.threat.random_delta(x, gen) if self.random_start else None
            idx = torch.arange(n, device=x.device)
            if self.early_stop:
                idx = idx[~best.fooled]
                if idx.numel() == 0:
                    break
            xs = x[idx]
            adv = xs.clone() if delta is None else self.threat.project(xs, xs + delta[idx])
            ts = target[idx] if target is not None else None
            self._one_run(model, _Active(idx, xs, y[idx], ts, adv, self._no_velocity(xs)), best, shapes)
        return best.adv

    def _no_velocity(self, x: torch.Tensor) -> torch.Tensor | None:
        return torch.zeros_like(x) if self.momentum > 0 else None

    def _run_last(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                  gen: torch.Generator | None, shapes: torch.Generator | None) -> torch.Tensor:
        adv = self.threat.project(x, x + self.threat.random_delta(x, gen)) if self.random_start else x.clone()
        run = _Active(torch.arange(0), x, y, target, adv, self._no_velocity(x))
        for _ in range(self.steps):
            _, _, grad = self._forward(model, run, shapes, need_grad=True)
            assert grad is not None
            self._step(run, grad)
        return run.adv

    def _one_run(self, model: nn.Module, run: _Active, best: _Best, shapes: torch.Generator | None) -> None:
        for step in range(self.steps + 1):
            last = step == self.steps
            logits, lvec, grad = self._forward(model, run, shapes, need_grad=not last)
            succ = is_adversarial(logits, run.y, run.target)
            best.update(run.idx, run.adv, lvec, succ)
            if grad is None:
                break
            if self.early_stop:
                keep = ~succ
                if not bool(keep.all()):
                    if not bool(keep.any()):
                        break
                    run, grad = run.select(keep), grad[keep]
            self._step(run, grad)

    def _forward(self, model: nn.Module, run: _Active, shapes: torch.Generator | None, *,
                 need_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits and per-sample loss at the iterate, and the loss gradient (DI: at a transformed input)."""
        with torch.enable_grad():  # attacks work even when called under torch.no_grad()
            adv = run.adv.detach().requires_grad_(need_grad)
            z = diverse_input(adv, self.diversity, shapes) if need_grad else adv
            logits = model(z).float()
            lvec = attack_loss(logits, run.y, run.target, self.loss)
            grad = input_gradient(lvec.sum(), adv) if need_grad else None
        run.adv = adv.detach()
        if z is not adv and self.keep == "best":  # success and the best loss are judged on the iterate itself
            with torch.no_grad():
                logits = model(run.adv).float()
                lvec = attack_loss(logits, run.y, run.target, self.loss)
        return logits.detach(), lvec.detach(), grad

    def _step(self, run: _Active, grad: torch.Tensor) -> None:
        if run.velocity is not None:  # MI-FGSM: g <- mu * g + grad / ||grad||_1
            l1 = grad.flatten(1).abs().sum(1)
            run.velocity = self.momentum * run.velocity + grad / _bcast(l1 + _TINY, grad)
            grad = run.velocity
        run.adv = self.threat.project(run.x, run.adv + self.step_size * self.threat.normalize_step(grad))
