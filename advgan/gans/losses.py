"""The GAN loss family as stateless functions on discriminator logits, selectable by name.

``d_loss(kind, real_logits, fake_logits)`` is what the discriminator minimises,
``g_loss(kind, fake_logits)`` what the generator minimises. With D(x) = sigmoid(logit):

=================  ========================================  ===============================
kind               discriminator                              generator
=================  ========================================  ===============================
minimax            -log D(x) - log(1 - D(G(z)))               log(1 - D(G(z)))   (saturating)
non_saturating     same                                       -log D(G(z))
lsgan              ½(D(x) - 1)² + ½ D(G(z))²  (on logits)     ½(D(G(z)) - 1)²
hinge              relu(1 - D(x)) + relu(1 + D(G(z)))         -D(G(z))
wasserstein        D(G(z)) - D(x)                             -D(G(z))
=================  ========================================  ===============================

Regularisers: ``gradient_penalty`` (WGAN-GP, per-sample norms on interpolates), ``r1_penalty``;
the image-to-image term ``l1``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

GAN_LOSSES = ("minimax", "non_saturating", "lsgan", "hinge", "wasserstein")
_ALIASES = {"ns": "non_saturating", "nonsaturating": "non_saturating", "ls": "lsgan", "least_squares": "lsgan",
            "wgan": "wasserstein", "saturating": "minimax", "vanilla": "non_saturating"}


def resolve(kind: str) -> str:
    """Canonical loss name; unknown names raise with the valid list."""
    k = _ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if k not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)} (aliases: {', '.join(sorted(_ALIASES))}).")
    return k


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss (to minimise) on logits of real and generated samples."""
    k = resolve(kind)
    if k in ("minimax", "non_saturating"):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if k == "lsgan":
        return 0.5 * ((real_logits - 1) ** 2).mean() + 0.5 * (fake_logits ** 2).mean()
    if k == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss (to minimise) on the discriminator's logits of generated samples."""
    k = resolve(kind)
    if k == "minimax":
        return -F.softplus(fake_logits).mean()      # log(1 - sigmoid(l)) = -softplus(l)
    if k == "non_saturating":
        return F.softplus(-fake_logits).mean()      # -log sigmoid(l)
    if k == "lsgan":
        return 0.5 * ((fake_logits - 1) ** 2).mean()
    return -fake_logits.mean()                      # hinge and wasserstein


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     *, target: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: E[(‖∇ D(x̂)‖₂ − target)²] with x̂ uniformly between real and fake; norms per sample."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    return ((norms - target) ** 2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1: E[‖∇ D(x)‖₂²] on real data (multiply by γ/2 when adding to the D loss)."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.reshape(grad.shape[0], -1).pow(2).sum(1).mean()


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (pix2pix's reconstruction term)."""
    return (pred - target).abs().mean()


def game_value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """V(D, G) = E log D(x) + E log(1 − D(G(z))); equals −log 4 at the optimum p_g = p_data."""
    return F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean()
