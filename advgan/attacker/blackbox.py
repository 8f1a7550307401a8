"""Black-box AdvGAN (Xiao et al. 2018, section 3.3): attack a model you can only query.

:class:`BlackBox` wraps the model so that only predictions come out (``predict_logits`` /
``predict_labels`` under ``no_grad`` on detached inputs) and counts every image queried. A local
surrogate is distilled from the black box and AdvGAN is trained against it:

- ``mode="static"``: label the training images with the black box (one query each), train the
  surrogate on those labels, then train AdvGAN against the frozen surrogate.
- ``mode="dynamic"``: start from the static surrogate, then the engine's schedule has a third
  player ``S``: per round, D and G steps against the current surrogate, then a surrogate step that
  makes it agree with the black box on the clean images (labels already known) and on the freshly
  generated adversarial images (one query per image per step).

    bb = BlackBox(target_clf)
    bbatk = BlackBoxAdvGAN(bb, AdvGANConfig(eps=0.3), mode="dynamic")
    bbatk.fit(train_ds, epochs=3); print(bb.queries)
    attack = bbatk.as_attack()
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from attacks.base import frozen_eval
from attacks.checkpoint import CheckpointError, load_json, save_json
from attacks.checks import check_choice, check_images, check_positive_int
from attacks.classifier import Classifier
from attacks.models import check_architecture

from .. import data as data_mod
from ..config import Integer, Real
from ..engine import Callback, Player
from ..engine.fingerprint import data_fingerprint, first_difference
from ..engine.game import Batch, LossParts, Nets
from ..engine.history import History
from ..engine.rundir import RunLock, check_out_dir
from .callbacks import QueryCount
from .config import AdvGANConfig
from .game import AdvGANGame
from .generator_attack import GeneratorAttack
from .model import AdvGAN

MODES = ("static", "dynamic")


class BlackBox:
    """Query-only access to a classifier: predictions out, never gradients; ``queries`` counts images.

    Args:
        model: the target (an :class:`attacks.Classifier` or any module returning logits).
        num_classes, data_chans: needed when ``model`` is not a Classifier.
        batch_size: images per model call.
        labels_only: when True, ``predict_logits`` is refused (a stricter black box: labels only).
    """

    def __init__(self, model: nn.Module, *, num_classes: int | None = None, data_chans: int | None = None,
                 batch_size: int = 512, labels_only: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self._model = model
        n = num_classes if num_classes is not None else getattr(model, "num_classes", None)
        c = data_chans if data_chans is not None else getattr(model, "data_chans", None)
        if not isinstance(n, int) or not isinstance(c, int):
            raise ValueError("pass num_classes= and data_chans= for a model that is not an attacks.Classifier.")
        self.num_classes, self.data_chans = n, c
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.labels_only = bool(labels_only)
        self.queries = 0

    def _device(self) -> torch.device:
        for p in self._model.parameters():
            return p.device
        return torch.device("cpu")

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.data_chans:
            x = check_images(x, channels=self.data_chans)
        x = x.detach()
        dev = self._device()
        outs = []
        with frozen_eval(self._model), torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                outs.append(self._model(x[i:i + self.batch_size].to(dev)).detach().float())
        self.queries += int(x.shape[0])
        return torch.cat(outs).to(x.device)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The black box's logits for ``x`` (counts ``len(x)`` queries)."""
        if self.labels_only:
            raise ValueError("this BlackBox answers labels only (labels_only=True); use predict_labels.")
        return self._query(x)

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        """The black box's predicted classes for ``x`` (counts ``len(x)`` queries)."""
        return self._query(x).argmax(1)

    def __repr__(self) -> str:
        return f"BlackBox({type(self._model).__name__}, queries={self.queries})"


