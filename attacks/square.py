"""Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): score-based, gradient-free.

A random search on the margin loss ``f_y - max_{k != y} f_k`` (targeted: ``max_{k != t} f_k - f_t``)
that uses only the model's outputs. Each iteration proposes a change of the current best perturbation
inside a random square window of side ``s`` and keeps it when the loss goes down; an input is queried
only while it is still robust. The fraction ``p`` of pixels a window covers starts at ``p_init`` and is
halved at the paper's iterations {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000} of a 10,000-query
schedule, rescaled to the budget.

L-inf (the paper's Algorithm 2): start from vertical stripes of +-eps (one random sign per column
and channel); a proposal sets the window to x +- eps, one random sign per channel.

L2 (Algorithm 3): start from a grid of blocks, each a "pseudo-Gaussian" pattern of nested squares with
a random sign, scaled to norm eps. A proposal moves the perturbation mass of a second window into
the first, adds a fresh pattern of random sign, and gives the first window (per channel) the norm of
both windows plus an even share of the budget still unused, so the total stays at eps.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .base import Attack, register_attack
from .checks import check_number, check_positive_int
from .losses import cw_margin
from .seeding import check_seed, make_generator
from .threat import _bcast, flat_norm

_TINY = 1e-12
#: iterations (of a 10,000-query run) after which p is halved once more
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: proposals redrawn (without a query) when one leaves a window unchanged
_REDRAWS = 10


def p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """The fraction of pixels a window covers at iteration ``it`` of ``n_iters`` (the paper's schedule)."""
    i = int(it / n_iters * 10000) if n_iters > 0 else it
    halvings = sum(1 for h in _HALVINGS if i > h)
    return float(p_init / 2.0 ** halvings)


def pattern(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Nested centred rectangles of an h x w window, ring k (from the outside) weighted by sum_{j<=k} 1/(n+1-j)^2."""
    out = torch.zeros(h, w, device=device)
    n = max(h, w) // 2
    for k in range(n + 1):
        if h - 2 * k <= 0 or w - 2 * k <= 0:
            break
        out[k: h - k, k: w - k] += 1.0 / (n + 1 - k) ** 2
    return out


def meta_pattern(s: int, device: torch.device, transpose: bool) -> torch.Tensor:
    """The L2 proposal of an s x s window: two halves of opposite sign, each a nested pattern, unit norm."""
    half = s // 2
    left = pattern(s, half, device) if half > 0 else torch.zeros(s, 0, device=device)
    right = pattern(s, s - half, device)
    out = torch.cat([left, -right], dim=1)
    if transpose:
        out = out.t()
    unit: torch.Tensor = out / out.norm().clamp_min(_TINY)
    return unit


@register_attack("square")
class Square(Attack):
    """Square attack (Andriushchenko et al. 2020): random square-window search on the margin loss.

    Args:
        eps: budget in pixel units; norm: ``"linf"`` or ``"l2"``.
        queries: the search's model evaluations per input and restart, its initial point included (one
            more evaluation of the clean input tells which inputs are misclassified already).
        p_init: fraction of pixels the first windows cover (the paper: 0.05 (L-inf ImageNet) to 0.8 (MNIST)).
        restarts: independent runs on the inputs still robust.
        seed: seeds the random search (``None``: global RNG).

    After a call, ``last_queries`` holds the model evaluations spent per input (the clean one included).
    """

    name = "square"
    uses_gradients = False

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, queries: int = 5000, p_init: float = 0.8,
                 restarts: int = 1, seed: int | None = 0, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        if isinstance(queries, int) and not isinstance(queries, bool) and queries <= 0:
            raise ValueError(f"queries must be a positive number of model evaluations per input, got {queries}; "
                             "the paper uses 10,000 and AutoAttack 5,000.")
        self.queries = check_positive_int(queries, "queries")
        self.p_init = check_number(p_init, "p_init", minimum=0.0, maximum=1.0, hint=" The paper uses 0.05 to 0.8.")
        if self.p_init == 0.0:
            raise ValueError("p_init must be > 0 (the fraction of pixels of the first windows), got 0.")
        self.restarts = check_positive_int(restarts, "restarts")
        self.seed = check_seed(seed)
        self.last_queries: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "queries": self.queries, "p_init": self.p_init, "restarts": self.restarts,
                "seed": self.seed}

    def __repr__(self) -> str:
        return (f"Square(eps={self.eps:g}, norm={self.norm!r}, queries={self.queries}, p_init={self.p_init:g}, "
                f"restarts={self.restarts})")

    # ------------------------------------------------------------------ the algorithm
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        gen = make_generator(x.device, self.seed)
        n = x.shape[0]
        best = x.clone()
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        with torch.no_grad():
            margin = cw_margin(model(x).float(), y, target, kappa=float("inf"))
        queries += 1
        for _ in range(self.restarts):
            idx = (margin > 0).nonzero().flatten()
            if idx.numel() == 0:
                break
            ts = None if target is None else target[idx]
            adv, m, q = self._one_run(model, x[idx], y[idx], ts, gen)
            better = m < margin[idx]
            best[idx[better]] = adv[better]
            margin[idx[better]] = m[better]
            queries[idx] += q
        self.last_queries = queries
        return best

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            return cw_margin(model(x).float(), y, target, kappa=float("inf"))

    def _one_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                 gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run from the initial point; returns the best points, their margins and the queries spent."""
        lo, hi = self.threat.bounds
        best = self._init(x, gen)
        margin = self._loss(model, best, y, target)
        spent = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        idx = (margin > 0).nonzero().flatten()
        n_iters = self.queries - 1
        h, w = x.shape[2], x.shape[3]
        for it in range(n_iters):
            if idx.numel() == 0:
                break
            p = p_schedule(self.p_init, it, n_iters)
            xs, cur = x[idx], best[idx]
            if self.norm == "linf":
                s = min(max(int(round(math.sqrt(p * h * w))), 1), min(h, w) - 1) if min(h, w) > 1 else 1
                new = self._propose_linf(xs, cur, s, gen)
            else:
                s = min(max(int(round(math.sqrt(p * h * w))), 3), min(h, w) - 1) if min(h, w) > 3 else min(h, w)
                new = self._propose_l2(xs, cur, s, gen)
            new = self.threat.project(xs, new.clamp(lo, hi))
            m = self._loss(model, new, y[idx], None if target is None else target[idx])
            spent[idx] += 1
            improved = m < margin[idx]
            best[idx[improved]] = new[improved]
            margin[idx[improved]] = m[improved]
            idx = idx[margin[idx] > 0]
        return best, margin, spent

    # ------------------------------------------------------------------ initial points
    def _init(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        lo, hi = self.threat.bounds
        n, c, h, w = x.shape
        if self.norm == "linf":
            signs = self._signs((n, c, 1, w), x, gen)
            return self.threat.project(x, (x + self.eps * signs).clamp(lo, hi))
        b = max(h // 5, 1)
        delta = torch.zeros_like(x)
        r0, c0 = (h - (h // b) * b) // 2, (w - (w // b) * b) // 2
        block = pattern(b, b, x.device)
        for i in range(h // b):
            for j in range(w // b):
                sl = (slice(None), slice(None), slice(r0 + i * b, r0 + (i + 1) * b), slice(c0 + j * b, c0 + (j + 1) * b))
                delta[sl] = block * self._signs((n, c, 1, 1), x, gen)
        delta = delta * _bcast(self.eps / flat_norm(delta, "l2").clamp_min(_TINY), delta)
        return self.threat.project(x, (x + delta).clamp(lo, hi))

    @staticmethod
    def _signs(shape: tuple[int, ...], like: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return torch.randint(0, 2, shape, device=like.device, generator=gen).to(like.dtype) * 2 - 1

    @staticmethod
    def _window(n: int, h: int, w: int, s: int, device: torch.device, gen: torch.Generator | None) -> torch.Tensor:
        """A random s x s window per sample, as a (n, 1, h, w) bool mask."""
        r = torch.randint(0, h - s + 1, (n, 1, 1, 1), device=device, generator=gen)
        c = torch.randint(0, w - s + 1, (n, 1, 1, 1), device=device, generator=gen)
        rows = torch.arange(h, device=device).view(1, 1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, 1, w)
        return (rows >= r) & (rows < r + s) & (cols >= c) & (cols < c + s)

    # ------------------------------------------------------------------ proposals
    def _propose_linf(self, x: torch.Tensor, cur: torch.Tensor, s: int, gen: torch.Generator | None) -> torch.Tensor:
        """The window set to x +- eps (a random sign per channel); redrawn where that changes nothing."""
        lo, hi = self.threat.bounds
        n, c, h, w = x.shape
        new = cur.clone()
        todo = torch.arange(n, device=x.device)
        for _ in range(_REDRAWS):
            mask = self._window(todo.numel(), h, w, s, x.device, gen)
            signs = self._signs((todo.numel(), c, 1, 1), x, gen)
            xs = x[todo]
            prop = torch.where(mask, (xs + self.eps * signs).clamp(lo, hi), cur[todo])
            new[todo] = prop
            same = (prop == cur[todo]).flatten(1).all(1)
            todo = todo[same]
            if todo.numel() == 0:
                break
        return new

    def _propose_l2(self, x: torch.Tensor, cur: torch.Tensor, s: int, gen: torch.Generator | None) -> torch.Tensor:
        n, c, h, w = x.shape
        delta = cur - x
        m1 = self._window(n, h, w, s, x.device, gen)
        m2 = self._window(n, h, w, s, x.device, gen)
        both = m1 | m2
        unused2 = (self.eps ** 2 - flat_norm(delta, "l2") ** 2).clamp_min(0.0)
        # per channel: the norm of both windows plus an even share of the unused budget
        avail = ((delta * both).pow(2).sum((2, 3)) + unused2[:, None] / c).sqrt()  # (n, c)
        transpose = bool(torch.randint(0, 2, (1,), device=x.device, generator=gen).item())
        eta = meta_pattern(s, x.device, transpose)
        fresh = torch.zeros_like(x)
        # place the s x s pattern at each sample's first window
        rows = m1.any(3).float().argmax(2)[:, 0]  # (n,) top row of the window
        cols = m1.any(2).float().argmax(2)[:, 0]
        ii = (rows[:, None] + torch.arange(s, device=x.device)[None]).view(n, 1, s, 1).expand(n, c, s, s)
        jj = (cols[:, None] + torch.arange(s, device=x.device)[None]).view(n, 1, 1, s).expand(n, c, s, s)
        nn_ = torch.arange(n, device=x.device).view(n, 1, 1, 1).expand(n, c, s, s)
        cc = torch.arange(c, device=x.device).view(1, c, 1, 1).expand(n, c, s, s)
        fresh[nn_, cc, ii, jj] = eta.expand(n, c, s, s) * self._signs((n, c, 1, 1), x, gen)
        old = delta * m1
        old = old / old.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(_TINY)  # unit norm per channel
        v = old + fresh
        v = v / v.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(_TINY) * avail[:, :, None, None]
        out = torch.where(both, torch.zeros_like(delta), delta) + torch.where(m1, v, torch.zeros_like(v))
        return x + out
