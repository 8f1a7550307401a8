"""AdvGAN (Xiao et al., IJCAI 2018): a generator of adversarial perturbations trained in a min-max game.

``G(x [, t]) -> delta`` (L-inf: ``eps * tanh``, inside the ball by construction; L2: projected into the
ball), ``x_adv = clip(x + delta, 0, 1)``; a discriminator D tells x from x_adv; the target classifier f
is frozen (eval, no parameter gradients, bit-identical after training). The generator minimises

    L = L_adv + alpha * L_GAN + beta * L_hinge + div_weight * L_div
    L_adv   = C&W margin on f's logits with confidence kappa (untargeted, or toward a target t)
    L_GAN   = the GAN loss of ``advgan.losses`` (least squares by default, as in the paper)
    L_hinge = E max(0, ||delta||_2 - c)            (default beta = 0: the L-inf ball already bounds delta)
    L_div   = ||mean delta||^2 / mean ||delta||^2 over the batch (the shared energy; it keeps G from
              collapsing onto one near-universal perturbation)

(plus ``spread_weight * L_spread``, the class-spread term, when set) with ``g_steps`` generator steps per
discriminator step, optional random-shift augmentation, an EMA generator (decay 0.999) and, given a validation
set, the epoch with the best validation ASR, on the shared :class:`~advgan.engine.MinMaxTrainer`.
A targeted AdvGAN is one generator conditioned on the target class; targets are drawn at random
(different from the label) for every training batch.

    atk = AdvGAN(clf, AdvGANConfig(eps=0.3))
    history = atk.fit(train_ds, epochs=5, val_loader=test_loader)
    x_adv = atk.as_attack()(clf, x, y)
    atk.save(dir); atk = AdvGAN.load(dir, clf)        # an attacker is bound to the classifier it attacks
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from attacks import Measurement, measure
from attacks.base import frozen_eval, random_targets
from attacks.checks import check_images, check_labels, compute_dtype, explain_data_error, looks_like_probabilities, unpack_pair
from attacks.diagnostics import PerturbationStats

from .. import modelio
from ..config import Integer
from ..data.loaders import as_loader
from ..engine import Callback, SampleGrid, Trainable
from ..engine.history import History
from .callbacks import AdvGANValidation, BestGenerator, TargetCurriculum
from .config import GENERATORS, AdvGANConfig, build_generator, generator_shape  # noqa: F401 (0.2 import paths)
from .game import KIND, AdvGANGame
from .generator_attack import GeneratorAttack


def _check_classifier(classifier: Any) -> tuple[int, int]:
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier must be an attacks.Classifier (a torch.nn.Module), got {type(classifier).__name__}.")
    n, c = getattr(classifier, "num_classes", None), getattr(classifier, "data_chans", None)
    if not isinstance(n, int) or not isinstance(c, int):
        raise TypeError(
            f"classifier must be an attacks.Classifier (it knows num_classes and channels); wrap your {type(classifier).__name__}: "
            "Classifier(module, num_classes=10, mean=(0.5,), std=(0.5,)) or Classifier.from_timm(...)."
        )
    return n, c


class AdvGAN(Trainable):
    """The AdvGAN attacker of a frozen ``classifier`` (an :class:`attacks.Classifier`, timm or plain module).

    The model pattern of the library: ``config``, ``nets`` (G and D), ``game`` (an :class:`AdvGANGame`);
    ``generator`` is the network that attacks (the EMA copy when ``ema_decay`` is set and training ran)."""

    config: AdvGANConfig
    game: AdvGANGame

    def __init__(self, classifier: nn.Module, config: AdvGANConfig | None = None) -> None:
        config = AdvGANConfig() if config is None else config
        if not isinstance(config, AdvGANConfig):
            raise TypeError(f"config must be an AdvGANConfig, got {type(config).__name__}.")
        self.num_classes, self.in_chans = _check_classifier(classifier)
        self.classifier, self.config = classifier, config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.G = build_generator(config, self.in_chans, self.num_classes)
            from ..gans.nets.encdec import ConvDiscriminator

            self.D = ConvDiscriminator(self.in_chans, width=config.width,
                                       num_classes=self.num_classes if config.aux_weight else 0)
        self.game = self._make_game()

    def _make_game(self) -> AdvGANGame:
        return AdvGANGame(self.config, self.G, self.D, self.classifier, num_classes=self.num_classes, in_chans=self.in_chans)

    @property
    def nets(self) -> dict[str, nn.Module]:
        return self.game.nets

    @property
    def generator(self) -> nn.Module:
        """The generator used to attack (the EMA copy when ``ema_decay`` is set and training ran)."""
        return self.ema_net("G")

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    # ------------------------------------------------------------------ training
    def _as_loader(self, data: Dataset | DataLoader, shuffle: bool) -> DataLoader:
        return as_loader(data, self.config.batch_size, shuffle=shuffle, seed=self.config.seed, what="the data")

    def check_data(self, loader: DataLoader, what: str = "training data") -> tuple[torch.Tensor, torch.Tensor]:
        """Validate the first items of ``loader``'s dataset and the classifier's outputs on them (no RNG used)."""
        ds = loader.dataset
        n = min(len(ds), 64)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError(f"the {what} is empty.")
        with explain_data_error(f"the first {n} items of the {what}"):
            items = default_collate([ds[i] for i in range(n)])
        xs, ys = unpack_pair(items, f"the {what}")
        x = check_images(xs, name=f"{what} images", channels=self.in_chans).to(compute_dtype(self.G))
        y = check_labels(ys, x.shape[0], self.num_classes, name=f"{what} labels")
        model = self.game.target_model()
        with frozen_eval(model), torch.no_grad():
            dev = next(iter(model.parameters()), torch.empty(0)).device
            logits = model(x.to(dev))
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"the classifier returned shape {tuple(logits.shape)} but declares num_classes={self.num_classes}; "
                             f"it must return (N, {self.num_classes}) logits.")
        if looks_like_probabilities(logits):
            raise ValueError("the classifier returns probabilities (rows are non-negative and sum to 1): the C&W loss needs "
                             "logits. Remove the final softmax from the model.")
        acc = float((logits.argmax(1).cpu() == y).float().mean())
        if acc < 0.5:
            warnings.warn(f"the classifier gets only {acc:.0%} of the first {n} {what} items right; is it trained?", stacklevel=3)
        return x, y

    def fit(self, data: Dataset | DataLoader, epochs: int, out_dir: str | Path | None = None, resume: bool = True,
            val_loader: Dataset | DataLoader | None = None) -> History:
        """Train G and D for ``epochs`` epochs in total (resumes from ``out_dir/checkpoint``); the classifier stays frozen.

        With ``out_dir`` the engine writes checkpoints, history and sample grids under ``out_dir/checkpoint``
        and the trained attacker is saved to ``out_dir`` (``AdvGAN.load(out_dir, clf)``).
        ``val_loader``: attack success rate on it is logged after every epoch (``history.epochs``).
        """
        Integer(1)(epochs, "epochs")
        loader = self._as_loader(data, shuffle=True)
        val = self._as_loader(val_loader, shuffle=False) if val_loader is not None else None
        x0, y0 = self.check_data(loader)
        if val is not None:
            x0, y0 = self.check_data(val, "validation data")
        ckpt = Path(out_dir) / "checkpoint" if out_dir is not None else None
        callbacks = self._callbacks(val, x0[:8], y0[:8])
        with frozen_eval(self.game.target_model()):
            history = self.train(loader, epochs, ckpt, resume=resume, callbacks=callbacks)
        best = next((cb for cb in callbacks if isinstance(cb, BestGenerator)), None)
        if best is not None and best.state is not None:
            self.generator.load_state_dict(best.state)
        for net in (self.G, self.D):
            net.eval()
        if out_dir is not None and self.trainer is not None and self.trainer.dist.is_main:
            self.save(out_dir)
        return history

    def _callbacks(self, val: DataLoader | None, x: torch.Tensor, y: torch.Tensor) -> list[Callback]:
        """Validation on ``val`` (when given) and a sample grid of ``x`` after each epoch."""
        grid = SampleGrid(lambda path, trainer: self.sample_grid(path, x, y, generator=trainer.ema_net("G")))
        extra: list[Callback] = [TargetCurriculum(self.game)] if self.config.targeted and self.config.target_curriculum else []
        if val is None:
            return extra + [grid]
        return extra + [AdvGANValidation(self, val)] + ([BestGenerator()] if self.config.best_epoch else []) + [grid]

    # ------------------------------------------------------------------ attacking
    def _targets(self, target: Any, n: int, device: torch.device) -> torch.Tensor | None:
        if self.config.targeted and target is None:
            raise ValueError("this AdvGAN was trained targeted: pass target= (class indices), or use as_attack(), which "
                             "draws random targets when none are given.")
        if not self.config.targeted and target is not None:
            raise ValueError("this AdvGAN was trained untargeted (targeted=False); call perturb without target=.")
        if target is None:
            return None
        t = check_labels(target, n, self.num_classes, name="target")
        return t.to(device)

    def perturb(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial images ``clip(x + G(x [, target]), 0, 1)`` (no gradients; same device/dtype as x)."""
        x = check_images(x, channels=self.in_chans)
        dev = self.device
        t = self._targets(target, x.shape[0], dev)
        G = self.generator
        was = G.training
        G.eval()
        try:
            with torch.no_grad():
                x_adv, _ = self.game.adversarial(x.to(dev), t, generator=G)
        finally:
            G.train(was)
        return x_adv.to(device=x.device, dtype=x.dtype)

    def as_attack(self, batch_size: int = 256, *, channels_last: bool = False, compile: bool | str = False) -> GeneratorAttack:
        """An :class:`attacks.Attack` using a frozen copy of the trained generator (one no-grad forward per batch;
        ``channels_last`` / ``compile``: see :class:`GeneratorAttack`)."""
        return GeneratorAttack(self.generator, self.config.eps, self.config.norm, targeted=self.config.targeted,
                               num_classes=self.num_classes, batch_size=batch_size, seed=self.config.seed,
                               channels_last=channels_last, compile=compile, in_chans=self.in_chans)

    def measure(self, data: Dataset | DataLoader, *, model: nn.Module | None = None,
                generator: nn.Module | None = None) -> Measurement:
        """``attacks.measure`` of the generator against ``model`` (default: the classifier it attacks) on ``data``.

        A targeted attacker aims at random targets != label, seeded (``config.seed + 1`` and the batch index)."""
        G = generator if generator is not None else self.generator
        game = self.game

        def attack(m: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
            with torch.no_grad():
                return game.adversarial(x, target, generator=G)[0]

        target_model = model if model is not None else game.target_model()
        return measure(target_model, self._as_loader(data, shuffle=False), attack, targeted=self.config.targeted,
                       seed=self.config.seed + 1, device=self.device)

    def rates(self, data: Dataset | DataLoader, *, model: nn.Module | None = None,
              generator: nn.Module | None = None) -> dict[str, float]:
        """``{"asr", "clean_acc"}``: success rate over the correctly classified items (target hits when targeted)."""
        m = self.measure(data, model=model, generator=generator)
        hits = m.n_target_hits if self.config.targeted and m.n_target_hits is not None else m.n_fooled
        return {"asr": hits / max(m.n_correct, 1), "clean_acc": m.n_correct / max(m.n, 1)}

    def diagnostics(self, data: Dataset | DataLoader, *, model: nn.Module | None = None,
                    generator: nn.Module | None = None) -> dict[str, float]:
        """How input-specific the perturbations are on ``data`` (:mod:`attacks.diagnostics`):
        ``{"shared_energy", "adv_class_entropy", "max_entropy"}``; the entropy is over the adversarial classes of
        the inputs that ``model`` classified correctly and the attack fooled (targets as in :meth:`measure`)."""
        G = generator if generator is not None else self.generator
        target_model = model if model is not None else self.game.target_model()
        stats = PerturbationStats(self.num_classes)
        dev = self.device
        with frozen_eval(target_model), torch.no_grad():
            for i, batch in enumerate(self._as_loader(data, shuffle=False)):
                x, y = batch[0].to(dev), batch[1].to(dev)
                t = None
                if self.config.targeted:
                    g = torch.Generator().manual_seed(self.config.seed + 1 + i)
                    t = random_targets(y.cpu(), self.num_classes, generator=g).to(dev)
                x_adv, delta = self.game.adversarial(x, t, generator=G)
                pred, pred_adv = target_model(x).argmax(1), target_model(x_adv).argmax(1)
                stats.update(delta, pred_adv, (pred == y) & (pred_adv != y))
        return stats.result()

    def attack_success_rate(self, data: Dataset | DataLoader) -> float:
        """Fraction of correctly classified items the generator fools (hits a random target when targeted)."""
        return self.rates(data)["asr"]

    def sample_grid(self, path: str | Path, x: torch.Tensor, y: torch.Tensor | None = None,
                    generator: nn.Module | None = None) -> Path:
        """PNG grid: clean | amplified perturbation | adversarial, titled with the classifier's predictions."""
        from attacks.plots import image_grid

        model, dev = self.game.target_model(), self.device
        x = check_images(x, channels=self.in_chans)[:8].to(dev)
        t = None
        if self.config.targeted:
            yy = y[:8].to(dev) if y is not None else model(x).argmax(1)
            t = random_targets(yy.cpu(), self.num_classes, generator=torch.Generator().manual_seed(self.config.seed)).to(dev)
        with frozen_eval(model), torch.no_grad():
            x_adv, _ = self.game.adversarial(x, t, generator=generator if generator is not None else self.generator)
            pc, pa = model(x).argmax(1).cpu(), model(x_adv).argmax(1).cpu()
        title = f"AdvGAN {self.config.norm} eps={self.config.eps:g}" + (f" targets {t.tolist()}" if t is not None else "")
        return image_grid(x.cpu(), x_adv.cpu(), pc, pa, path, title=title)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``weights.safetensors`` (G, D) + ``config.json`` (kind "advgan") into ``directory``."""
        nets = {"G": self.generator, "D": self.D}
        return modelio.save_model(directory, KIND, self.config, nets,
                                  extra={"num_classes": self.num_classes, "in_chans": self.in_chans, "history": self.history.epochs})

    @classmethod
    def load(cls, directory: str | Path, classifier: nn.Module, *, device: str | torch.device | None = None) -> AdvGAN:
        """Rebuild a saved attacker for ``classifier`` (which must match its classes and channels)."""
        meta = modelio.read_model_config(directory, KIND)
        cfg = modelio.config_from_dict(AdvGANConfig, meta["config"], Path(directory) / modelio.CONFIG)
        n, c = _check_classifier(classifier)
        extra = meta.get("extra", {})
        if extra.get("num_classes") != n or extra.get("in_chans") != c:
            raise ValueError(f"{directory} holds an attacker for {extra.get('num_classes')} classes and {extra.get('in_chans')} "
                             f"channel(s); this classifier has {n} classes and {c} channel(s).")
        atk = cls(classifier, cfg)
        modelio.load_weights(directory, {"G": atk.G, "D": atk.D}, KIND)
        atk.history = History([], list(extra.get("history", [])))
        dev = device if device is not None else next(iter(classifier.parameters()), torch.empty(0)).device
        atk.G.to(dev).eval()
        atk.D.to(dev).eval()
        return atk

    def __repr__(self) -> str:
        c = self.config
        return f"AdvGAN(eps={c.eps:g}, norm={c.norm!r}, targeted={c.targeted}, generator={c.generator!r})"


@modelio.register_kind(KIND)
def _load_advgan(directory: Path, *, classifier: nn.Module | None = None, device: str | torch.device | None = None) -> AdvGAN:
    if classifier is None:
        raise TypeError(f"{directory} holds an AdvGAN attacker, which is bound to the classifier it attacks: "
                        "load it with advgan.load(dir, classifier=clf) or AdvGAN.load(dir, clf).")
    return AdvGAN.load(directory, classifier, device=device)
