"""PGD (Madry et al. 2018): projected steepest ascent on the attack loss, L-inf or L2.

Keeps the best adversarial example per sample over all iterates and restarts: the first iterate
that fools the model (or hits the target) is kept; for samples never fooled, the iterate with the
highest attack loss. With ``early_stop=True`` fooled samples leave the batch, so later steps and
restarts compute only on the samples still standing (real saved work on an undefended model).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Attack, input_gradient, register_attack
from .checks import check_choice, check_positive_int
from .losses import attack_loss, is_adversarial
from .noise import check_seed, make_generator


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
    """

    name = "pgd"
    strong = True  # evaluate(): a large-eps run of this attack should reach ~100 % success

    def __init__(self, eps: float = 0.3, norm: str = "linf", steps: int = 40, step_size: float | None = None,
                 random_start: bool = True, restarts: int = 1, loss: str = "ce", early_stop: bool = False, *,
                 seed: int | None = None, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        self.steps = check_positive_int(steps, "steps")
        self.restarts = check_positive_int(restarts, "restarts")
        if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0):
            raise ValueError(f"step_size must be a positive number or None (default 2.5 * eps / steps), got {step_size!r}.")
        self._step_size = None if step_size is None else float(step_size)
        self.random_start = bool(random_start)
        self.loss = check_choice(loss, "loss", ("ce", "margin"))
        self.early_stop = bool(early_stop)
        self.seed = check_seed(seed)

    @property
    def step_size(self) -> float:
        return self._step_size if self._step_size is not None else 2.5 * self.eps / self.steps

    def describe(self) -> dict:
        return {**super().describe(), "steps": self.steps, "step_size": self.step_size, "random_start": self.random_start,
                "restarts": self.restarts, "loss": self.loss, "early_stop": self.early_stop, "seed": self.seed}

    def __repr__(self) -> str:
        return (f"PGD(eps={self.eps:g}, norm={self.norm!r}, steps={self.steps}, step_size={self.step_size:g}, "
                f"restarts={self.restarts}, loss={self.loss!r}, early_stop={self.early_stop})")

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        gen = make_generator(x.device, self.seed)
        n = x.shape[0]
        best = x.clone()
        best_loss = torch.full((n,), float("-inf"), device=x.device)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            # draw the start for the whole batch so plain and early-stop runs share the same randomness
            delta = self.threat.random_delta(x, gen) if self.random_start else None
            idx = torch.arange(n, device=x.device)
            if self.early_stop:
                idx = idx[~fooled]
                if idx.numel() == 0:
                    break
            self._one_run(model, x, y, target, delta, idx, best, best_loss, fooled)
        return best

    def _one_run(self, model, x, y, target, delta, idx, best, best_loss, fooled) -> None:
        xs, ys = x[idx], y[idx]
        ts = target[idx] if target is not None else None
        adv = xs.clone() if delta is None else self.threat.project(xs, xs + delta[idx])
        for step in range(self.steps + 1):
            last = step == self.steps
            with torch.enable_grad():
                adv.requires_grad_(not last)
                logits = model(adv)
                lvec = attack_loss(logits, ys, ts, self.loss)
                grad = None if last else input_gradient(lvec.sum(), adv)
            adv = adv.detach()
            succ = is_adversarial(logits.detach(), ys, ts)
            self._keep_best(idx, adv, lvec.detach().float(), succ, best, best_loss, fooled)
            if last:
                break
            if self.early_stop:
                keep = ~succ
                if not bool(keep.all()):
                    if not bool(keep.any()):
                        break
                    idx, xs, ys, adv, grad = idx[keep], xs[keep], ys[keep], adv[keep], grad[keep]
                    ts = ts[keep] if ts is not None else None
            adv = self.threat.project(xs, adv + self.step_size * self.threat.normalize_step(grad))

    @staticmethod
    def _keep_best(idx, adv, lvec, succ, best, best_loss, fooled) -> None:
        """Update the per-sample best (no host sync): first fooling iterate wins, else the highest loss."""
        was = fooled[idx]
        new_fooled = succ & ~was
        better = ~was & ~succ & (lvec > best_loss[idx])
        upd = new_fooled | better
        shape = (-1,) + (1,) * (adv.dim() - 1)
        best.index_copy_(0, idx, torch.where(upd.view(shape), adv.to(best.dtype), best[idx]))
        best_loss.index_copy_(0, idx, torch.where(better, lvec, best_loss[idx]))
        fooled.index_copy_(0, idx, was | succ)
