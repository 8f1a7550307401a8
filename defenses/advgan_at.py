"""``advgan-at``: adversarial training against a generator trained online (a three-player game on the engine).

Players, in schedule order (one round per training batch):

- ``C`` — the classifier being fine-tuned. It minimises
  ``w * CE(f(x), y) + (1 - w) * CE(f(x_adv), y) + beta * KL(f(x) || f(x_adv))`` (``gen_clean``, ``gen_kl``:
  the TRADES-style consistency term), where ``x_adv`` comes from the generator (one forward, no gradient)
  and, for a ``gen_mix`` share of each batch, from one-step random-start FGSM (fgsm-rs, Wong et al. 2020).
  C runs in eval mode while D and G step (``frozen_mode="eval"``): they attack C as it will be evaluated.
- ``D`` — AdvGAN's discriminator (x vs x_adv), skipped when ``gen_alpha == 0``.
- ``G`` — AdvGAN's generator, ``gen_steps`` steps per C step (D and G train on the first ``gen_fraction`` of
  the batch: the cost knob), minimising AdvGAN's loss
  ``CW_margin(f(x_adv); kappa) + alpha * L_GAN(D(x_adv))`` against the *current* classifier (the hinge term
  of AdvGAN is off: an L-inf defense wants the strongest attack inside the ball, which ``eps * tanh`` keeps).

D and G are AdvGAN's own (:class:`advgan.attacker.game.AdvGANGame` losses, ResNet generator, conv
discriminator). The ε ramp (``eps_ramp_epochs``) scales both the generator's and fgsm-rs's budget.
``gen_noise > 0`` feeds that many N(0, 1) noise channels to the generator (:class:`NoisyGenerator`,
the diversity input of Jang et al. 2019 "Learning to generate diverse attacks"), and ``gen_grad`` feeds it the
sign (L-inf; L2: the unit direction) of the current classifier's input gradient at x, taken for the classifier's own
prediction (no labels), as that paper's generator reads the loss gradient: one more forward and backward of C per
generated batch, so G learns a gradient-informed step instead of an input-only map. ``gen_init`` makes G's example the
*start* of one FGSM step of size ``gen_init_step * ε`` (projected back into the ball) instead of C's training example:
the generator becomes a learned, input-dependent initialisation of a one-step attack (Jia et al. 2022, "Boosting fast
adversarial training with learnable adversarial initialization"), trained, as there, on C's loss *after* the step
(the step's direction is a constant to G); one forward and backward of C per generated row, in C's and in G's step.
``gen_reverse`` drops G's own step: G is C's gradient-reversal partner on the engine (``Player(ascent_of="C")``)
and steps, from C's own backward, *up* C's loss on the generated rows (cross-entropy, not the C&W margin; no D),
on every row of every batch, for the price of G's backward — the simultaneous descent-ascent form of the game.
The defaults are that form with ``gen_init`` (step ε/2, width-2 G, no D, no clean CE): the best advgan-at measured
(benchmarks/overfit.py ``advgan-at-rev-w2``: 59.5 % under AutoAttack at 1.95× a clean epoch after 30 epochs);
:data:`GAN_GAME` restores the D-and-G game (G's own steps on AdvGAN's loss), the earlier defaults.
The other techniques follow Lee et al. 2017 (Generative Adversarial Trainer: online generator, clean + adversarial loss) and Baluja &
Fischer 2018 (Adversarial Transformation Networks: a feed-forward attacker of one forward pass).

A generator passed in (a trained ``AdvGAN`` — G and D — or its ``GeneratorAttack``) warm-starts G; one
trained for another threat model (ε, norm) or targeted is refused. The engine checkpoints G, D, C and their
optimizers, so ``finetune(..., out_dir=...)`` resumes the whole game.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from advgan.attacker import AdvGANConfig
from advgan.attacker.config import build_generator
from advgan.attacker.game import AdvGANGame
from advgan.attacker.generator_attack import generator_delta
from advgan.engine import Player
from advgan.engine.game import Batch, LossParts, Nets
from advgan.gans.nets.encdec import ConvDiscriminator
from attacks import Classifier
from attacks.base import frozen_eval, input_gradient
from attacks.checks import check_labels
from attacks.threat import ThreatModel

from .methods import pgd_train_examples, ramped_eps

if TYPE_CHECKING:
    from .finetune import FinetuneConfig

KIND = "robust-finetune-advgan-at"

#: advgan-at's defaults before the learned-init recipe became the default (the D-and-G game: G takes its own steps
#: on AdvGAN's loss against D, C trains on half clean CE, width 8, no FGSM step from G's example); spread them into
#: ``FinetuneConfig`` to reproduce the rows measured with them (``FinetuneConfig(method="advgan-at", **GAN_GAME)``)
GAN_GAME: dict[str, Any] = {"gen_clean": 0.5, "gen_alpha": 1.0, "gen_width": 8, "gen_init": False, "gen_init_step": 1.0,
                            "gen_reverse": False}


class NoisyGenerator(nn.Module):
    """``G(x [, t]) = inner(cat(x, z) [, t])`` with fresh noise ``z ~ N(0, 1)`` of ``z_chans`` channels per call.

    The noise is drawn from the global RNG (which the engine checkpoints), so a resumed run draws the same."""

    def __init__(self, inner: nn.Module, z_chans: int) -> None:
        super().__init__()
        if not isinstance(z_chans, int) or isinstance(z_chans, bool) or z_chans < 1:
            raise ValueError(f"z_chans must be a positive integer, got {z_chans!r}.")
        self.inner, self.z_chans = inner, z_chans

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        z = torch.randn(x.shape[0], self.z_chans, *x.shape[2:], device=x.device, dtype=x.dtype)
        inp = torch.cat([x, z], dim=1)
        return self.inner(inp, target) if target is not None else self.inner(inp)


def attacker_config(cfg: FinetuneConfig) -> AdvGANConfig:
    """The AdvGAN settings of the online attacker (threat model, kappa, alpha, width, lr) from a FinetuneConfig."""
    return AdvGANConfig(eps=cfg.eps, norm=cfg.norm, kappa=cfg.gen_kappa, alpha=cfg.gen_alpha, beta=0.0,
                        width=cfg.gen_width, lr_g=cfg.gen_lr, lr_d=cfg.gen_lr, seed=cfg.seed, progress=False)


def check_generator(generator: Any, cfg: FinetuneConfig) -> tuple[nn.Module, nn.Module | None]:
    """``(G, D or None)`` of a generator passed to ``finetune``: an ``AdvGAN`` or a ``GeneratorAttack``, untargeted,
    trained for the config's threat model (same norm and ε); anything else is refused before any work."""
    from advgan.attacker import AdvGAN
    from advgan.attacker.generator_attack import GeneratorAttack

    if cfg.method != "advgan-at":
        raise ValueError(f"a generator is used only by method 'advgan-at', not {cfg.method!r}; drop generator= "
                         "(or pass it as a source for method 'augment').")
    if isinstance(generator, AdvGAN):
        eps, norm, targeted = generator.config.eps, generator.config.norm, generator.config.targeted
        G, D = generator.G, generator.D
    elif isinstance(generator, GeneratorAttack):
        eps, norm, targeted = generator.eps, generator.norm, generator.targeted
        G, D = generator.generator, None
    else:
        raise TypeError(f"generator must be an advgan.AdvGAN or its GeneratorAttack (atk.as_attack()), got "
                        f"{type(generator).__name__}.")
    if norm != cfg.norm or abs(float(eps) - cfg.eps) > 1e-6 * max(1.0, cfg.eps):
        raise ValueError(f"the generator was trained for ({norm}, eps={float(eps):g}) but the config's threat model is "
                         f"({cfg.norm}, eps={cfg.eps:g}); train the generator at the same eps and norm, or set eps={float(eps):g}.")
    if targeted:
        raise ValueError("the generator is targeted (targeted=True); advgan-at needs an untargeted generator.")
    if cfg.gen_grad:
        raise ValueError("gen_grad=True trains a generator that also reads the classifier's input gradient; the one passed "
                         "in reads images only: drop generator= (a fresh G is built) or set gen_grad=False.")
    if cfg.gen_noise and not (isinstance(G, NoisyGenerator) and G.z_chans == cfg.gen_noise):
        raise ValueError(f"gen_noise={cfg.gen_noise} needs a generator with {cfg.gen_noise} noise input channels; "
                         "the one passed in has none: set gen_noise=0 to warm-start from it.")
    return copy.deepcopy(G).train().requires_grad_(True), (copy.deepcopy(D).train().requires_grad_(True) if D is not None else None)


