"""The engine's numeric setup of a player step: its optimizer, LR schedule and mixed-precision context."""
from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from attacks.checks import check_choice

from .game import Player

OPTIMIZERS = ("adam", "adamw", "sgd")


def make_optimizer(p: Player, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer a player asks for (``Player.optimizer``)."""
    check_choice(p.optimizer, "optimizer", OPTIMIZERS)
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, nesterov=p.momentum > 0)
    cls = torch.optim.AdamW if p.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=p.lr, betas=p.betas, weight_decay=p.weight_decay)


def lr_factor(kind: str, total_rounds: int):
    """The LR multiplier of round ``r``: constant 1, linear to 0, or cosine to 0 over ``total_rounds``."""
    total = max(1, total_rounds)

    def factor(r: int) -> float:
        if kind == "linear":
            return max(0.0, 1.0 - r / total)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(r, total) / total))
        return 1.0

    return factor


def make_schedulers(optimizers: dict[str, torch.optim.Optimizer], kind: str,
                    total_rounds: int) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    return {n: torch.optim.lr_scheduler.LambdaLR(o, lr_factor(kind, total_rounds)) for n, o in optimizers.items()}


def autocast(device: torch.device, enabled: bool) -> tuple[AbstractContextManager[Any], Any]:
    """``(context, scaler)``: bf16 autocast where supported, else fp16 with a GradScaler; off: a null context."""
    if not enabled:
        return nullcontext(), None
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return torch.autocast("cuda", dtype=dtype), scaler
    return torch.autocast(device.type, dtype=torch.bfloat16), None


_autocast = autocast  # the 0.1 name


def apply_step(host: str, opts: dict[str, torch.optim.Optimizer], nets: dict[str, torch.nn.Module], scaler: Any,
               grad_clip: float | None) -> None:
    """Step ``host``'s optimizer (descent) and its gradient-reversal partners' (ascent: their gradients negated)
    after the one backward; ``scaler`` (the host's GradScaler, or None) steps all of them, ``grad_clip`` clips each
    network's gradient norm. A partner that took no part in the loss is left as it is."""
    for n, opt in opts.items():
        params = [q for q in nets[n].parameters() if q.grad is not None]
        if n != host:
            if not params:  # no gradient: nothing to step (a no-op step keeps the LR scheduler's order check
                if scaler is None:  # quiet; a scaler would refuse a step with no inf checks recorded)
                    opt.step()
                continue
            for q in params:
                q.grad.neg_()  # type: ignore[union-attr]  # ascent: the reversed gradient
        if grad_clip:
            if scaler is not None:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if scaler is not None:
            scaler.step(opt)
        else:
            opt.step()
    if scaler is not None:
        scaler.update()
