"""Carlini & Wagner L2 (2017): minimise ||delta||_2^2 + c * margin in tanh space, binary search over c.

C&W is a minimal-norm attack: it returns, per sample, the smallest-L2 adversarial example it found
(or the last iterate at the largest c when it found none). Called through the ``Attack`` protocol,
the base class then projects the result into this attack's threat model (L2 ball of radius eps by
default), so a C&W example larger than eps is shrunk and may stop fooling the model.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Attack, input_gradient, register_attack
from .checks import check_number, check_positive_int
from .losses import cw_margin

_CLAMP = 1 - 1e-6


_C_MAX = 1e10  # the binary search's ceiling on the trade-off constant (and its "not found yet" sentinel)


@register_attack("cw")
class CW(Attack):
    """C&W-L2 with Adam in tanh space.

    Args:
        eps: threat-model budget the result is projected into (L2 by default).
        norm: threat-model norm (``"l2"`` default; ``"linf"`` projects the L2 solution into an L-inf ball).
        kappa: confidence margin (0: just cross the decision boundary).
        steps: Adam steps per binary-search round.
        binary_search_steps: rounds of the search over the trade-off constant c.
        initial_const: first c (finite, in (0, 1e10]).
        lr: Adam learning rate (in tanh space, finite).
        abort_early: stop a round when the objective has not improved for ``steps // 10`` steps.
    """

    name = "cw"
    strong = True

    def __init__(self, eps: float = 2.0, norm: str = "l2", *, kappa: float = 0.0, steps: int = 100,
                 binary_search_steps: int = 5, initial_const: float = 1.0, lr: float = 0.05,
                 abort_early: bool = True, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        # every number is checked before any work: an infinite constant or learning rate gives NaN images
        self.kappa = check_number(kappa, "kappa", minimum=0.0)
        self.steps = check_positive_int(steps, "steps")
        self.binary_search_steps = check_positive_int(binary_search_steps, "binary_search_steps")
        self.initial_const = check_number(initial_const, "initial_const", positive=True, maximum=_C_MAX,
                                          hint=" C&W's usual start is 1e-3 to 10.")
        self.lr = check_number(lr, "lr", positive=True)
        self.abort_early = bool(abort_early)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kappa": self.kappa, "steps": self.steps, "binary_search_steps": self.binary_search_steps,
                "initial_const": self.initial_const, "lr": self.lr, "abort_early": self.abort_early}

    def _to_pixels(self, w: torch.Tensor) -> torch.Tensor:
        lo, hi = self.threat.bounds
        return (torch.tanh(w) + 1) / 2 * (hi - lo) + lo

    def _to_tanh(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.threat.bounds
        return torch.atanh(((x - lo) / (hi - lo) * 2 - 1).clamp(-_CLAMP, _CLAMP))

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        n = x.shape[0]
        dev = x.device
        w0 = self._to_tanh(x)
        c = torch.full((n,), self.initial_const, device=dev)
        lower = torch.zeros(n, device=dev)
        upper = torch.full((n,), _C_MAX, device=dev)
        best_l2 = torch.full((n,), float("inf"), device=dev)
        best = x.clone()
        fallback = x.clone()
        patience = max(1, self.steps // 10)
        for _ in range(self.binary_search_steps):
            w = w0.clone()
            m = torch.zeros_like(w)
            v = torch.zeros_like(w)
            found = torch.zeros(n, dtype=torch.bool, device=dev)
            prev = float("inf")
            for t in range(1, self.steps + 1):
                with torch.enable_grad():
                    w.requires_grad_(True)
                    xa = self._to_pixels(w)
                    logits = model(xa)
                    l2 = (xa - x).flatten(1).pow(2).sum(1)
                    margin = cw_margin(logits, y, target, kappa=float("inf"))
                    obj = l2 + c * margin.clamp(min=-self.kappa)
                    g = input_gradient(obj.sum(), w)
                w = w.detach()
                xa = xa.detach()
                succ = (margin.detach() < 0) & (margin.detach() <= -self.kappa)
                l2d = l2.detach()
                improved = succ & (l2d < best_l2)
                best_l2 = torch.where(improved, l2d, best_l2)
                best = torch.where(improved.view(-1, 1, 1, 1), xa, best)
                found |= succ
                # Adam step (per-element state; bias-corrected)
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                mh = m / (1 - 0.9 ** t)
                vh = v / (1 - 0.999 ** t)
                w = w - self.lr * mh / (vh.sqrt() + 1e-8)
                if self.abort_early and t % patience == 0:
                    total = float(obj.detach().sum())
                    if total > prev * 0.9999:
                        break
                    prev = total
            fallback = xa
            # binary search on c: success -> smaller c, failure -> larger c
            upper = torch.where(found, torch.minimum(upper, c), upper)
            lower = torch.where(found, lower, torch.maximum(lower, c))
            c = torch.where(upper < _C_MAX / 10, (lower + upper) / 2, (c * 10).clamp(max=_C_MAX))
        return torch.where(torch.isfinite(best_l2).view(-1, 1, 1, 1), best, fallback)
