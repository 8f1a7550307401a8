"""FAB, the fast adaptive boundary attack (Croce & Hein, ICML 2020), L-inf and L2.

A minimal-norm attack: at the iterate x_i the decision boundary between the true class c and a class
l is linearised, ``f_l(x_i) - f_c(x_i) + <w, z - x_i> = 0`` with ``w = grad(f_l - f_c)(x_i)``. Both
x_i and the original x are projected onto that hyperplane inside the pixel box (the exact minimal
L_p projection, below), and the next iterate is a biased combination of the two projections,
extrapolated by ``eta``::

    x_{i+1} = box((1 - a) (x_i + eta d_i) + a (x + eta d_orig)),  a = min(|d_i| / (|d_i| + |d_orig|), alpha_max)

The bias towards x keeps the iterates close to the original. Once x_{i+1} is adversarial it is kept
when its norm is the smallest so far, and the search steps back towards x:
``x_{i+1} <- (1 - beta) x + beta x_{i+1}``. Untargeted FAB picks the hyperplane that is closest to
x_i (distance ``|f_l - f_c| / ||w||_q``, q the dual norm); targeted FAB uses the target's.

``FAB(targeted=True)`` (registry ``"fab-t"``) is AutoAttack's standard variant: for each of the
``n_target_classes`` classes with the highest logits other than the label, run FAB targeted at that
class on the inputs still robust, and keep the smallest adversarial. It needs one gradient per step
instead of one per class. An input counts as fooled only within ``eps``: a sample stops being
attacked once it has an adversarial example inside the budget (early exit per sample).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Attack, register_attack
from .checks import check_number, check_positive_int
from .classifier import num_classes_of
from .seeding import check_seed, make_generator
from .threat import _bcast, flat_norm

_TINY = 1e-12


def _solve_budget(a: torch.Tensor, c: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the smallest t >= 0 with ``sum_i a_i min(t, c_i) = r`` (a, c >= 0 of shape (n, d); r >= 0 (n,)).

    The left side is piecewise linear and nondecreasing in t with breakpoints c_i: sort them, evaluate
    it at every breakpoint and solve on the segment where it first reaches r. Returns ``(t, feasible)``;
    where even t = max(c) falls short of r, t = max(c) (every coordinate saturated) and feasible is False.
    """
    cs, order = c.sort(dim=1)
    a_s = a.gather(1, order)
    suffix = a_s.flip(1).cumsum(1).flip(1)  # sum_{j >= k} a_j
    ac = a_s * cs
    prefix = ac.cumsum(1) - ac  # sum_{j < k} a_j c_j
    g = prefix + cs * suffix  # the left side at t = c_k
    k = (g < r[:, None]).sum(1)
    feasible = k < c.shape[1]
    kk = k.clamp(max=c.shape[1] - 1)[:, None]
    t = (r - prefix.gather(1, kk)[:, 0]) / suffix.gather(1, kk)[:, 0].clamp_min(_TINY)
    t = torch.where(feasible, t.clamp_min(0.0), cs[:, -1])
    return t, feasible


def project_hyperplane_box(p: torch.Tensor, w: torch.Tensor, r: torch.Tensor, bounds: tuple[float, float],
                           norm: str) -> torch.Tensor:
    """The minimal-norm step onto a hyperplane inside a box: ``argmin ||d||_norm`` s.t. ``<w, d> = r`` and
    ``lo <= p + d <= hi`` (p, w of shape (n, d), r of shape (n,)).

    By the KKT conditions the solution is ``d_i = clip(t * dir_i, lo - p_i, hi - p_i)`` with
    ``dir = sign(w)`` (L-inf) or ``w`` (L2) and the scalar t found by :func:`_solve_budget`. Where the
    box does not reach the hyperplane, the box corner that gets closest to it is returned.
    """
    sgn = torch.where(r < 0, -1.0, 1.0).to(w.dtype)
    wp = w * sgn[:, None]
    low, high = bounds[0] - p, bounds[1] - p
    room = torch.where(wp > 0, high, -low).clamp_min(0.0)  # how far coordinate i can move along dir_i
    aw = wp.abs()
    if norm == "linf":
        a, c, direction = aw, room, wp.sign()
    else:
        live = aw > _TINY
        a = torch.where(live, aw * aw, torch.zeros_like(aw))
        c = torch.where(live, room / aw.clamp_min(_TINY), torch.zeros_like(aw))
        direction = wp
    t, _ = _solve_budget(a, c, r.abs())
    return torch.minimum(torch.maximum(t[:, None] * direction, low), high)


