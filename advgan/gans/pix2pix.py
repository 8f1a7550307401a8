"""Pix2Pix (Isola et al. 2017): image-to-image translation as a conditional GAN on the one engine.

G maps x -> y (U-Net); D sees the pair (x, y) or (x, G(x)) (PatchGAN). Objective
``G* = arg min_G max_D L_cGAN(G, D) + λ·L1(G)`` with λ = 100, Adam lr 2e-4, β1 = 0.5; D's loss is halved
(it learns more slowly than G, as in the paper). ``mode`` selects the comparison variants of the paper:
``"l1+cgan"`` (default), ``"l1"`` (no discriminator at all) or ``"cgan"`` (no L1 term).
x and y are images in [0, 1]; both are trained in [-1, 1] (tanh G) and ``translate`` returns [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import modelio
from ..config import FLAG, Choice, Integer, Real
from ..data.loaders import as_loader
from ..engine import Player, SampleGrid, TrainConfig
from ..engine.game import MinMaxGame
from ..engine.history import History
from . import losses
from .common import GenerativeModel, build_net, model_fields
from .gan import LOSS, NET
from .nets.common import NORMS, apply_spectral_norm, fork_seed, has_spectral_norm

MODES = ("l1+cgan", "l1", "cgan")
POSITIVE = Integer(1)


@dataclass(frozen=True)
class Pix2PixConfig(TrainConfig):
    """Pix2Pix: engine settings (inherited; lr 2e-4, betas (0.5, 0.999) as in the paper) + model.

    ``depth``: U-Net levels (inputs are padded to a multiple of 2**depth; 8 for 256x256, 3 for 28x28).
    ``d_layers``: PatchGAN stride-2 layers (3 = 70x70 patches; 2 = 34x34, right for 28x28 images).
    ``loss``: the GAN loss of the cGAN term (the paper: the non-saturating BCE form).
    """

    mode: Annotated[str, Choice(MODES, message="{name} must be one of {choices}; got {value!r}.")] = "l1+cgan"  #: l1+cgan | l1 | cgan
    lambda_l1: Annotated[float, Real(0, closed=True)] = 100.0  #: weight of the L1 term (paper: 100)
    loss: Annotated[str, LOSS] = "non_saturating"       #: GAN loss of the cGAN term
    g_net: Annotated[str, NET] = "unet"                 #: generator network
    d_net: Annotated[str, NET] = "patchgan"             #: discriminator network
    depth: Annotated[int, POSITIVE] = 3                 #: U-Net levels
    g_width: Annotated[int, POSITIVE] = 64              #: base channels of G
    d_width: Annotated[int, POSITIVE] = 64              #: base channels of D
    d_layers: Annotated[int, POSITIVE] = 2              #: PatchGAN layers (2: 34x34 patches)
    norm: Annotated[str, Choice(NORMS, message="{name} must be one of {choices}; got {value!r}.")] = "batch"  #: normalisation layers
    dropout: Annotated[bool, FLAG] = True               #: dropout in the U-Net decoder (train mode only)
    spectral_norm: Annotated[bool, FLAG] = False        #: spectral normalisation on D
    batch_size: int = 16

    def validate(self) -> None:
        if self.mode in ("l1+cgan", "l1") and self.lambda_l1 == 0:
            raise ValueError(f"mode {self.mode!r} uses the L1 term; lambda_l1 must be > 0 (or use mode='cgan').")
        if self.loss == "wasserstein" and not self.spectral_norm:
            raise ValueError("loss='wasserstein' needs a Lipschitz critic here: set spectral_norm=True (or use another loss).")

    @property
    def uses_gan(self) -> bool:
        return self.mode != "l1"

    @property
    def uses_l1(self) -> bool:
        return self.mode != "cgan"


class Pix2Pix(GenerativeModel, MinMaxGame):
    """``Pix2Pix(Pix2PixConfig(), in_channels=1, out_channels=1)``; ``fit`` on (x, y) pairs, ``translate(x)``."""

    kind = "pix2pix"
    config: Pix2PixConfig

    def __init__(self, config: Pix2PixConfig | None = None, in_channels: int = 1, out_channels: int = 1) -> None:
        config = Pix2PixConfig() if config is None else config
        if not isinstance(config, Pix2PixConfig):
            raise TypeError(f"config must be a Pix2PixConfig, got {type(config).__name__}.")
        POSITIVE(in_channels, "in_channels")
        POSITIVE(out_channels, "out_channels")
        self.config, self.in_channels, self.out_channels = config, in_channels, out_channels
        c = config
        with fork_seed(c.seed):
            g = build_net(c.g_net, {"in_channels": in_channels, "out_channels": out_channels},
                       {"depth": c.depth, "width": c.g_width, "norm": c.norm, "dropout": c.dropout, "out_act": "tanh"})
            self.nets: dict[str, nn.Module] = {"G": g}
            if c.uses_gan:
                d = build_net(c.d_net, {"in_channels": in_channels + out_channels},
                           {"width": c.d_width, "n_layers": c.d_layers, "norm": c.norm, "spectral_norm": c.spectral_norm})
                if c.spectral_norm and not has_spectral_norm(d):
                    apply_spectral_norm(d)
                self.nets["D"] = d
        self.g_ema: nn.Module | None = None
        self._fixed: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ the game
    def players(self) -> list[Player]:
        c = self.config
        g = Player("G", c.lr_g, 1, c.betas, c.weight_decay, ema=True)
        return [Player("D", c.lr_d, c.d_steps, c.betas, c.weight_decay), g] if c.uses_gan else [g]

    def config_dict(self) -> dict[str, Any]:
        # model fields only: the engine compares TrainConfig itself (and lets run fields such as device differ)
        return {"model": model_fields(self.config, TrainConfig), "in_channels": self.in_channels, "out_channels": self.out_channels}

    def loss(self, player: str, nets: Any, batch: tuple[torch.Tensor, ...], step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        x, y = batch[0] * 2 - 1, batch[1] * 2 - 1
        G = nets["G"]
        if player == "D":
            D = nets["D"]
            with torch.no_grad():
                fake = G(x)
            real_logits, fake_logits = D(x, y), D(x, fake)
            loss = 0.5 * losses.d_loss(c.loss, real_logits, fake_logits)     # halved, as in the paper
            return loss, {"real_logit": real_logits.detach().mean(), "fake_logit": fake_logits.detach().mean()}
        fake = G(x)
        parts: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=x.device)
        if c.uses_gan:
            gan = losses.g_loss(c.loss, nets["D"](x, fake))
            loss = loss + gan
            parts["gan"] = gan.detach()
        l1 = losses.l1(fake, y)
        parts["l1"] = l1.detach() / 2                      # logged in [0, 1] pixel units
        if c.uses_l1:
            loss = loss + c.lambda_l1 * l1
        return loss, parts

    # ------------------------------------------------------------------ training
    def _check_pair(self, item: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(item, (tuple, list)) or len(item) < 2 or not all(isinstance(t, torch.Tensor) for t in item[:2]):
            raise ValueError("Pix2Pix trains on (x, y) image pairs; wrap an image dataset with advgan.pairs.build(task, dataset).")
        x, y = item[0], item[1]
        if y.dim() <= 1:
            raise ValueError(f"Pix2Pix trains on (x, y) image pairs, got (image, label)-like items (y of shape {tuple(y.shape)}); "
                             "wrap the image dataset with advgan.pairs.build(task, dataset).")
        if x.dim() != 3 or y.dim() != 3 or x.shape[-2:] != y.shape[-2:]:
            raise ValueError(f"x and y must be (C, H, W) images of the same size, got {tuple(x.shape)} and {tuple(y.shape)}.")
        if x.shape[0] != self.in_channels or y.shape[0] != self.out_channels:
            raise ValueError(f"this Pix2Pix maps {self.in_channels} -> {self.out_channels} channels; the pairs have "
                             f"{x.shape[0]} -> {y.shape[0]}. Build it with in_channels={x.shape[0]}, out_channels={y.shape[0]}.")
        for name, t in (("x", x), ("y", y)):
            if float(t.min()) < 0 or float(t.max()) > 1:
                raise ValueError(f"{name} pixels must be in [0, 1], got [{float(t.min()):.3g}, {float(t.max()):.3g}].")
        min_size = getattr(self.nets.get("D"), "min_size", None)
        if callable(min_size) and min(x.shape[-2:]) < min_size():
            raise ValueError(f"images of {tuple(x.shape[-2:])} are too small for a PatchGAN with d_layers={self.config.d_layers} "
                             f"(needs >= {min_size()}); lower d_layers.")
        return x, y

    def fit(self, data: DataLoader | Dataset, epochs: int, out_dir: str | Path | None = None, resume: bool = True) -> History:
        """Train until ``epochs`` epochs in total on (x, y) pairs (resuming from ``out_dir`` when it has a checkpoint)."""
        c = self.config
        loader = as_loader(data, c.batch_size, shuffle=True, seed=c.seed, what="fit() data",
                           items="(x, y) pairs (see advgan.pairs)", whole_batches=True)
        ds = loader.dataset
        n = min(8, len(ds))  # type: ignore[arg-type]
        items = [self._check_pair(ds[i]) for i in range(n)]
        self._fixed = (torch.stack([a for a, _ in items]), torch.stack([b for _, b in items]))
        grid = SampleGrid(lambda path, trainer: self.sample_grid(path, generator=trainer.ema_net("G")))
        return self.train(loader, epochs, out_dir, resume=resume, callbacks=[grid])

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def translate(self, x: torch.Tensor, batch_size: int = 256, G: nn.Module | None = None) -> torch.Tensor:
        """G(x) for images x (N, C_in, H, W) in [0, 1] -> (N, C_out, H, W) in [0, 1], on the CPU (eval mode)."""
        from attacks.checks import check_images

        if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] != self.in_channels:
            raise ValueError(f"this Pix2Pix takes {self.in_channels}-channel inputs, got x of shape {tuple(x.shape)}.")
        x = check_images(x, name="x")
        G = G if G is not None else self.generator
        dev = next(G.parameters()).device
        was = G.training
        G.eval()
        try:
            out = [((G(x[i:i + batch_size].to(dev) * 2 - 1) + 1) / 2).clamp(0, 1).float().cpu()
                   for i in range(0, x.shape[0], batch_size)]
        finally:
            G.train(was)
        return torch.cat(out)

    def sample_grid(self, path: str | Path, *, generator: nn.Module | None = None) -> None:
        """PNG with rows: input x, target y, G(x) on 8 fixed training pairs (``generator``: default :attr:`generator`)."""
        if self._fixed is None:
            return
        from .figures import save_rows

        x, y = self._fixed
        G = generator
        save_rows({"input": x, "target": y, "output": self.translate(x, G=G)}, path, title=f"pix2pix ({self.config.mode})")

    # ------------------------------------------------------------------ save / load
    def save(self, directory: str | Path) -> Path:
        """Write ``weights.safetensors`` (G, D when used, EMA G when used) + ``config.json``."""
        return self._save(directory, {"in_channels": self.in_channels, "out_channels": self.out_channels})

    @classmethod
    def from_pairs(cls, pairs: Dataset, config: Pix2PixConfig | None = None) -> Pix2Pix:
        """A Pix2Pix whose channels fit ``pairs`` (item 0 is ``(x, y)``), e.g. ``advgan.pairs.build("edges", ds)``."""
        item = pairs[0]
        if not isinstance(item, (tuple, list)) or len(item) < 2 or not all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in item[:2]):
            raise ValueError("from_pairs needs (x, y) image pairs; wrap an image dataset with advgan.pairs.build(task, dataset).")
        return cls(config, int(item[0].shape[0]), int(item[1].shape[0]))

    @classmethod
    def _config_class(cls) -> type:
        return Pix2PixConfig

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> Pix2Pix:
        """A Pix2Pix saved with :meth:`save` (``device`` overrides the saved config's)."""
        return cls._restore(directory, device, lambda cfg, extra: cls(cfg, int(extra["in_channels"]), int(extra["out_channels"])))


@modelio.register_kind("pix2pix")
def _load_pix2pix(directory: Path, *, classifier: Any = None, device: str | None = None) -> Pix2Pix:
    return Pix2Pix.load(directory, device)
