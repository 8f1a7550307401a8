"""Losses of MART, AWP and N-FGSM (stateless functions; written from the papers).

- :func:`mart_loss` — Wang et al., ICLR 2020, "Improving adversarial robustness requires revisiting
  misclassified examples": BCE(f(x'), y) + β·KL(f(x) ‖ f(x'))·(1 − f_y(x)), where the boosted
  cross-entropy BCE = −log f_y(x') − log(1 − max_{k≠y} f_k(x')).
- :func:`nfgsm_examples` — de Jorge et al., NeurIPS 2022, "Make some noise": x + η with
  η ~ U[−kε, kε] (k = 2), then one signed-gradient step of α = ε; **no** projection back onto the
  ε-ball (the perturbation reaches (k+1)·ε), only clipping to the pixel bounds.
- :func:`awp_perturbation` / :class:`PerturbedForward` — Wu et al., NeurIPS 2020, "Adversarial weight
  perturbation": a weight perturbation v of each weight tensor, v_l = γ·‖w_l‖·g_l / ‖g_l‖ with g the
  gradient of the base loss (pgd-at or TRADES) at the adversarial examples, computed on a **proxy**
  (detached copies of the weights and buffers, so neither the weights, their gradients nor BatchNorm
  statistics move). The training loss is then evaluated at w + v through ``torch.func.functional_call``:
  the stored weights never change, so "restoring" them after the step is exact by construction, and the
  gradient reaching w is the gradient at w + v — the paper's perturb → step → restore, except that weight
  decay acts on w rather than w + v.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from attacks.base import frozen_eval, input_gradient
from attacks.threat import ThreatModel

Forward = Callable[[torch.Tensor], torch.Tensor]


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


def mart_loss(net: Forward, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """MART's loss on a batch (batch means; gradients through every term, the weight 1 − f_y(x) included)."""
    logits, logits_adv = net(x), net(x_adv)
    log_p_adv = F.log_softmax(logits_adv.float(), dim=1)
    p_adv = log_p_adv.exp()
    true = F.one_hot(y, p_adv.shape[1]).bool()
    ce_adv = F.nll_loss(log_p_adv, y)
    top_wrong = p_adv.masked_fill(true, 0.0).amax(dim=1)
    margin = -torch.log((1.0 - top_wrong).clamp_min(1e-12)).mean()
    log_p = F.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    kl = (p * (log_p - log_p_adv)).sum(dim=1)
    weight = 1.0 - p.gather(1, y[:, None]).squeeze(1)
    robust = (kl * weight).mean()
    loss = ce_adv + margin + beta * robust
    return loss, {"bce": (ce_adv + margin).detach(), "kl": robust.detach(), "acc": _acc(logits, y),
                  "adv_acc": _acc(logits_adv, y)}


def nfgsm_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, k: float = 2.0,
                   step_size: float | None = None) -> torch.Tensor:
    """N-FGSM examples: noise uniform in the (k·ε)-ball (global RNG), one step of ``step_size`` (default ε)
    along the sign (L-inf) / unit direction (L2) of the cross-entropy gradient; clipped to the pixel bounds only."""
    alpha = threat.eps if step_size is None else step_size
    lo, hi = threat.bounds
    noise = ThreatModel(threat.norm, k * threat.eps, bounds=threat.bounds).random_delta(x) if k > 0 else torch.zeros_like(x)
    start = (x + noise).clamp(lo, hi)
    with frozen_eval(model), torch.enable_grad():
        start = start.detach().requires_grad_(True)
        grad = input_gradient(F.cross_entropy(model(start).float(), y, reduction="sum"), start)
    return (start.detach() + alpha * threat.normalize_step(grad)).clamp(lo, hi).detach()


def perturbable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters AWP perturbs: trainable weight tensors of two or more dimensions (conv and linear
    weights; biases and normalisation scales are left alone, as in the paper)."""
    return [(n, p) for n, p in model.named_parameters() if p.ndim > 1 and p.requires_grad]


def awp_perturbation(model: nn.Module, loss_of: Callable[[Forward], torch.Tensor], gamma: float) -> dict[int, torch.Tensor]:
    """AWP's weight perturbation ``{id(parameter): v}`` with v_l = γ·‖w_l‖·g_l/‖g_l‖, g = ∇_w loss_of(proxy).

    ``loss_of(forward)`` computes the base loss with the given forward function. The proxy is ``model``
    run functionally on detached copies of its parameters and buffers (in ``model``'s current mode), so
    the model's weights, ``.grad`` fields and BatchNorm statistics are untouched."""
    if gamma < 0:
        raise ValueError(f"awp_gamma must be >= 0, got {gamma}.")
    weights = perturbable(model)
    if gamma == 0 or not weights:
        return {}
    params = {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    state = {**params, **buffers}

    def proxy(inp: torch.Tensor) -> torch.Tensor:
        return functional_call(model, state, (inp,))

    with torch.enable_grad():
        grads = torch.autograd.grad(loss_of(proxy), [params[n] for n, _ in weights], allow_unused=True)
    out: dict[int, torch.Tensor] = {}
    for (_, w), g in zip(weights, grads):
        if g is None:
            continue
        g = g.detach().float()
        scale = gamma * w.detach().float().norm() / (g.norm() + 1e-12)
        out[id(w)] = (scale * g).to(w.dtype)
    return out


class PerturbedForward:
    """``net``'s forward at weights w + v (``v`` from :func:`awp_perturbation`, keyed by parameter id).

    ``net`` may be the raw model or a wrapper of it (DDP): its parameters are matched by identity. Calls
    share one w + v graph, so every call's gradient flows back into the stored (unchanged) weights."""

    def __init__(self, net: nn.Module, v: dict[int, torch.Tensor]) -> None:
        self.net = net
        self.params = {n: p + v[id(p)] for n, p in net.named_parameters() if id(p) in v}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.params, (x,), strict=False)