class AdvGANATGame(AdvGANGame):
    """The three-player game of ``advgan-at``: C (the classifier), then D and G (AdvGAN) attacking the current C.

    Args:
        clf: the classifier being fine-tuned (trained in place by the engine).
        cfg: the fine-tuning settings (``method="advgan-at"``; the ``gen_*`` fields).
        G, D: a warm-start generator / discriminator (default: fresh AdvGAN nets, seeded by ``cfg.seed``).
    """

    kind = KIND

    def __init__(self, clf: Classifier, cfg: FinetuneConfig, *, G: nn.Module | None = None, D: nn.Module | None = None,
                 steps_per_epoch: int = 1) -> None:
        acfg = attacker_config(cfg)
        in_chans, n = clf.data_chans, clf.num_classes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if G is None:
                extra = (in_chans if cfg.gen_grad else 0) + cfg.gen_noise  # gradient and noise channels
                G = _generator(acfg, in_chans, extra) if extra else build_generator(acfg, in_chans, n)
                if cfg.gen_noise:
                    G = NoisyGenerator(G, cfg.gen_noise)
            if D is None:
                D = ConvDiscriminator(in_chans, width=cfg.gen_width)
        super().__init__(acfg, G, D, clf, num_classes=n, in_chans=in_chans)
        self.clf, self.fcfg = clf, cfg
        self.nets = {"C": clf, "D": D, "G": G} if cfg.gen_alpha else {"C": clf, "G": G}
        self.steps_per_epoch = steps_per_epoch
        self._threat = cfg.threat
        self._checked = False

    # the fine-tuning side: C's schedule entry, the ε ramp, the first batch check
    def players(self) -> list[Player]:
        c, a = self.fcfg, self.cfg
        players = [Player("C", c.lr, 1, c.betas, c.weight_decay, optimizer=c.optimizer, momentum=c.momentum, frozen_mode="eval")]
        if c.gen_reverse_on:  # G steps inside C's steps, by ascent on C's loss (one backward for both)
            return players + [Player("G", a.lr_g, 1, a.betas, ascent_of="C")]
        if c.gen_alpha:
            players.append(Player("D", a.lr_d, 1, a.betas))
        return players + [Player("G", a.lr_g, c.gen_steps, a.betas)]

    def frozen_modules(self) -> list[nn.Module]:
        return []

    def config_dict(self) -> dict[str, Any]:
        G = self.nets["G"]
        return {"classifier": self.clf.config(), "generator": type(G).__name__,
                "generator_params": sum(p.numel() for p in G.parameters())}

    def current_eps(self, step: int) -> float:
        """ε of round ``step``: the fine-tuning ramp (``eps_ramp_epochs``), shared with the other methods."""
        return ramped_eps(self.fcfg.eps, self.fcfg.eps_ramp_epochs, step, self.steps_per_epoch)

    def attacked(self, nets: Nets) -> nn.Module:
        return nets["C"]

    def adversarial(self, x: torch.Tensor, t: torch.Tensor | None, generator: nn.Module | None = None,
                    y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """AdvGAN's ``x_adv`` at the step's (ramped) ε (``gen_grad``: G reads x and the gradient direction).

        With ``gen_init`` G's example is the start of one FGSM step on C's cross-entropy for ``y`` (default: C's own
        prediction at x), and the stepped example is returned with G's graph kept: G trains to make the *step* strong."""
        G = generator if generator is not None else self.nets["G"]
        inp = torch.cat([x, self.gradient_direction(x)], dim=1) if self.fcfg.gen_grad else x
        x_adv = (x + generator_delta(G, inp, t, self._threat)).clamp(0.0, 1.0)
        if self.fcfg.gen_init:
            if y is None:
                with torch.no_grad(), frozen_eval(self.clf):
                    y = self.clf(x).argmax(1)
            x_adv = self.fgsm_from(x, x_adv, y)
        return x_adv, x_adv - x

    def gradient_direction(self, x: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent direction of the current classifier's cross-entropy at x for its own prediction
        (sign for L-inf, unit L2 direction for L2), computed under ``frozen_eval`` (no parameter gradients, BatchNorm
        statistics untouched) and detached: G gets it as an input, never a path into C."""
        with frozen_eval(self.clf), torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = self.clf(xg).float()
            grad = input_gradient(F.cross_entropy(logits, logits.argmax(1), reduction="sum"), xg)
        return self._threat.normalize_step(grad).detach()

    def fgsm_from(self, x: torch.Tensor, start: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One FGSM step of size ``gen_init_step * ε`` on C's cross-entropy from ``start`` (G's example), projected into
        the ε-ball around ``x`` and into [0, 1]. The step's direction is taken under ``frozen_eval`` (no parameter
        gradients, BatchNorm untouched) and detached; the result keeps ``start``'s graph (Jia et al. 2022: the
        generator of the initialisation is trained on the loss after the step)."""
        with frozen_eval(self.clf), torch.enable_grad():
            xs = start.detach().requires_grad_(True)
            grad = input_gradient(F.cross_entropy(self.clf(xs).float(), y, reduction="sum"), xs)
        step = (self.fcfg.gen_init_step * self._threat.eps * self._threat.normalize_step(grad)).detach()
        return self._threat.project(x, start + step)

    def loss(self, player: str, nets: Nets, batch: Batch, step: int) -> tuple[torch.Tensor, LossParts]:
        eps = self.current_eps(step)
        self._threat = ThreatModel(self.fcfg.norm, eps)
        if player != "C":
            k = max(1, int(round(self.fcfg.gen_fraction * batch[0].shape[0])))
            batch = tuple(b[:k] for b in batch)
            if "D" in nets:
                return super().loss(player, nets, batch, step)
            loss, parts = super().loss(player, {**nets, "D": _NoD()}, batch, step)
            parts.pop("gan", None)  # alpha = 0: no GAN term
            return loss, parts
        x, y = batch[0], batch[1]
        if not self._checked:
            self.clf.check_input(x)
            check_labels(y, x.shape[0], self.clf.num_classes)
            self._checked = True
        loss, parts = self.classifier_loss(nets["C"], nets["G"], x, y)
        if self.fcfg.eps_ramp_epochs:
            parts["eps"] = torch.tensor(eps)
        return loss, parts

    def classifier_loss(self, net: nn.Module, G: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, LossParts]:
        """C's loss on clean + generated (+ fgsm-rs) examples; G is used without gradients (``gen_reverse``: with
        them, and the engine steps G up this same loss)."""
        c = self.fcfg
        k = int(round(c.gen_mix * x.shape[0]))  # the first k from fgsm-rs, the rest from G (G runs on those only)
        parts_adv = []
        if k:
            parts_adv.append(pgd_train_examples(self.clf, x[:k], y[:k], self._threat, steps=1, step_size=1.25 * self._threat.eps))
        if k < x.shape[0]:
            # gen_reverse: G's graph is kept, so C's backward also gives G the (reversed) gradient of this loss;
            # else without gradients. (gen_init: the FGSM step from G's example takes its own gradient inside.)
            with torch.set_grad_enabled(c.gen_reverse_on):
                parts_adv.append(self.adversarial(x[k:], None, G, y=y[k:])[0])
        x_adv = torch.cat(parts_adv)
        need_clean = c.gen_clean > 0 or c.gen_kl > 0
        logits = net(torch.cat([x, x_adv])) if need_clean else net(x_adv)
        logits_adv = logits[x.shape[0]:] if need_clean else logits
        ce_adv = F.cross_entropy(logits_adv, y)
        loss = (1.0 - c.gen_clean) * ce_adv
        parts: LossParts = {"ce_adv": ce_adv.detach(), "adv_acc": _acc(logits_adv, y)}
        if need_clean:
            logits_clean = logits[: x.shape[0]]
            ce = F.cross_entropy(logits_clean, y)
            loss = loss + c.gen_clean * ce
            parts.update(ce=ce.detach(), acc=_acc(logits_clean, y))
            if c.gen_kl:
                kl = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits_clean.float(), dim=1),
                              reduction="batchmean")
                loss = loss + c.gen_kl * kl
                parts["kl"] = kl.detach()
        return loss, parts


class _NoD(nn.Module):
    """The discriminator of a game without one (``gen_alpha == 0``): a constant, so ``alpha * L_GAN`` is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 1)


def _generator(acfg: AdvGANConfig, in_chans: int, z_chans: int) -> nn.Module:
    """AdvGAN's generator that reads ``in_chans + z_chans`` channels and writes ``in_chans``."""
    from advgan.gans.nets.encdec import ResNetGenerator, UNetPerturbation

    cls = ResNetGenerator if acfg.generator == "resnet" else UNetPerturbation
    return cls(in_chans + z_chans, in_chans, width=acfg.width)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()