@register_attack("fab")
class FAB(Attack):
    """FAB (Croce & Hein 2020): minimal-norm adversarial examples by biased projections onto the
    linearised decision boundary; success counts only inside ``eps``.

    Args:
        eps: budget in pixel units; norm: ``"linf"`` or ``"l2"``.
        steps: iterations per restart and target class.
        restarts: restart 0 starts at x; later ones at a uniformly random point of the ball of radius eps / 2.
        n_target_classes: targeted variant only: how many of the highest-logit other classes are tried
            (at most num_classes - 1).
        targeted: ``False``: the closest boundary at each step (one gradient per class);
            ``True``: AutoAttack's FAB-T (see the module docstring). A call with ``target=`` always
            attacks that target.
        seed: seeds the random restarts (``None``: global RNG).
        alpha_max: the largest weight of the projection of x in a step (the bias towards x).
        eta: extrapolation factor of the projection steps (> 1 overshoots the boundary a little).
        beta: the backward step towards x after an adversarial iterate.
    """

    name = "fab"
    strong = True

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, steps: int = 100, restarts: int = 1,
                 n_target_classes: int = 9, targeted: bool = False, seed: int | None = 0, alpha_max: float = 0.1,
                 eta: float = 1.05, beta: float = 0.9, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, bounds=bounds)
        self.steps = check_positive_int(steps, "steps")
        self.restarts = check_positive_int(restarts, "restarts")
        self.n_target_classes = check_positive_int(n_target_classes, "n_target_classes")
        if not isinstance(targeted, bool):
            raise TypeError(f"targeted must be True or False, got {type(targeted).__name__} ({targeted!r}).")
        self.targeted = targeted
        self.seed = check_seed(seed)
        self.alpha_max = check_number(alpha_max, "alpha_max", minimum=0.0, maximum=1.0, hint=" The paper uses 0.1.")
        self.eta = check_number(eta, "eta", minimum=1.0, hint=" The paper uses 1.05.")
        self.beta = check_number(beta, "beta", minimum=0.0, maximum=1.0, hint=" The paper uses 0.9.")
        #: after a call: the smallest adversarial norm found per input (0: misclassified already; inf: none)
        self.last_norms: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "steps": self.steps, "restarts": self.restarts, "targeted": self.targeted,
                "n_target_classes": self.n_target_classes, "seed": self.seed, "alpha_max": self.alpha_max,
                "eta": self.eta, "beta": self.beta}

    def __repr__(self) -> str:
        extra = f", n_target_classes={self.n_target_classes}" if self.targeted else ""
        return (f"{type(self).__name__}(eps={self.eps:g}, norm={self.norm!r}, steps={self.steps}, "
                f"restarts={self.restarts}{extra})")

    # ------------------------------------------------------------------ the algorithm
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        declared = num_classes_of(model)
        if target is None and self.targeted and declared is not None:
            self._check_targets_count(declared)
        with torch.no_grad():
            logits0 = model(x).float()
        num_classes = logits0.shape[1]
        if target is None and self.targeted:
            self._check_targets_count(num_classes)
        untargeted_success = target is None
        succ0 = self._success(logits0, y, target)
        best_adv = x.clone()
        best_norm = torch.full((x.shape[0],), float("inf"), device=x.device)
        best_norm[succ0] = 0.0
        if target is not None:
            runs: list[torch.Tensor | None] = [target]
        elif self.targeted:
            others = logits0.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
            runs = [others[:, k] for k in range(self.n_target_classes)]
        else:
            runs = [None]
        gen = make_generator(x.device, self.seed)
        for tgt in runs:
            idx = (best_norm > self.eps).nonzero().flatten()
            if idx.numel() == 0:
                break
            adv, nrm = self._attack(model, x[idx], y[idx], None if tgt is None else tgt[idx], untargeted_success, gen)
            better = nrm < best_norm[idx]
            best_adv[idx[better]] = adv[better]
            best_norm[idx[better]] = nrm[better]
        self.last_norms = best_norm
        return best_adv

    def _check_targets_count(self, num_classes: int) -> None:
        if self.n_target_classes >= num_classes:
            raise ValueError(f"n_target_classes={self.n_target_classes} but the model has {num_classes} classes: "
                             f"FAB-T can target at most num_classes - 1 = {num_classes - 1} other classes.")

    @staticmethod
    def _success(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred != y if target is None else pred == target

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                untargeted_success: bool, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Restarts of FAB on one batch (target: the hyperplane's class, or None for the closest)."""
        best_adv = x.clone()
        best_norm = torch.full((x.shape[0],), float("inf"), device=x.device)
        for restart in range(self.restarts):
            idx = (best_norm > self.eps).nonzero().flatten()
            if idx.numel() == 0:
                break
            xs = x[idx]
            start = xs.clone()
            if restart > 0:
                start = self.threat.project(xs, xs + 0.5 * self.threat.random_delta(xs, gen))
            ts = None if target is None else target[idx]
            self._one_run(model, idx, xs, y[idx], ts, start, untargeted_success, best_adv, best_norm)
        return best_adv, best_norm

    def _one_run(self, model: nn.Module, idx: torch.Tensor, x0: torch.Tensor, y: torch.Tensor,
                 target: torch.Tensor | None, xi: torch.Tensor, untargeted_success: bool,
                 best_adv: torch.Tensor, best_norm: torch.Tensor) -> None:
        lo, hi = self.threat.bounds
        for _ in range(self.steps):
            w, fdiff = self._linearize(model, xi, y, target, against_rival=not untargeted_success)
            flat_i, flat_0 = xi.flatten(1), x0.flatten(1)
            d_i = project_hyperplane_box(flat_i, w, -fdiff, (lo, hi), self.norm)
            r0 = -(fdiff + (w * (flat_0 - flat_i)).sum(1))
            d_0 = project_hyperplane_box(flat_0, w, r0, (lo, hi), self.norm)
            n_i, n_0 = flat_norm(d_i, self.norm), flat_norm(d_0, self.norm)
            alpha = (n_i / (n_i + n_0).clamp_min(_TINY)).clamp(max=self.alpha_max)[:, None]
            step = (1 - alpha) * (flat_i + self.eta * d_i) + alpha * (flat_0 + self.eta * d_0)
            x_new = step.clamp(lo, hi).view_as(xi)
            with torch.no_grad():
                logits = model(x_new).float()
            succ = self._success(logits, y, None if untargeted_success else target)
            nrm = flat_norm(x_new - x0, self.norm)
            better = succ & (nrm < best_norm[idx])
            best_adv[idx[better]] = x_new[better]
            best_norm[idx[better]] = nrm[better]
            xi = torch.where(_bcast(succ, x_new), (1 - self.beta) * x0 + self.beta * x_new, x_new)
            keep = best_norm[idx] > self.eps  # early exit: fooled inside the budget
            if not bool(keep.all()):
                if not bool(keep.any()):
                    return
                idx, x0, y, xi = idx[keep], x0[keep], y[keep], xi[keep]
                target = None if target is None else target[keep]

    def _linearize(self, model: nn.Module, xi: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, *,
                   against_rival: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The boundary hyperplane at xi: ``w = grad(f_l - f_y)`` (flat) and ``f_l - f_y``, l the target or the
        class whose linearised boundary is closest. ``against_rival`` (a call with ``target=``, where success
        means being classified as the target): the boundary of the target against the strongest other
        class at xi instead of y (the same while xi is still classified as y)."""
        with torch.enable_grad():
            z = xi.detach().requires_grad_(True)
            logits = model(z).float()
            if target is not None and against_rival:
                y = logits.detach().scatter(1, target[:, None], float("-inf")).argmax(1)
            own = logits.gather(1, y[:, None])[:, 0]
            if target is not None:
                diff = logits.gather(1, target[:, None])[:, 0] - own
                (g,) = torch.autograd.grad(diff.sum(), [z])
                return g.flatten(1).detach(), diff.detach()
            k = logits.shape[1]
            grads = []
            for c in range(k):
                (g,) = torch.autograd.grad(logits[:, c].sum(), [z], retain_graph=c < k - 1)
                grads.append(g.flatten(1))
        jac = torch.stack(grads, 1)  # (n, K, d)
        w_all = jac - jac.gather(1, y[:, None, None].expand(-1, 1, jac.shape[2]))
        f_all = (logits - own[:, None]).detach()
        dual = "l1" if self.norm == "linf" else "l2"
        wn = w_all.abs().sum(2) if dual == "l1" else w_all.norm(dim=2)
        dist = f_all.abs() / (wn + _TINY)
        dist = dist.scatter(1, y[:, None], float("inf"))
        pick = dist.argmin(1)
        w = w_all[torch.arange(w_all.shape[0], device=w_all.device), pick]
        return w, f_all.gather(1, pick[:, None])[:, 0]


@register_attack("fab-t")
class FABT(FAB):
    """AutoAttack's FAB-T: ``FAB(targeted=True)``, the top ``n_target_classes`` other classes in turn."""

    name = "fab-t"

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, steps: int = 100, restarts: int = 1,
                 n_target_classes: int = 9, seed: int | None = 0, alpha_max: float = 0.1, eta: float = 1.05,
                 beta: float = 0.9, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, steps=steps, restarts=restarts, n_target_classes=n_target_classes, targeted=True,
                         seed=seed, alpha_max=alpha_max, eta=eta, beta=beta, bounds=bounds)
