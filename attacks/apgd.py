"""APGD (Croce & Hein, ICML 2020): PGD with momentum and a step size that adapts itself, no tuning.

Algorithm 1 of the paper, per sample: the step starts at eta = 2 eps; x1 = P(x0 + eta s(grad f(x0))),
then z = P(xk + eta s(grad f(xk))) and x(k+1) = P(xk + a (z - xk) + (1 - a)(xk - x(k-1))) with momentum
a = 0.75 (s = sign for L-inf, grad / ||grad||_2 for L2; P projects onto the ball and the pixel box).
At the checkpoints w_j = ceil(p_j N) (p_0 = 0, p_1 = 0.22, p_(j+1) = p_j + max(p_j - p_(j-1) - 0.03, 0.06))
the step is halved and the iterate restarts from the best point so far if (1) the loss went up in
fewer than rho = 0.75 of the steps since the last checkpoint, or (2) the step was not halved at the
last checkpoint and the best loss has not improved since. Losses: cross-entropy (``"ce"``) and the
Difference of Logits Ratio (``"dlr"``, invariant to shifts and rescaling of the logits). APGD-T runs
the targeted DLR loss towards each of the top-k other classes (by clean logit) in turn.

Early exit: a sample is done once it is fooled. Success is tracked on the device every step; the
batch is compacted at the checkpoints only (about 9 host syncs per 100-step run). Restarts and
further target classes run only on the samples still robust. Unfooled samples return their
highest-loss iterate. ``amp=True`` runs the forward passes under bfloat16 autocast (losses in float32).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, input_gradient, register_attack
from .checks import check_choice, check_positive_int
from .losses import dlr_loss
from .seeding import check_seed, make_generator
from .threat import _bcast

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75  # the paper's alpha
RHO = 0.75  # the paper's rho (fraction of steps that must increase the loss between checkpoints)


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step: ceil(p_j * steps) for the paper's p_j (j >= 1)."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0:
            break
        p.append(nxt)
    return sorted({min(steps, max(1, math.ceil(q * steps - 1e-9))) for q in p[1:]})


@dataclass
class _Rows:
    """Per-row state of one APGD run (a row is an input, or an input paired with one target class)."""

    idx: torch.Tensor  # row number in the run's batch
    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None
    eta: torch.Tensor  # step size
    cur: torch.Tensor
    prev: torch.Tensor
    f: torch.Tensor  # loss at cur
    g: torch.Tensor  # gradient at cur
    xmax: torch.Tensor  # highest-loss point so far, its loss and gradient
    fmax: torch.Tensor
    gmax: torch.Tensor
    ups: torch.Tensor  # steps that increased the loss since the last checkpoint
    fmax_ck: torch.Tensor  # fmax at the last checkpoint
    halved_ck: torch.Tensor  # was the step halved at the last checkpoint
    adv: torch.Tensor  # the first fooling iterate (valid where fooled)
    fooled: torch.Tensor

    def select(self, keep: torch.Tensor) -> _Rows:
        vals: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            vals[f.name] = None if v is None else v[keep]
        return _Rows(**vals)


class APGD(Attack):
    """Auto-PGD, untargeted or towards given targets, L-inf or L2.

    Args:
        eps: budget in pixel units; norm: ``"linf"`` or ``"l2"``.
        steps: iterations per restart (AutoAttack: 100).
        restarts: runs from independent random starts; each runs only on the samples still robust.
        loss: ``"ce"`` or ``"dlr"`` (targeted calls use the targeted form of either).
        eot: gradients averaged over this many forward passes (expectation over transformation, for
            randomised models; AutoAttack's ``rand`` version uses 20).
        amp: bfloat16 autocast for the forward passes.
        seed: seeds the random starts (``None``: global RNG).
    """

    name = "apgd"
    strong = True

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, steps: int = 100, restarts: int = 1,
                 loss: str = "ce", eot: int = 1, amp: bool = False, seed: int | None = 0,
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        self.loss = check_choice(loss, "loss", LOSSES)
        super().__init__(eps, norm, bounds=bounds)
        self.steps = check_positive_int(steps, "steps")
        self.restarts = check_positive_int(restarts, "restarts")
        self.eot = check_positive_int(eot, "eot")
        self.amp = bool(amp)
        self.seed = check_seed(seed)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "steps": self.steps, "restarts": self.restarts, "loss": self.loss,
                "eot": self.eot, "amp": self.amp, "seed": self.seed}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps:g}, norm={self.norm!r}, steps={self.steps}, "
                f"restarts={self.restarts}, loss={self.loss!r}, eot={self.eot})")

    # ------------------------------------------------------------------ entry
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        gen = make_generator(x.device, self.seed)
        with torch.no_grad(), self._autocast(x.device):
            logits = model(x).float()
        self._check_classes(logits.shape[1], target is not None)
        on_target = target is not None
        done = _success(logits, y, target, on_target)  # already misclassified (or on target): nothing to do
        out, best = x.clone(), torch.full((x.shape[0],), float("-inf"), device=x.device)
        for _ in range(self.restarts):
            delta = self.threat.random_delta(x, gen)  # drawn for the whole batch: early exit keeps the stream
            idx = (~done).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            t = None if target is None else target[idx]
            self._attack_into(model, x, y, idx, t, delta[idx], on_target, out, best, done, 1)
        return out

    def _check_classes(self, num_classes: int, targeted: bool) -> None:
        if self.loss == "dlr" and num_classes < (4 if targeted else 3):
            raise ValueError(f"the DLR loss needs at least {4 if targeted else 3} classes, the model has "
                             f"{num_classes}; use loss='ce'.")

    # ------------------------------------------------------------------ one run over rows
    def _attack_into(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                     t: torch.Tensor | None, delta: torch.Tensor, on_target: bool, out: torch.Tensor,
                     best: torch.Tensor, done: torch.Tensor, m: int) -> None:
        """Attack inputs ``idx`` (``m`` rows each: ``t`` holds m blocks of targets) and fold the result
        into ``out``/``best``/``done``: per input, the first fooling row, else the highest-loss row."""
        xs = x[idx].repeat(m, *([1] * (x.dim() - 1)))
        ys = y[idx].repeat(m)
        start = self.threat.project(xs, xs + delta)
        adv, fooled, loss = self._apgd(model, xs, ys, t, start, on_target)
        k = idx.numel()
        fooled_m, loss_m = fooled.view(m, k), loss.view(m, k)
        score = torch.where(fooled_m, torch.full_like(loss_m, float("inf")), loss_m)
        pick = score.argmax(0)  # the first fooling row (scores tie at inf) or the highest loss
        rows = pick * k + torch.arange(k, device=x.device)
        adv_k, fooled_k, loss_k = adv[rows], fooled_m.any(0), loss[rows]
        upd = fooled_k | (loss_k > best[idx])
        out.index_copy_(0, idx, torch.where(_bcast(upd, adv_k), adv_k, out[idx]))
        best.index_copy_(0, idx, torch.where(upd, loss_k, best[idx]))
        done.index_copy_(0, idx, done[idx] | fooled_k)

    def _apgd(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None,
              start: torch.Tensor, on_target: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Algorithm 1 on every row; returns per row the output point, whether it fools, and its loss."""
        n = x.shape[0]
        out_adv, out_loss = start.clone(), torch.full((n,), float("-inf"), device=x.device)
        out_fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        f, g, logits = self._loss_grad(model, start, y, t)
        fooled = _success(logits, y, t, on_target)
        eta = torch.full((n,), 2.0 * self.eps, device=x.device, dtype=x.dtype)
        zero = torch.zeros(n, dtype=torch.long, device=x.device)
        st = _Rows(torch.arange(n, device=x.device), x, y, t, eta, start, start, f, g, start, f, g, zero,
                   f, torch.zeros_like(fooled), start, fooled)
        ws, last_w = set(checkpoints(self.steps)), 0
        for k in range(self.steps):
            step = _bcast(st.eta, st.cur) * self.threat.normalize_step(st.g)
            z = self.threat.project(st.x, st.cur + step)
            new = z if k == 0 else self.threat.project(
                st.x, st.cur + MOMENTUM * (z - st.cur) + (1 - MOMENTUM) * (st.cur - st.prev))
            f, g, logits = self._loss_grad(model, new, st.y, st.t)
            succ = _success(logits, st.y, st.t, on_target)
            st.adv = torch.where(_bcast(succ & ~st.fooled, new), new, st.adv)
            st.fooled = st.fooled | succ
            st.ups = st.ups + (f > st.f).long()
            better = f > st.fmax
            st.xmax = torch.where(_bcast(better, new), new, st.xmax)
            st.gmax = torch.where(_bcast(better, g), g, st.gmax)
            st.fmax = torch.where(better, f, st.fmax)
            st.prev, st.cur, st.f, st.g = st.cur, new, f, g
            if k + 1 in ws and k + 1 < self.steps:
                self._checkpoint(st, k + 1 - last_w)
                last_w = k + 1
                if bool(st.fooled.any()):  # the one host sync per checkpoint: drop the fooled rows
                    _flush(st, st.fooled, out_adv, out_loss, out_fooled)
                    st = st.select(~st.fooled)
                    if st.idx.numel() == 0:
                        break
        _flush(st, torch.ones_like(st.fooled), out_adv, out_loss, out_fooled)
        return out_adv, out_fooled, out_loss

    @staticmethod
    def _checkpoint(st: _Rows, window: int) -> None:
        halve = (st.ups.float() < RHO * window) | (~st.halved_ck & (st.fmax <= st.fmax_ck))
        st.eta = torch.where(halve, st.eta / 2, st.eta)
        st.cur = torch.where(_bcast(halve, st.cur), st.xmax, st.cur)
        st.g = torch.where(_bcast(halve, st.g), st.gmax, st.g)
        st.f = torch.where(halve, st.fmax, st.f)
        st.halved_ck, st.fmax_ck, st.ups = halve, st.fmax.clone(), torch.zeros_like(st.ups)

    def _loss_grad(self, model: nn.Module, adv: torch.Tensor, y: torch.Tensor,
                   t: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-row loss, its input gradient and the logits (each averaged over ``eot`` forward passes)."""
        loss_sum: torch.Tensor | None = None
        grad_sum: torch.Tensor | None = None
        logit_sum: torch.Tensor | None = None
        for _ in range(self.eot):
            with torch.enable_grad():
                a = adv.detach().requires_grad_(True)
                with self._autocast(adv.device):
                    logits = model(a)
                logits = logits.float()
                lvec = self._loss(logits, y, t)
                grad = input_gradient(lvec.sum(), a)
            lvec, logits = lvec.detach(), logits.detach()
            loss_sum = lvec if loss_sum is None else loss_sum + lvec
            grad_sum = grad if grad_sum is None else grad_sum + grad
            logit_sum = logits if logit_sum is None else logit_sum + logits
        assert loss_sum is not None and grad_sum is not None and logit_sum is not None
        if self.eot == 1:
            return loss_sum, grad_sum, logit_sum
        return loss_sum / self.eot, grad_sum / self.eot, logit_sum / self.eot

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        if self.loss == "dlr":
            return dlr_loss(logits, y, t)
        if t is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, t, reduction="none")

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)


def _success(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, on_target: bool) -> torch.Tensor:
    """Fooled: misclassified; with ``on_target`` (a caller-given target): classified as the target."""
    pred = logits.argmax(1)
    return pred == t if (on_target and t is not None) else pred != y


def _flush(st: _Rows, rows: torch.Tensor, adv: torch.Tensor, loss: torch.Tensor, fooled: torch.Tensor) -> None:
    """Write the result of ``rows`` (bool over st's rows) into the run's outputs."""
    idx = st.idx[rows]
    point = torch.where(_bcast(st.fooled, st.adv), st.adv, st.xmax)[rows]
    adv.index_copy_(0, idx, point)
    loss.index_copy_(0, idx, torch.where(st.fooled, torch.full_like(st.fmax, float("inf")), st.fmax)[rows])
    fooled.index_copy_(0, idx, st.fooled[rows])


@register_attack("apgd-ce")
class APGDCE(APGD):
    """APGD on the cross-entropy loss (AutoAttack's first attack)."""

    name = "apgd-ce"

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, steps: int = 100, restarts: int = 1, eot: int = 1,
                 amp: bool = False, seed: int | None = 0, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, steps=steps, restarts=restarts, loss="ce", eot=eot, amp=amp, seed=seed,
                         bounds=bounds)


@register_attack("apgd-dlr")
class APGDDLR(APGD):
    """APGD on the DLR loss (AutoAttack's ``plus`` and ``rand`` versions)."""

    name = "apgd-dlr"

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, steps: int = 100, restarts: int = 1, eot: int = 1,
                 amp: bool = False, seed: int | None = 0, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, steps=steps, restarts=restarts, loss="dlr", eot=eot, amp=amp, seed=seed,
                         bounds=bounds)


@register_attack("apgd-t")
class APGDT(APGD):
    """APGD-T: targeted APGD towards each of the ``n_target_classes`` highest-scoring other classes in turn.

    Called without ``target=`` it is an untargeted attack (success = misclassified), as in AutoAttack;
    with ``target=`` it attacks those targets (success = classified as the target; to hit given targets,
    ``APGD(loss="ce")`` with ``target=`` is stronger, the targeted DLR loss aims at misclassification).
    ``target_batch`` target classes run side by side as one batch (more parallel work per forward on a
    GPU; inputs fooled by one of them still finish the others of that batch).
    """

    name = "apgd-t"

    def __init__(self, eps: float = 0.3, norm: str = "linf", *, steps: int = 100, restarts: int = 1,
                 n_target_classes: int = 9, loss: str = "dlr", target_batch: int = 1, eot: int = 1,
                 amp: bool = False, seed: int | None = 0, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(eps, norm, steps=steps, restarts=restarts, loss=loss, eot=eot, amp=amp, seed=seed,
                         bounds=bounds)
        self.n_target_classes = check_positive_int(n_target_classes, "n_target_classes")
        self.target_batch = check_positive_int(target_batch, "target_batch")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_target_classes": self.n_target_classes, "target_batch": self.target_batch}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if target is not None:
            return super().run(model, x, y, target)
        with torch.no_grad(), self._autocast(x.device):
            logits = model(x).float()
        c = logits.shape[1]
        if self.n_target_classes >= c:
            raise ValueError(f"APGD-T with n_target_classes={self.n_target_classes} on a model with {c} classes: "
                             f"there are only {c - 1} other classes; use n_target_classes <= {c - 1}.")
        self._check_classes(c, True)
        gen = make_generator(x.device, self.seed)
        order = logits.masked_fill(F.one_hot(y, c).bool(), float("-inf")).argsort(dim=1, descending=True)
        done = logits.argmax(1) != y
        out, best = x.clone(), torch.full((x.shape[0],), float("-inf"), device=x.device)
        for ranks in _chunks(self.n_target_classes, self.target_batch):
            for _ in range(self.restarts):
                delta = torch.cat([self.threat.random_delta(x, gen) for _ in ranks])
                idx = (~done).nonzero().squeeze(1)
                if idx.numel() == 0:
                    return out
                t = torch.cat([order[idx, r] for r in ranks])
                rows = torch.cat([idx + j * x.shape[0] for j in range(len(ranks))])
                self._attack_into(model, x, y, idx, t, delta[rows], False, out, best, done, len(ranks))
        return out


def _chunks(n: int, size: int) -> Iterator[list[int]]:
    for s in range(0, n, size):
        yield list(range(s, min(n, s + size)))


__all__ = ["APGD", "APGDCE", "APGDDLR", "APGDT", "LOSSES", "checkpoints"]
