"""Per-method batch losses of robust fine-tuning (stateless functions).

Each method turns a clean batch into a loss for the classifier being trained:

- ``clean``    — cross-entropy on clean data (the baseline for time per epoch);
- ``augment``  — cross-entropy on a batch mixed by an :class:`AdversarialAugmentation`;
- ``pgd-at``   — Madry et al. (2018): cross-entropy on PGD examples (random start, last iterate);
- ``fgsm-rs``  — Wong et al. (2020), "Fast is better than free": one FGSM step of 1.25·ε from a
  uniform random start (the catastrophic-overfitting guard lives in ``finetune``);
- ``trades``   — Zhang et al. (2019): CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' maximising the KL
  (inner maximisation from x + 0.001·N(0, 1), as in the paper's code).

Adversarial examples are generated against ``model`` (the raw classifier, never a DDP wrapper) under
``attacks.base.frozen_eval``: eval mode, no parameter gradients, BatchNorm statistics untouched. The
training forward pass uses ``net`` (possibly DDP-wrapped) in train mode.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attacks import PGD
from attacks.base import frozen_eval, input_gradient
from attacks.threat import ThreatModel

METHODS = ("augment", "pgd-at", "fgsm-rs", "trades", "clean", "advgan-at")  # advgan-at: a game of its own (defenses.advgan_at)


def ramped_eps(eps: float, ramp_epochs: float, step: int, steps_per_epoch: int) -> float:
    """ε of round ``step`` (0-based): ramped linearly from ~0 to ``eps`` over ``ramp_epochs`` epochs (never 0); 0: ``eps``."""
    if not ramp_epochs:
        return eps
    progress = (step + 1) / (ramp_epochs * steps_per_epoch)
    return eps * min(1.0, max(progress, 1e-3))


def pgd_train_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int,
                       step_size: float, random_start: bool = True) -> torch.Tensor:
    """Madry's training PGD on cross-entropy: random start, ``steps`` steps, the last iterate (global RNG, so the
    engine's checkpoints make it resume exactly). It is ``attacks.PGD(..., keep="last")`` on the trusted path."""
    pgd = PGD(threat.eps, threat.norm, steps=steps, step_size=step_size, random_start=random_start, keep="last", seed=None,
              bounds=threat.bounds)
    return pgd.generate(model, x, y)


def trades_examples(model: nn.Module, x: torch.Tensor, threat: ThreatModel, *, steps: int, step_size: float) -> torch.Tensor:
    """TRADES inner maximisation: x' maximising KL(f(x) ‖ f(x')) inside the threat model."""
    with frozen_eval(model), torch.enable_grad():
        with torch.no_grad():
            p_clean = F.softmax(model(x).float(), dim=1)
        adv = threat.project(x, x + 0.001 * torch.randn_like(x))
        for _ in range(steps):
            adv = adv.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(adv).float(), dim=1), p_clean, reduction="sum")
            grad = input_gradient(kl, adv)
            adv = threat.project(x, adv.detach() + step_size * threat.normalize_step(grad))
    return adv.detach()


def trades_loss(net: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """CE(f(x), y) + β·KL(f(x) ‖ f(x')) with batch-mean KL (``net`` in train mode; gradients through both terms)."""
    logits = net(x)
    logits_adv = net(x_adv)
    ce = F.cross_entropy(logits, y)
    kl = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits.float(), dim=1), reduction="batchmean")
    return ce + beta * kl, {"ce": ce.detach(), "kl": kl.detach(), "acc": _acc(logits, y), "adv_acc": _acc(logits_adv, y)}


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


def ce_on(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, key: str = "acc") -> tuple[torch.Tensor, dict]:
    logits = net(x)
    return F.cross_entropy(logits, y), {key: _acc(logits, y)}


def batch_loss(method: str, net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threat: ThreatModel,
               pgd_steps: int, pgd_step_size: float | None, trades_beta: float, aug: Any = None,
               step: int | None = None) -> tuple[torch.Tensor, dict]:
    """The loss of ``method`` on one batch. ``net``: the network to train (maybe DDP-wrapped); ``model``:
    the same network unwrapped, used to generate adversarial examples; ``threat``: ε (ramped) and norm."""
    if method == "clean":
        return ce_on(net, x, y)
    if method == "augment":
        if aug is None:
            raise ValueError("method 'augment' needs an AdversarialAugmentation (sources).")
        x_mix, y_mix = aug(model, x, y, step=step)
        return ce_on(net, x_mix, y_mix)
    step_size = pgd_step_size if pgd_step_size is not None else 2.5 * threat.eps / pgd_steps
    if method == "pgd-at":
        x_adv = pgd_train_examples(model, x, y, threat, steps=pgd_steps, step_size=step_size)
        return ce_on(net, x_adv, y, key="adv_acc")
    if method == "fgsm-rs":
        x_adv = pgd_train_examples(model, x, y, threat, steps=1, step_size=1.25 * threat.eps)
        return ce_on(net, x_adv, y, key="adv_acc")
    if method == "trades":
        x_adv = trades_examples(model, x, threat, steps=pgd_steps, step_size=step_size)
        return trades_loss(net, x, x_adv, y, trades_beta)
    if method == "advgan-at":
        raise ValueError("method 'advgan-at' is a three-player game (defenses.advgan_at.AdvGANATGame), not a batch loss; "
                         "use finetune(..., method='advgan-at').")
    raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}.")
