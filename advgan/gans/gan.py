"""Unconditional and label-conditional GANs, each a :class:`~advgan.engine.MinMaxGame` on the one engine.

``GAN(GANConfig(loss="hinge"), data_shape=(2,))`` learns to sample z ~ N(0, I) -> data;
``ConditionalGAN(ConditionalGANConfig(), (1, 28, 28), num_classes=10)`` learns G(z, y).
Vector data (toy 2-D / 1-D) is modelled as is; images in [0, 1] are trained in [-1, 1] with a tanh
generator and mapped back, so ``sample`` always returns data-space values.
"""
from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import modelio
from ..config import FLAG, Choice, Custom, Flag, Integer, Real
from ..data.loaders import as_loader, batch_loader  # noqa: F401  (batch_loader: re-exported, its 0.1 home)
from ..engine import Callback, MinMaxGame, MinMaxTrainer, Player, SampleGrid, TrainConfig
from ..engine.datacheck import BatchSpec
from ..engine.history import History
from . import losses
from . import nets as _nets
from .common import GenerativeModel, build_net, first_sample, model_fields
from .nets.common import NORMS, apply_spectral_norm, check_shape, fork_seed, has_spectral_norm

D_NORMS = ("auto",) + NORMS
POSITIVE = Integer(1)
WEIGHT = Real(0, closed=True)


def _gan_loss(value: Any, name: str) -> str:
    return losses.resolve(value)


def _net_name(auto: bool):
    def check(value: Any, name: str) -> str:
        if (auto and value == "auto") or (isinstance(value, str) and value in _nets.available_nets()):
            return value
        valid = ("auto, " if auto else "") + ", ".join(_nets.available_nets())
        raise ValueError(f"unknown {name} {value!r}; valid: {valid}.")

    return Custom(check, "a registered network name" + (" or auto" if auto else ""))


LOSS = Custom(_gan_loss, "a GAN loss name (minimax, non_saturating, lsgan, hinge, wasserstein)")
NET_OR_AUTO = _net_name(auto=True)
NET = _net_name(auto=False)


@dataclass(frozen=True)
class GANConfig(TrainConfig):
    """A GAN: engine settings (inherited) + model. ``g_net``/``d_net`` "auto" = MLP for vectors, DCGAN for images.

    ``d_norm`` "auto" = batch norm in a conv D, none in an MLP D and none whenever a gradient penalty or
    R1 is used (those penalties are per sample). ``gp_weight`` (λ of WGAN-GP, typically 10 with
    ``loss="wasserstein"``, ``d_steps=5``, ``betas=(0.0, 0.9)``) and ``r1_weight`` (γ; adds γ/2·R1) regularise D.
    """

    loss: Annotated[str, LOSS] = "non_saturating"       #: minimax, non_saturating, lsgan, hinge, wasserstein
    g_net: Annotated[str, NET_OR_AUTO] = "auto"         #: generator network (auto: MLP for vectors, DCGAN for images)
    d_net: Annotated[str, NET_OR_AUTO] = "auto"         #: discriminator network (auto: MLP / DCGAN; projection D for a cGAN)
    z_dim: Annotated[int, POSITIVE] = 64                #: latent size
    g_width: Annotated[int, POSITIVE] = 64              #: hidden units (MLP) / base channels (conv) of G
    d_width: Annotated[int, POSITIVE] = 64              #: hidden units (MLP) / base channels (conv) of D
    depth: Annotated[int, POSITIVE] = 3                 #: hidden layers of the MLP nets
    d_norm: Annotated[str, Choice(D_NORMS, message="{name} must be one of {choices}; got {value!r}.")] = "auto"  #: normalisation in D
    spectral_norm: Annotated[bool, FLAG] = False        #: spectral normalisation on D
    gp_weight: Annotated[float, WEIGHT, Flag("gp")] = 0.0   #: gradient-penalty weight (WGAN-GP: 10)
    r1_weight: Annotated[float, WEIGHT, Flag("r1")] = 0.0   #: R1 penalty weight γ

    def validate(self) -> None:
        if self.loss == "wasserstein" and self.gp_weight == 0 and not self.spectral_norm:
            raise ValueError("loss='wasserstein' needs a Lipschitz critic: set gp_weight (e.g. 10, WGAN-GP) "
                             "or spectral_norm=True.")


@dataclass(frozen=True)
class ConditionalGANConfig(GANConfig):
    """A label-conditional GAN. ``d_net`` "auto" = projection discriminator; ``embed_dim`` sizes G's label embedding."""

    embed_dim: Annotated[int, POSITIVE] = 16            #: size of G's label embedding


