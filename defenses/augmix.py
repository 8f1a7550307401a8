"""AugMix (Hendrycks et al., ICLR 2020): augmentation chains mixed with random convex weights, and the
Jensen–Shannon consistency loss. The ``augmix`` fine-tuning method.

For every image, ``width`` chains of 1..3 random operations (``depth=-1``; or exactly ``depth``) are
applied, their results mixed with weights ``w ~ Dirichlet(alpha, ..., alpha)``, and the mixture blended
with the original: ``x_augmix = m * x + (1 - m) * sum_i w_i chain_i(x)``, ``m ~ Beta(alpha, alpha)``.
The operations are the paper's nine (``defenses.augmix_ops``), none of which is an ImageNet-C corruption;
``corruptions=`` adds corruptions of ``attacks.corruptions`` to the pool (their severity 1..min(5, severity),
scaled like the operations' levels) — then the corruption benchmark is no longer unseen, say so when
you quote it.

The loss (``augmix_loss``): ``CE(f(x), y) + lambda * JS(p(x), p(x_augmix1), p(x_augmix2))`` with
``JS = mean_i KL(p_i || M)``, ``M`` the mean of the three distributions (the paper: lambda = 12).
All draws come from a private generator seeded by ``(seed, step, view)``: the global RNG is untouched
and a resumed run sees the same augmentations.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attacks.checks import check_images
from attacks.corruptions import corrupt, corruption_names

from .augmix_ops import MAPS, OPS, affine


def _int(value: object, name: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an int {span}, got {value!r}.")
    return value


def _pos(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


class AugMix:
    """The AugMix recipe: how to draw augmented views (``__call__`` / ``views``) and the loss weight.

    Args:
        width: chains mixed per image (paper: 3).
        depth: operations per chain; -1 draws 1..3 per chain and image (paper: -1).
        severity: operation strength, levels drawn in [0.1, severity] (paper: 3; at most 10).
        alpha: Dirichlet and Beta concentration (paper: 1).
        jsd_lambda: weight of the Jensen–Shannon term (paper: 12).
        corruptions: also chain these corruptions (a list, a family or "all"; default none).
        seed: seeds every draw together with the step and the view.
    """

    def __init__(self, width: int = 3, depth: int = -1, severity: int = 3, alpha: float = 1.0, jsd_lambda: float = 12.0,
                 corruptions: str | Sequence[str] | None = None, seed: int = 0) -> None:
        self.width = _int(width, "augmix width", 1)
        self.depth = depth if depth == -1 else _int(depth, "augmix depth (-1: random 1..3)", 1)
        self.severity = _int(severity, "augmix severity", 1, 10)
        self.alpha = _pos(alpha, "augmix alpha")
        if isinstance(jsd_lambda, bool) or not isinstance(jsd_lambda, (int, float)) or not 0 <= jsd_lambda < float("inf"):
            raise ValueError(f"jsd_lambda must be a finite number >= 0, got {jsd_lambda!r}.")
        self.jsd_lambda = float(jsd_lambda)
        self.corruptions = corruption_names(corruptions) if corruptions else ()
        self.seed = _int(seed, "seed", 0)
        self.pool: list[tuple[str, str]] = [("op", n) for n in OPS] + [("corruption", n) for n in self.corruptions]
        self._calls = 0

    def _seed(self, step: int | None, view: int) -> int:
        if step is None:
            step, self._calls = 10**9 + self._calls, self._calls + 1
        return (self.seed * 1_000_003 + int(step)) * 16 + view

    def __call__(self, x: torch.Tensor, *, step: int | None = None, view: int = 0) -> torch.Tensor:
        """One AugMix image per input image (x in [0, 1], (N, C, H, W), C = 1 or 3); x is not modified."""
        x = check_images(x, channels=(1, 3))
        n = x.shape[0]
        max_depth = self.depth if self.depth > 0 else 3
        with torch.random.fork_rng(devices=[]):  # every draw on the CPU from the seeded global generator, then restored
            torch.manual_seed(self._seed(step, view))
            w = torch.distributions.Dirichlet(torch.full((self.width,), self.alpha)).sample((n,))
            m = torch.distributions.Beta(self.alpha, self.alpha).sample((n,))
            depth = torch.randint(1, 4, (self.width, n)) if self.depth == -1 else torch.full((self.width, n), self.depth)
            op = torch.randint(len(self.pool), (self.width, max_depth, n))
            level = torch.empty(self.width, max_depth, n).uniform_(0.1, float(self.severity))
            sign = torch.randint(0, 2, (self.width, max_depth, n)) * 2 - 1
            seeds = torch.randint(2**31 - 1, (self.width, max_depth, len(self.pool)))
        work = x.detach().to(torch.float32 if x.dtype not in (torch.float32, torch.float64) else x.dtype)
        mix = torch.zeros_like(work)
        with torch.no_grad():
            for c in range(self.width):
                cur = work.clone()
                for d in range(max_depth):
                    active = d < depth[c]
                    geo = torch.zeros(n, dtype=torch.bool)
                    maps = torch.zeros(n, 2, 3, dtype=torch.float64)
                    for k, (kind, name) in enumerate(self.pool):
                        sel = ((op[c, d] == k) & active).nonzero().flatten()
                        if not sel.numel():
                            continue
                        if kind == "op" and name in MAPS:  # geometric: collected, resampled together below
                            geo[sel] = True
                            maps[sel] = MAPS[name](level[c, d, sel], sign[c, d, sel], x.shape[2], x.shape[3])
                            continue
                        cur[sel.to(x.device)] = self._apply(kind, name, cur[sel.to(x.device)], level[c, d, sel],
                                                            sign[c, d, sel], int(seeds[c, d, k]))
                    g = geo.nonzero().flatten()
                    if g.numel():
                        gd = g.to(x.device)
                        cur[gd] = affine(cur[gd], maps[g].to(x.device))
                mix += w[:, c].to(work).view(-1, 1, 1, 1) * cur
            mm = m.to(work).view(-1, 1, 1, 1)
            out = (mm * work + (1 - mm) * mix).clamp_(0, 1)
        return out.to(x.dtype)

    def _apply(self, kind: str, name: str, xs: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, seed: int) -> torch.Tensor:
        if kind == "op":
            return OPS[name](xs, level.to(xs.device), sign.to(xs.device))
        top = min(5, self.severity)
        sev = (level / self.severity * top).ceil().clamp(1, top).long()
        out = xs.clone()
        for s in sev.unique().tolist():  # one batched corrupt() per severity present
            idx = (sev == s).nonzero().flatten().to(xs.device)
            out[idx] = corrupt(xs[idx], name, int(s), seed=seed + int(s))
        return out

    def views(self, x: torch.Tensor, k: int = 2, *, step: int | None = None) -> list[torch.Tensor]:
        """``k`` independent AugMix views of the batch (the loss uses two)."""
        if step is None:
            step, self._calls = 10**9 + self._calls, self._calls + 1
        return [self(x, step=step, view=v) for v in range(k)]

    def describe(self) -> dict[str, Any]:
        return {"name": "augmix", "width": self.width, "depth": self.depth, "severity": self.severity,
                "alpha": self.alpha, "jsd_lambda": self.jsd_lambda, "ops": list(OPS), "corruptions": list(self.corruptions),
                "seed": self.seed}

    def __repr__(self) -> str:
        extra = f", corruptions={list(self.corruptions)}" if self.corruptions else ""
        return (f"AugMix(width={self.width}, depth={self.depth}, severity={self.severity}, alpha={self.alpha:g}, "
                f"jsd_lambda={self.jsd_lambda:g}{extra})")


def jensen_shannon(*logits: torch.Tensor) -> torch.Tensor:
    """Generalised Jensen–Shannon divergence of the softmax distributions: mean_i KL(p_i || M), M = mean_i p_i
    (batch mean; M clamped to [1e-7, 1] before the log, as in the paper's code)."""
    if len(logits) < 2:
        raise ValueError("jensen_shannon needs at least two sets of logits.")
    probs = [F.softmax(z.float(), dim=1) for z in logits]
    log_m = torch.clamp(torch.stack(probs).mean(0), 1e-7, 1).log()
    return sum((F.kl_div(log_m, p, reduction="batchmean") for p in probs), torch.zeros((), device=log_m.device)) / len(probs)


def augmix_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, views: Sequence[torch.Tensor],
                jsd_lambda: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``CE(f(x), y) + jsd_lambda * JS(f(x), f(v_1), ...)``: one forward pass over the clean batch and its views."""
    n = x.shape[0]
    logits = net(torch.cat([x, *views]))
    parts = logits.split(n)
    ce = F.cross_entropy(parts[0], y)
    js = jensen_shannon(*parts)
    acc = (parts[0].detach().argmax(1) == y).float().mean()
    aug_acc = torch.stack([(p.detach().argmax(1) == y).float().mean() for p in parts[1:]]).mean()
    return ce + jsd_lambda * js, {"ce": ce.detach(), "jsd": js.detach(), "acc": acc, "aug_acc": aug_acc}


__all__ = ["AugMix", "augmix_loss", "jensen_shannon"]
