"""What the GAN-family models share: building registered nets, the EMA generator, save/load with ``G_ema``."""
from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import modelio
from ..data.loaders import batch_loader  # noqa: F401  (the 0.1 home of batch_loader)
from ..engine import MinMaxTrainer, Trainable
from . import nets as _nets

M = TypeVar("M", bound="GenerativeModel")


def first_sample(dataset: Dataset) -> torch.Tensor:
    """Item 0's sample (of ``(sample, label)`` items, or a bare tensor)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the dataset is empty.")
    item = dataset[0]
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"dataset items must be tensors or (tensor, label) pairs, got {type(x).__name__}.")
    return x


def build_net(name: str, required: dict[str, Any], optional: dict[str, Any]) -> nn.Module:
    """Create a registered net with ``required`` kwargs plus those ``optional`` ones its constructor accepts."""
    fn = _nets._NETS[name]
    try:
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
        extra = {k: v for k, v in optional.items() if takes_all or k in params}
    except (TypeError, ValueError):
        extra = {}
    return _nets.create_net(name, **required, **extra)


def model_fields(config: Any, base: type) -> dict[str, Any]:
    """The config's fields that ``base`` (the engine's config class) does not have: the model's own."""
    shared = {f.name for f in dataclasses.fields(base)}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in shared}


class GenerativeModel(Trainable):
    """A GAN-family model that is its own game: G (+ D) in ``nets``, an EMA generator kept after training.

    ``generator`` is the network used for inference: the EMA copy when ``ema_decay`` is set (after
    training, or loaded), else G. ``save`` writes G, D and ``G_ema`` (when there is one)."""

    kind: str = "generative"
    nets: dict[str, nn.Module]
    g_ema: nn.Module | None = None

    # Trainable declares game as an attribute; here it is the model itself
    @property
    def game(self) -> Any:  # type: ignore[override]
        """The model is its own game."""
        return self

    @property
    def generator(self) -> nn.Module:
        """The generator used for inference: the EMA copy when ``ema_decay`` is set, else G."""
        return self.g_ema if self.g_ema is not None else self.nets["G"]

    def _adopt(self, trainer: MinMaxTrainer) -> None:
        if self.g_ema is not None and "G" in trainer.ema:
            trainer.ema["G"].load_state_dict(self.g_ema.state_dict())

    def _trained(self, trainer: MinMaxTrainer) -> None:
        self.g_ema = trainer.ema.get("G", self.g_ema)

    def _save(self, directory: str | Path, extra: Mapping[str, Any]) -> Path:
        nets = dict(self.nets)
        if self.g_ema is not None:
            nets["G_ema"] = self.g_ema
        return modelio.save_model(directory, self.kind, self.config, nets, extra)

    @classmethod
    def _restore(cls: type[M], directory: str | Path, device: str | None,
                 build: Callable[[Any, dict[str, Any]], M]) -> M:
        """Rebuild a saved model: ``build(config, extra)`` makes it, then the weights (and ``G_ema``) are loaded."""
        meta = modelio.read_model_config(directory, cls.kind)
        cfg: Any = modelio.config_from_dict(cls._config_class(), meta["config"], Path(directory) / modelio.CONFIG)
        if device is not None:
            cfg = dataclasses.replace(cfg, device=device)
        try:
            model = build(cfg, meta.get("extra", {}))
        except KeyError as e:
            raise modelio.CheckpointError(f"{Path(directory) / modelio.CONFIG}: the key 'extra.{e.args[0]}' is missing "
                                          "(truncated or edited?).") from None
        except (TypeError, ValueError) as e:
            raise modelio.CheckpointError(f"{Path(directory) / modelio.CONFIG}: 'extra' holds an invalid value: {e}") from None
        nets = dict(model.nets)
        if "G_ema" in meta.get("nets", []):
            model.g_ema = copy.deepcopy(model.nets["G"]).eval().requires_grad_(False)
            nets["G_ema"] = model.g_ema
        modelio.load_weights(directory, nets, cls.kind)
        return model

    @classmethod
    def _config_class(cls) -> type:
        raise NotImplementedError


# the 0.1 names
_build = build_net
_first_sample = first_sample