class ModeCoverage(Callback):
    """Modes captured and high-quality share of 2,500 samples after each epoch (toy data with known modes)."""

    name = "mode-coverage"

    def __init__(self, model: _Generative) -> None:
        self.model = model

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        m = self.model
        if m.modes is None or m.data_shape != (m.modes.shape[1],):
            return {}
        from .metrics import mode_coverage

        samples = m._sample(2500, m._default_labels(2500), m.config.seed + 1, 2500, trainer.ema_net("G"))
        cov: dict[str, Any] = mode_coverage(samples, m.modes, float(m.mode_std or 0.0))
        return {"modes": float(cov["modes_captured"]), "high_quality": float(cov["high_quality"])}


class _Generative(GenerativeModel, MinMaxGame):
    """What GAN and ConditionalGAN share: nets, fit, sampling, figures, save/load."""

    kind = "gan"
    config: GANConfig
    config_cls: type = GANConfig
    conditional = False

    def __init__(self, config: GANConfig | None = None, data_shape: Sequence[int] = (2,), num_classes: int | None = None) -> None:
        config = typing.cast(GANConfig, self.config_cls()) if config is None else config
        if not isinstance(config, self.config_cls):
            raise TypeError(f"config must be a {self.config_cls.__name__}, got {type(config).__name__}.")
        self.config = config
        self.data_shape = check_shape(data_shape, "data_shape")
        self.is_image = len(self.data_shape) == 3
        self.num_classes = num_classes
        self.modes: torch.Tensor | None = None      # set by fit() for toy data with known modes
        self.mode_std: float | None = None
        with fork_seed(config.seed):
            self.nets = {"G": self._make_g(), "D": self._make_d()}
        self.g_ema: nn.Module | None = None

    # ------------------------------------------------------------------ networks
    def _net_names(self) -> tuple[str, str]:
        c = self.config
        pre = "cond_" if self.conditional else ""
        body = "dcgan" if self.is_image else "mlp"
        g = c.g_net if c.g_net != "auto" else f"{pre}{body}_g"
        d = c.d_net if c.d_net != "auto" else (f"proj_{body}_d" if self.conditional else f"{body}_d")
        return g, d

    def _d_norm(self) -> str:
        c = self.config
        if c.d_norm != "auto":
            return c.d_norm
        return "batch" if self.is_image and c.gp_weight == 0 and c.r1_weight == 0 else "none"

    def _make_g(self) -> nn.Module:
        c = self.config
        req: dict[str, Any] = {"z_dim": c.z_dim, "out_shape": self.data_shape}
        opt: dict[str, Any] = {"width": c.g_width, "depth": c.depth, "out_act": "tanh" if self.is_image else "none"}
        if self.conditional:
            req["num_classes"] = self.num_classes
            opt["embed_dim"] = getattr(c, "embed_dim", 16)
        return build_net(self._net_names()[0], req, opt)

    def _make_d(self) -> nn.Module:
        c = self.config
        req: dict[str, Any] = {"in_shape": self.data_shape}
        if self.conditional:
            req["num_classes"] = self.num_classes
        d = build_net(self._net_names()[1], req, {"width": c.d_width, "depth": c.depth, "norm": self._d_norm(),
                                               "spectral_norm": c.spectral_norm})
        if c.spectral_norm and not has_spectral_norm(d):
            apply_spectral_norm(d)
        return d

    # ------------------------------------------------------------------ the game
    def players(self) -> list[Player]:
        c = self.config
        return [Player("D", c.lr_d, c.d_steps, c.betas, c.weight_decay),
                Player("G", c.lr_g, 1, c.betas, c.weight_decay, ema=True)]

    def config_dict(self) -> dict[str, Any]:
        # model fields only: the engine compares TrainConfig itself (and lets run fields such as device differ)
        return {"model": model_fields(self.config, TrainConfig), "data_shape": list(self.data_shape), "num_classes": self.num_classes}

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.is_image else x

    def _to_data(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.is_image else x

    def _g(self, net: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return net(z, y) if self.conditional else net(z)

    def loss(self, player: str, nets: Any, batch: tuple[torch.Tensor, ...], step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        x = self._to_model(batch[0])
        y = batch[1] if self.conditional else None
        z = torch.randn(x.shape[0], c.z_dim, device=x.device)
        G, D = nets["G"], nets["D"]
        critic = (lambda t: D(t, y)) if self.conditional else D
        if player == "D":
            with torch.no_grad():
                fake = self._g(G, z, y)
            real_logits, fake_logits = critic(x), critic(fake)
            loss = losses.d_loss(c.loss, real_logits, fake_logits)
            parts = {"real_logit": real_logits.detach().mean(), "fake_logit": fake_logits.detach().mean()}
            if c.gp_weight:
                gp = losses.gradient_penalty(critic, x, fake)
                loss = loss + c.gp_weight * gp
                parts["gp"] = gp.detach()
            if c.r1_weight:
                r1 = losses.r1_penalty(critic, x)
                loss = loss + 0.5 * c.r1_weight * r1
                parts["r1"] = r1.detach()
            return loss, parts
        fake_logits = critic(self._g(G, z, y))
        return losses.g_loss(c.loss, fake_logits), {"fake_logit": fake_logits.detach().mean()}

    def batch_spec(self) -> BatchSpec | None:
        """Image data: every batch's pixels in [0, 1] (and a cGAN's labels in range); toy points: no check."""
        if not self.is_image:
            return None
        return BatchSpec(what="fit() data", label=1 if self.conditional else None, num_classes=self.num_classes,
                         channels=self.data_shape[0])

    # ------------------------------------------------------------------ training
    def _check_data(self, loader: DataLoader) -> None:
        ds = loader.dataset
        try:
            item = ds[0]
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"could not read item 0 of the dataset ({e}).") from None
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != self.data_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"this {type(self).__name__} was built for samples of shape {self.data_shape}, the data has {got}; "
                             "build the model with data_shape matching the dataset.")
        if self.is_image and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError(f"image pixels must be in [0, 1], got [{float(x.min()):.3g}, {float(x.max()):.3g}].")
        if self.conditional:
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise ValueError("a ConditionalGAN needs (image, label) items.")
            lab = int(item[1])
            if not 0 <= lab < int(self.num_classes or 0):
                raise ValueError(f"label {lab} is out of range for num_classes={self.num_classes}.")
        modes = getattr(ds, "modes", None)
        if modes is not None:
            self.modes, self.mode_std = modes, float(getattr(ds, "std"))  # noqa: B009

    def fit(self, data: DataLoader | Dataset, epochs: int, out_dir: str | Path | None = None, resume: bool = True) -> History:
        """Train until ``epochs`` epochs in total (resuming from ``out_dir``'s checkpoint when there is one)."""
        c = self.config
        loader = as_loader(data, c.batch_size, shuffle=True, seed=c.seed, what="fit() data", items="(sample, label) items",
                           whole_batches=True)
        self._check_data(loader)
        grid = SampleGrid(lambda path, trainer: self.sample_grid(path, generator=trainer.ema_net("G"), step=trainer.state.step))
        return self.train(loader, epochs, out_dir, resume=resume, callbacks=[ModeCoverage(self), grid])

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def _sample(self, n: int, labels: torch.Tensor | None, seed: int | None, batch_size: int,
                G: nn.Module | None = None) -> torch.Tensor:
        POSITIVE(n, "n")
        G = G if G is not None else self.generator
        dev = next(G.parameters()).device
        gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        was = G.training
        G.eval()
        out = []
        try:
            for i in range(0, n, batch_size):
                m = min(batch_size, n - i)
                z = torch.randn(m, self.config.z_dim, generator=gen).to(dev)
                y = labels[i:i + m].to(dev) if labels is not None else None
                out.append(self._to_data(self._g(G, z, y)).float().cpu())
        finally:
            G.train(was)
        return torch.cat(out)

    # ------------------------------------------------------------------ figures
    def _default_labels(self, n: int) -> torch.Tensor | None:
        return None

    def sample_grid(self, path: str | Path, *, generator: nn.Module | None = None, step: int | None = None) -> None:
        """PNG of samples (of ``generator``, default :attr:`generator`): an image grid, or a scatter plot with the modes."""
        from .figures import save_image_grid, save_points

        G = generator
        if self.is_image:
            n = 100 if self.conditional and (self.num_classes or 0) <= 10 else 64
            save_image_grid(self._sample(n, self._default_labels(n), self.config.seed, 256, G), path,
                            nrow=10 if self.conditional and (self.num_classes or 0) <= 10 else None)
        else:
            pts = self._sample(2500, self._default_labels(2500), self.config.seed, 2500, G)
            save_points(pts, path, modes=self.modes, std=self.mode_std,
                        title=f"{self.kind} samples" + (f", step {step}" if step else ""))

    # ------------------------------------------------------------------ save / load
    def _extra(self) -> dict[str, Any]:
        e: dict[str, Any] = {"data_shape": list(self.data_shape), "num_classes": self.num_classes}
        if self.modes is not None:
            e["modes"] = self.modes.tolist()
            e["mode_std"] = self.mode_std
        return e

    def save(self, directory: str | Path) -> Path:
        """Write ``weights.safetensors`` (G, D and the EMA generator) + ``config.json`` into ``directory``."""
        return self._save(directory, self._extra())

    @classmethod
    def _config_class(cls) -> type:
        return cls.config_cls

    @classmethod
    def _load(cls, directory: str | Path, device: str | None) -> Any:
        def build(cfg: Any, extra: dict[str, Any]) -> _Generative:
            args = (int(extra["num_classes"]),) if cls.conditional else ()
            model = cls(cfg, tuple(extra["data_shape"]), *args)
            if extra.get("modes") is not None:
                model.modes, model.mode_std = torch.tensor(extra["modes"]), extra.get("mode_std")
            return model

        return cls._restore(directory, device, build)


class GAN(_Generative):
    """Unconditional GAN: G(z), z ~ N(0, I); D(x) -> logit. ``data_shape``: (D,) vectors or (C, H, W) images."""

    kind = "gan"
    config_cls = GANConfig

    def __init__(self, config: GANConfig | None = None, data_shape: Sequence[int] = (2,)) -> None:
        super().__init__(config, data_shape)

    def sample(self, n: int, labels: None = None, *, seed: int | None = None, batch_size: int = 1024) -> torch.Tensor:
        """``n`` samples in data space (images in [0, 1]), on the CPU. ``seed`` fixes z without touching the global RNG."""
        if labels is not None:
            raise ValueError("an unconditional GAN takes no labels; use ConditionalGAN for class-conditional samples.")
        return self._sample(n, None, seed, batch_size)

    @classmethod
    def from_dataset(cls, dataset: Dataset, config: GANConfig | None = None) -> GAN:
        """A GAN shaped for ``dataset``'s samples (item 0 of ``(sample, label)`` items)."""
        return cls(config, tuple(first_sample(dataset).shape))

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> GAN:
        """A GAN saved with :meth:`save` (``device`` overrides the saved config's)."""
        return cls._load(directory, device)


class ConditionalGAN(_Generative):
    """Label-conditional GAN: G(z, y), D(x, y) (projection D by default)."""

    kind = "cgan"
    config_cls = ConditionalGANConfig
    conditional = True

    def __init__(self, config: ConditionalGANConfig | None = None, data_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> None:
        Integer(2)(num_classes, "num_classes")
        super().__init__(config, data_shape, num_classes)

    def _default_labels(self, n: int) -> torch.Tensor:
        return torch.arange(n) % int(self.num_classes or 0)

    def sample(self, n: int, labels: torch.Tensor | Sequence[int] | int | None = None, *, seed: int | None = None,
               batch_size: int = 1024) -> torch.Tensor:
        """``n`` samples of classes ``labels`` (a length-n tensor, one int for all, or None = 0, 1, ..., cycling)."""
        POSITIVE(n, "n")
        if labels is None:
            y = self._default_labels(n)
        elif isinstance(labels, int) and not isinstance(labels, bool):
            y = torch.full((n,), labels, dtype=torch.long)
        else:
            y = torch.as_tensor(labels)
            if y.dtype.is_floating_point or y.dim() != 1 or y.shape[0] != n:
                raise ValueError(f"labels must be n={n} integers, got shape {tuple(y.shape)} dtype {y.dtype}.")
            y = y.long()
        if int(y.min()) < 0 or int(y.max()) >= int(self.num_classes or 0):
            raise ValueError(f"labels must be in [0, {self.num_classes}), got [{int(y.min())}, {int(y.max())}].")
        return self._sample(n, y.cpu(), seed, batch_size)

    @classmethod
    def from_dataset(cls, dataset: Dataset, config: ConditionalGANConfig | None = None) -> ConditionalGAN:
        """A ConditionalGAN shaped for ``dataset`` (sample shape from item 0, classes from ``num_classes``)."""
        n = getattr(dataset, "num_classes", None)
        if n is None:
            raise ValueError("the dataset has no num_classes attribute; build ConditionalGAN(config, data_shape, num_classes).")
        return cls(config, tuple(first_sample(dataset).shape), int(n))

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> ConditionalGAN:
        """A ConditionalGAN saved with :meth:`save` (``device`` overrides the saved config's)."""
        return cls._load(directory, device)


@modelio.register_kind("gan")
def _load_gan(directory: Path, *, classifier: Any = None, device: str | None = None) -> GAN:
    return GAN.load(directory, device)


@modelio.register_kind("cgan")
def _load_cgan(directory: Path, *, classifier: Any = None, device: str | None = None) -> ConditionalGAN:
    return ConditionalGAN.load(directory, device)