def distill_labels(bb: BlackBox, dataset: Dataset, batch_size: int = 512) -> data_mod.ImageDataset:
    """The dataset's images labelled by the black box (one query per image)."""
    ds = data_mod.to_image_dataset(dataset) if not isinstance(dataset, data_mod.ImageDataset) else dataset
    labels = torch.cat([bb.predict_labels(ds.images[i:i + batch_size]) for i in range(0, len(ds), batch_size)])
    return labelled_dataset(ds, labels.cpu(), bb.num_classes)


def labelled_dataset(ds: data_mod.ImageDataset, labels: torch.Tensor, num_classes: int) -> data_mod.ImageDataset:
    """``ds``'s images with the black box's labels: one name whether the labels were just queried or read back
    from disk, so a resumed run's data fingerprint matches the first run's."""
    return data_mod.ImageDataset(ds.images, labels, num_classes, f"{ds.name or 'data'}-blackbox-labels")


class DynamicDistillationGame(AdvGANGame):
    """AdvGAN's game with a third player ``S`` (the surrogate) that tracks the black box.

    D and G attack S as it will be evaluated (``frozen_mode="eval"``: the engine runs S in eval mode while
    they step); S's own step makes it agree with the black box on the clean and the freshly generated images."""

    def __init__(self, config: AdvGANConfig, G: nn.Module, D: nn.Module, surrogate: nn.Module, blackbox: BlackBox, *,
                 surrogate_lr: float, s_steps: int, num_classes: int, in_chans: int) -> None:
        super().__init__(config, G, D, surrogate, num_classes=num_classes, in_chans=in_chans)
        self.bb, self.surrogate_lr, self.s_steps = blackbox, surrogate_lr, s_steps
        self.nets["S"] = surrogate

    def target_model(self) -> nn.Module:
        return self.nets["S"]

    def attacked(self, nets: Nets) -> nn.Module:
        return nets["S"]

    def frozen_modules(self) -> list[nn.Module]:
        return []

    def players(self) -> list[Player]:
        return super().players() + [Player("S", self.surrogate_lr, self.s_steps, (0.9, 0.999), frozen_mode="eval")]

    def config_dict(self) -> dict[str, Any]:
        return {**super().config_dict(), "blackbox": "dynamic", "surrogate_lr": self.surrogate_lr, "s_steps": self.s_steps}

    def loss(self, player: str, nets: Nets, batch: Batch, step: int) -> tuple[torch.Tensor, LossParts]:
        if player != "S":
            return super().loss(player, nets, batch, step)
        S = nets["S"]
        x, y_bb = batch[0], batch[1]
        with torch.no_grad():
            x_adv, _ = self.adversarial(x, self.draw_targets(y_bb), nets["G"])
        y_adv = self.bb.predict_labels(x_adv)
        loss = F.cross_entropy(S(x), y_bb) + F.cross_entropy(S(x_adv), y_adv)
        return loss, {"queries": torch.tensor(float(self.bb.queries)),
                      "agree_adv": (S(x_adv).detach().argmax(1) == y_adv).float().mean()}


class _DynamicAdvGAN(AdvGAN):
    blackbox: BlackBox
    def __init__(self, surrogate: Classifier, config: AdvGANConfig, blackbox: BlackBox, surrogate_lr: float, s_steps: int) -> None:
        self.blackbox, self.surrogate_lr, self.s_steps = blackbox, surrogate_lr, s_steps
        super().__init__(surrogate, config)

    def _make_game(self) -> AdvGANGame:
        return DynamicDistillationGame(self.config, self.G, self.D, self.classifier, self.blackbox, surrogate_lr=self.surrogate_lr,
                                       s_steps=self.s_steps, num_classes=self.num_classes, in_chans=self.in_chans)

    def _callbacks(self, val: DataLoader | None, x: torch.Tensor, y: torch.Tensor) -> list[Callback]:
        return super()._callbacks(val, x, y) + [QueryCount(self.blackbox)]


