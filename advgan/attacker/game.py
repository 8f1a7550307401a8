"""The AdvGAN min-max game: players D then G against a frozen target classifier (a black-box surrogate adds S)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from attacks.base import random_targets
from attacks.losses import cw_margin, is_adversarial

from ..engine import MinMaxGame, Player
from ..engine.datacheck import BatchSpec
from ..engine.game import Batch, LossParts, Nets
from ..gans import losses
from .generator_attack import generator_delta

if TYPE_CHECKING:
    from .config import AdvGANConfig

KIND = "advgan"


class AdvGANGame(MinMaxGame):
    """``L_G = L_adv + alpha * L_GAN + beta * L_hinge + div_weight * L_div [+ spread_weight * L_spread]
    [+ aux_weight * L_aux]`` against ``target`` (frozen); D tells x from x_adv (and, with ``aux_weight``, also
    classifies x by its label and x_adv by its target; ``L_aux`` is that classifier's loss on x_adv's target).

    Args:
        config: the AdvGAN settings.
        G, D: the generator of perturbations and the discriminator.
        target: the classifier attacked (frozen: eval mode, no parameter gradients, never trained).
        num_classes, in_chans: what the target classifies (checked again when a checkpoint resumes).
    """

    kind = KIND

    def __init__(self, config: AdvGANConfig, G: nn.Module, D: nn.Module, target: nn.Module, *, num_classes: int,
                 in_chans: int) -> None:
        self.cfg, self.target = config, target
        self.num_classes, self.in_chans = num_classes, in_chans
        self.nets: dict[str, nn.Module] = {"D": D, "G": G}
        #: targeted: running miss rate per target class (the curriculum's weights; see draw_targets)
        self.miss = torch.full((num_classes,), 0.5)

    def target_model(self) -> nn.Module:
        """The classifier the generator attacks (for a dynamic black-box game: the surrogate S)."""
        return self.target

    def attacked(self, nets: Nets) -> nn.Module:
        """The attacked classifier among the networks of a step (the target itself; S in the dynamic game)."""
        return self.target

    def players(self) -> list[Player]:
        c = self.cfg
        return [Player("D", c.lr_d, c.d_steps, c.betas, c.weight_decay),
                Player("G", c.lr_g, c.g_steps, c.betas, c.weight_decay, ema=bool(c.ema_decay))]

    def frozen_modules(self) -> list[nn.Module]:
        return [self.target]

    def config_dict(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "in_chans": self.in_chans}

    def batch_spec(self) -> BatchSpec:
        return BatchSpec(num_classes=self.num_classes, channels=self.in_chans)

    def draw_targets(self, y: torch.Tensor) -> torch.Tensor | None:
        """Random targets != y (targeted games): uniform, or with ``target_curriculum = s`` drawn with weight
        ``1 + s * miss[t]`` so the targets G misses most come up most (a per-target curriculum)."""
        if not self.cfg.targeted:
            return None
        if not self.cfg.target_curriculum:
            return random_targets(y, self.num_classes)
        w = (1.0 + self.cfg.target_curriculum * self.miss.to(y.device)).expand(y.shape[0], -1).clone()
        w[torch.arange(y.shape[0], device=y.device), y] = 0.0
        return torch.multinomial(w, 1).squeeze(1)

    @torch.no_grad()
    def _track_misses(self, t: torch.Tensor, hit: torch.Tensor, momentum: float = 0.9) -> None:
        """Fold one batch's hits into the running miss rate of each target class present (no host sync)."""
        k = self.num_classes
        n = torch.bincount(t, minlength=k).float()
        h = torch.bincount(t, weights=hit.float(), minlength=k)
        miss = self.miss.to(t.device)
        self.miss = torch.where(n > 0, momentum * miss + (1 - momentum) * (1 - h / n.clamp(min=1)), miss)

    def adversarial(self, x: torch.Tensor, t: torch.Tensor | None, generator: nn.Module | None = None,
                    y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_adv, delta)`` with ``x_adv = clip(x + G(x [, t]), 0, 1)`` inside the threat model (``y``, the true
        labels, is unused here: for games whose example also depends on them)."""
        G = generator if generator is not None else self.nets["G"]
        delta = generator_delta(G, x, t, self.cfg.threat)
        x_adv = (x + delta).clamp(0.0, 1.0)
        return x_adv, x_adv - x

    def adv_loss(self, logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        """Per-sample L_adv: the C&W margin with confidence ``kappa`` (untargeted, or toward ``t``)."""
        return cw_margin(logits, y, t, self.cfg.kappa)

    def loss(self, player: str, nets: Nets, batch: Batch, step: int) -> tuple[torch.Tensor, LossParts]:
        x, y = batch[0], batch[1]
        if self.cfg.shift:
            x = random_shift(x, self.cfg.shift)
        t = self.draw_targets(y)
        cfg, D, G = self.cfg, nets["D"], nets["G"]
        t_aux = t if cfg.aux_weight else None  # the targets D's auxiliary classifier learns (None: no classifier)
        if player == "D":
            with torch.no_grad():
                x_adv, _ = self.adversarial(x, t, G, y=y)
            if t_aux is None:
                return losses.d_loss(cfg.gan_loss, D(x), D(x_adv)), {}
            (p_real, c_real), (p_fake, c_fake) = D(x, with_aux=True), D(x_adv, with_aux=True)
            l_cls = aux_class_loss(c_real, y) + aux_class_loss(c_fake, t_aux)
            return losses.d_loss(cfg.gan_loss, p_real, p_fake) + cfg.aux_weight * l_cls, {"aux": l_cls.detach()}
        x_adv, delta = self.adversarial(x, t, G, y=y)
        logits = self.attacked(nets)(x_adv)
        l_adv = self.adv_loss(logits, y, t).mean()
        parts: LossParts = {}
        if t_aux is not None:
            p_fake, c_fake = D(x_adv, with_aux=True)
            l_aux = aux_class_loss(c_fake, t_aux)
            parts["aux"] = l_aux.detach()
        else:
            p_fake, l_aux = D(x_adv), None
        l_gan = losses.g_loss(cfg.gan_loss, p_fake)
        norms = delta.flatten(1).norm(dim=1)
        l_hinge = torch.relu(norms - cfg.hinge_bound(x[0].numel())).mean()
        l_div = batch_shared_energy(delta)
        loss = l_adv + cfg.alpha * l_gan + cfg.beta * l_hinge + cfg.diversity_weight * l_div
        if l_aux is not None:
            loss = loss + cfg.aux_weight * l_aux
        hit = is_adversarial(logits.detach(), y, t)
        if cfg.spread_weight and t is None:  # spread the fooled inputs: the others still need l_adv's push
            l_spread = class_spread(logits, y, hit, floor=cfg.spread_floor)
            loss = loss + cfg.spread_weight * l_spread
            parts["spread"] = l_spread.detach()
        if t is not None and cfg.target_curriculum:
            self._track_misses(t, hit)
        success = hit.float().mean()
        return loss, {"adv": l_adv.detach(), "gan": l_gan.detach(), "hinge": l_hinge.detach(), "div": l_div.detach(),
                      "l2": norms.detach().mean(), "asr": success, **parts}


def aux_class_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The auxiliary classifier's loss: cross-entropy of D's class logits against ``labels`` (the true classes of
    clean images, the targets of adversarial ones), as in AC-GAN."""
    return nn.functional.cross_entropy(class_logits.float(), labels.long())


