"""The engine's numeric setup of a player step: its optimizer and mixed-precision context."""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch

from attacks.checks import check_choice

if TYPE_CHECKING:
    from .trainer import Player


OPTIMIZERS = ("adam", "adamw", "sgd")


def make_optimizer(p: Player, params) -> torch.optim.Optimizer:
    """The optimizer a player asks for (``Player.optimizer``)."""
    check_choice(p.optimizer, "optimizer", OPTIMIZERS)
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, nesterov=p.momentum > 0)
    cls = torch.optim.AdamW if p.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=p.lr, betas=p.betas, weight_decay=p.weight_decay)


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return nullcontext(), None
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return torch.autocast("cuda", dtype=dtype), scaler
    return torch.autocast(device.type, dtype=torch.bfloat16), None