class BlackBoxAdvGAN:
    """AdvGAN against a :class:`BlackBox` via a distilled surrogate (static or dynamic distillation).

    Args:
        blackbox: the query-only target.
        config: the AdvGAN settings (also used for the surrogate's seed and device).
        mode: ``"static"`` or ``"dynamic"``.
        surrogate: architecture name for the surrogate (``attacks.Classifier.create``).
        surrogate_epochs: epochs of the initial (static) distillation. The surrogate's fidelity decides the
            transfer: with 1,000 MNIST queries and 3 epochs a ``small_cnn`` surrogate transferred at 29 % ASR
            (one run); with 2,000 queries and 10 epochs at 62-81 % over four seeds, hence the default 10.
        surrogate_lr: learning rate of the surrogate (static pre-training and dynamic steps).
        s_steps: surrogate steps per generator step in dynamic mode.
    """

    def __init__(self, blackbox: BlackBox, config: AdvGANConfig | None = None, *, mode: str = "static",
                 surrogate: str = "small_cnn", surrogate_epochs: int = 10, surrogate_lr: float = 1e-3, s_steps: int = 1) -> None:
        if not isinstance(blackbox, BlackBox):
            raise TypeError("blackbox must be an advgan.attacker.BlackBox (wrap your model: BlackBox(model)), "
                            f"got {type(blackbox).__name__}.")
        self.config = AdvGANConfig() if config is None else config
        if not isinstance(self.config, AdvGANConfig):
            raise TypeError(f"config must be an AdvGANConfig, got {type(self.config).__name__}.")
        self.blackbox, self.mode = blackbox, check_choice(mode, "mode", MODES)
        self.surrogate_arch = surrogate
        self.surrogate_epochs = Integer(1)(surrogate_epochs, "surrogate_epochs")
        self.s_steps = Integer(1)(s_steps, "s_steps")
        self.surrogate_lr = float(Real(0)(surrogate_lr, "surrogate_lr"))
        self.surrogate: Classifier | None = None
        self.attacker: AdvGAN | None = None
        self.queries: dict[str, int] = {}

    def fit(self, data: Dataset | DataLoader, epochs: int, out_dir: str | Path | None = None, resume: bool = True,
            val_loader: Dataset | DataLoader | None = None) -> History:
        """Distill the surrogate (static), then train AdvGAN against it (and keep distilling when dynamic)."""
        Integer(1)(epochs, "epochs")
        ds = data.dataset if isinstance(data, DataLoader) else data
        if not isinstance(ds, Dataset):
            raise TypeError(f"expected a torch Dataset or DataLoader of (image, label) pairs, got {type(data).__name__}.")
        out = Path(out_dir) if out_dir is not None else None
        sdir = out / "surrogate" if out is not None else None
        # before the first query: the surrogate's architecture, the output folder and what it already holds
        check_architecture(self.surrogate_arch, "surrogate")
        if out is None:
            return self._fit(ds, epochs, out, sdir, resume, val_loader)
        check_out_dir(out)
        with RunLock(out):
            self._check_resumable(out, sdir, ds, resume)
            return self._fit(ds, epochs, out, sdir, resume, val_loader)

    def _check_resumable(self, out: Path, sdir: Path | None, ds: Dataset, resume: bool) -> None:
        """Refuse, before spending queries, an out_dir holding a white-box run, another mode or other data."""
        if not resume:
            return
        from ..engine.checkpoint import CHECKPOINT
        from ..engine.rundir import ENGINE_SUBDIR

        has_surrogate = sdir is not None and (sdir / "config.json").is_file()
        if any((d / CHECKPOINT).is_file() for d in (out, out / ENGINE_SUBDIR)) and not has_surrogate:
            raise CheckpointError(f"{out} holds an AdvGAN run without a black-box surrogate (a white-box run?); "
                                  "train the black-box attacker into another out_dir.")
        if not has_surrogate or sdir is None:
            return
        meta = load_json(sdir / "config.json", what="black-box surrogate").get("extra", {})
        bb = meta.get("blackbox", {}) if isinstance(meta, dict) else {}
        if bb.get("mode") not in (None, self.mode):
            raise CheckpointError(f"{out} holds a black-box run in mode {bb.get('mode')!r}; this is mode {self.mode!r}. "
                                  "Resume with the same mode, or train into another out_dir.")
        stored = bb.get("data")
        if isinstance(stored, dict):
            diff = first_difference(stored, data_fingerprint(ds))
            if diff:
                raise CheckpointError(f"{out} holds a black-box run on other data ({diff}). Resume with the same dataset, "
                                      "or train into another out_dir.")

    def _fit(self, ds: Dataset, epochs: int, out: Path | None, sdir: Path | None, resume: bool,
             val_loader: Dataset | DataLoader | None) -> History:
        if resume and sdir is not None and (sdir / "config.json").is_file():
            self.surrogate = Classifier.load(sdir)
            extra: dict[str, Any] = dict(getattr(self.surrogate, "extra", {}))
            meta = extra.get("blackbox", {})
            from attacks.checkpoint import load_tensors

            labels = load_tensors(sdir / "labels.safetensors", what="black-box labels")["labels"]
            base = data_mod.to_image_dataset(ds) if not isinstance(ds, data_mod.ImageDataset) else ds
            labeled = labelled_dataset(base, labels, self.blackbox.num_classes)
            self.blackbox.queries = int(meta.get("queries", 0))
        else:
            labeled = distill_labels(self.blackbox, ds)
            from ..training import train_classifier

            with torch.random.fork_rng(devices=[]):  # a reproducible init, independent of the caller's RNG state
                torch.manual_seed(self.config.seed + 1)
                clf = Classifier.create(self.surrogate_arch, self.blackbox.num_classes, in_chans=self.blackbox.data_chans)
            self.surrogate, _ = train_classifier(clf, labeled, epochs=self.surrogate_epochs, lr=self.surrogate_lr,
                                                 seed=self.config.seed, device=self.config.device,
                                                 progress=self.config.progress, batch_size=self.config.batch_size)
            if sdir is not None:
                from attacks.checkpoint import save_tensors

                self.surrogate.save(sdir, extra={"blackbox": {"queries": self.blackbox.queries, "mode": self.mode,
                                                              "data": data_fingerprint(ds)}})
                save_tensors(sdir / "labels.safetensors", {"labels": labeled.labels})
        self.queries = {"distillation": self.blackbox.queries}
        if self.mode == "static":
            self.attacker = AdvGAN(self.surrogate, self.config)
        else:
            self.attacker = _DynamicAdvGAN(self.surrogate, self.config, self.blackbox, self.surrogate_lr, self.s_steps)
        history = self.attacker.fit(labeled, epochs, out_dir=out, resume=resume, val_loader=val_loader)
        self.surrogate.freeze()
        self.queries["total"] = self.blackbox.queries
        if out is not None:
            save_json(out / "blackbox.json", {"mode": self.mode, "queries": self.queries, "surrogate": self.surrogate_arch})
        return history

    def as_attack(self, batch_size: int = 256) -> GeneratorAttack:
        if self.attacker is None:
            raise ValueError("fit the black-box attacker first.")
        return self.attacker.as_attack(batch_size)

    def save(self, directory: str | Path) -> Path:
        """The attacker (``AdvGAN.load(dir, model)`` works with the black-box model) + the surrogate."""
        if self.attacker is None or self.surrogate is None:
            raise ValueError("fit the black-box attacker before saving it.")
        d = self.attacker.save(directory)
        self.surrogate.save(Path(directory) / "surrogate", extra={"blackbox": {"queries": self.blackbox.queries, "mode": self.mode}})
        save_json(Path(directory) / "blackbox.json", {"mode": self.mode, "queries": self.queries, "surrogate": self.surrogate_arch})
        return d


__all__ = ["BlackBox", "BlackBoxAdvGAN", "DynamicDistillationGame", "distill_labels", "MODES"]
