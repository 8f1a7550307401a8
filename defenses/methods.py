"""Per-method batch losses of robust fine-tuning (stateless functions).

Each method turns a clean batch into a loss for the classifier being trained:

- ``clean``    — cross-entropy on clean data (the baseline for time per epoch);
- ``augment``  — cross-entropy on a batch mixed by an :class:`AdversarialAugmentation`;
- ``pgd-at``   — Madry et al. (2018): cross-entropy on PGD examples (random start, last iterate);
- ``fgsm-rs``  — Wong et al. (2020), "Fast is better than free": one FGSM step of 1.25·ε from a
  uniform random start (the catastrophic-overfitting guard lives in ``finetune``);
- ``augmix``   — Hendrycks et al. (2020): CE on clean data + λ·Jensen–Shannon consistency over two
  AugMix views (``defenses.augmix``), for robustness to natural corruptions;
- ``trades``   — Zhang et al. (2019): CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' maximising the KL
  (inner maximisation from x + 0.001·N(0, 1), as in the paper's code);
- ``mart``     — Wang et al. (2020): boosted CE on PGD examples + β·KL weighted by 1 − f_y(x);
- ``awp``      — Wu et al. (2020): pgd-at or trades (``awp_base``) evaluated at adversarially perturbed
  weights w + v, ‖v_l‖ = γ·‖w_l‖ (``awp_gamma``; 0 during the warm-up);
- ``n-fgsm``   — de Jorge et al. (2022): FGSM step of α = ε from x + U[−kε, kε], no projection
  (losses and examples of these three in ``defenses.losses_robust``).

Adversarial examples are generated against ``model`` (the raw classifier, never a DDP wrapper) under
``attacks.base.frozen_eval``: eval mode, no parameter gradients, BatchNorm statistics untouched. The
training forward pass uses ``net`` (possibly DDP-wrapped) in train mode.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attacks import PGD
from attacks.base import frozen_eval, input_gradient
from attacks.threat import ThreatModel

from . import losses_robust as robust
from .augmix import augmix_loss

#: the 0.1 methods first, then those added since (the CLI lists them in this order); advgan-at is a game of its
#: own (defenses.advgan_at), the others are batch losses
METHODS = ("augment", "pgd-at", "fgsm-rs", "trades", "clean", "augmix", "mart", "awp", "n-fgsm", "advgan-at")
AWP_BASES = ("pgd-at", "trades")


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


def trades_loss(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                beta: float) -> tuple[torch.Tensor, dict]:
    """CE(f(x), y) + β·KL(f(x) ‖ f(x')) with batch-mean KL (``net`` in train mode; gradients through both terms)."""
    logits = net(x)
    logits_adv = net(x_adv)
    ce = F.cross_entropy(logits, y)
    kl = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits.float(), dim=1), reduction="batchmean")
    return ce + beta * kl, {"ce": ce.detach(), "kl": kl.detach(), "acc": _acc(logits, y), "adv_acc": _acc(logits_adv, y)}


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


def ce_on(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, key: str = "acc") -> tuple[torch.Tensor, dict]:
    logits = net(x)
    return F.cross_entropy(logits, y), {key: _acc(logits, y)}


def batch_loss(method: str, net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threat: ThreatModel,
               pgd_steps: int, pgd_step_size: float | None, trades_beta: float, aug: Any = None,
               step: int | None = None, mart_beta: float = 6.0, nfgsm_k: float = 2.0, awp_gamma: float = 0.0,
               awp_base: str = "pgd-at") -> tuple[torch.Tensor, dict]:
    """The loss of ``method`` on one batch. ``net``: the network to train (maybe DDP-wrapped); ``model``:
    the same network unwrapped, used to generate adversarial examples; ``threat``: ε (ramped) and norm."""
    if method == "clean":
        return ce_on(net, x, y)
    if method == "augment":
        if aug is None:
            raise ValueError("method 'augment' needs an AdversarialAugmentation (sources).")
        x_mix, y_mix = aug(model, x, y, step=step)
        return ce_on(net, x_mix, y_mix)
    if method == "augmix":
        if aug is None:
            raise ValueError("method 'augmix' needs an AugMix recipe (defenses.augmix.AugMix).")
        return augmix_loss(net, x, y, aug.views(x, 2, step=step), aug.jsd_lambda)
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
    if method == "mart":
        x_adv = pgd_train_examples(model, x, y, threat, steps=pgd_steps, step_size=step_size)
        return robust.mart_loss(net, x, x_adv, y, mart_beta)
    if method == "n-fgsm":
        return ce_on(net, robust.nfgsm_examples(model, x, y, threat, k=nfgsm_k), y, key="adv_acc")
    if method == "awp":
        return _awp_loss(net, model, x, y, threat, pgd_steps, step_size, trades_beta, awp_gamma, awp_base)
    if method == "advgan-at":
        raise ValueError("method 'advgan-at' is a three-player game (defenses.advgan_at.AdvGANATGame), not a batch loss; "
                         "use finetune(..., method='advgan-at').")
    raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}.")


def _awp_loss(net: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, steps: int,
              step_size: float, beta: float, gamma: float, base: str) -> tuple[torch.Tensor, dict]:
    """AWP on ``base``: adversarial examples at w, the weight perturbation v from a proxy, the loss at w + v."""
    if base not in AWP_BASES:
        raise ValueError(f"awp_base must be one of {', '.join(AWP_BASES)}, got {base!r}.")
    if base == "trades":
        x_adv = trades_examples(model, x, threat, steps=steps, step_size=step_size)

        def loss_of(f: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict]:
            return trades_loss(f, x, x_adv, y, beta)
    else:
        x_adv = pgd_train_examples(model, x, y, threat, steps=steps, step_size=step_size)

        def loss_of(f: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict]:
            return ce_on(f, x_adv, y, key="adv_acc")
    v = robust.awp_perturbation(model, lambda f: loss_of(f)[0], gamma)
    return loss_of(robust.PerturbedForward(net, v) if v else net)