def class_spread(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                 floor: float | None = None) -> torch.Tensor:
    """The class-spread term: ``log K - H(mean_i softmax_{k != y_i}(logits_i))`` over the batch (>= 0).

    With ``floor`` (nats) it is the hinge ``relu(floor - H)``: no push once the fooled inputs already spread over
    classes with an entropy of ``floor``, so the generator spends nothing on spread it does not need.

    The mean is the adversarial class distribution of the inputs in ``mask`` (default: all; each input's true class
    left out): the term is ``log K`` when they all go to one class and near 0 when they spread over all classes
    (``log K``, with no gradient, when ``mask`` is empty). Differentiable: an untargeted generator that minimises
    it spreads its fooled inputs over the classes instead of sending them all to one (see
    :func:`attacks.diagnostics.adversarial_class_entropy`)."""
    z = logits.float().scatter(1, y[:, None], float("-inf"))
    w = torch.ones_like(y, dtype=torch.float32) if mask is None else mask.float()
    p = (w[:, None] * z.softmax(1)).sum(0) / w.sum().clamp(min=1.0)
    h = -(p * p.clamp_min(1e-12).log()).sum()
    if floor is not None:
        return torch.relu(floor - h)
    return math.log(logits.shape[1]) - h


def batch_shared_energy(delta: torch.Tensor) -> torch.Tensor:
    """The diversity term: ``||mean delta||^2 / mean ||delta||^2`` over the batch (differentiable; 1 for one
    perturbation shared by every input, about 1/N for independent ones). See :mod:`attacks.diagnostics`."""
    d = delta.flatten(1).float()
    return d.mean(0).pow(2).sum() / d.pow(2).sum(1).mean().clamp(min=1e-12)


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each image shifted by its own random offset of up to ``max_shift`` pixels per axis (edge pixels repeated)."""
    n, _, h, w = x.shape
    s = max_shift
    padded = torch.nn.functional.pad(x, (s, s, s, s), mode="replicate")
    off = torch.randint(0, 2 * s + 1, (n, 2), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + off[:, :1])           # (n, h)
    cols = (torch.arange(w, device=x.device)[None, :] + off[:, 1:])           # (n, w)
    idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, padded.shape[-1])
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)
