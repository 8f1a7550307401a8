"""Saving and loading trained models: ``weights.safetensors`` + ``config.json``, and ``load(dir)`` by kind.

One place for GAN, ConditionalGAN, Pix2Pix and AdvGAN: the config dataclass goes to JSON (with the
model ``kind`` so a directory of another component is refused), the networks' state dicts go to one
safetensors file under ``<net name>.`` prefixes. Loading never unpickles.

Every model kind registers a loader (``register_kind``); :func:`load` reads ``config.json`` and dispatches
on its ``kind``: ``classifier`` (an :class:`attacks.Classifier`), ``gan``, ``cgan``, ``pix2pix`` and
``advgan``. An AdvGAN attacker is bound to the classifier it attacks: ``load(dir, classifier=clf)``.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from attacks.checkpoint import (
    CheckpointError,
    check_kind,
    load_json,
    load_state_dict_into,
    load_tensors,
    save_json,
    save_tensors,
)

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1
C = TypeVar("C")
Loader = Callable[..., Any]
_KINDS: dict[str, Loader] = {}


def register_kind(kind: str) -> Callable[[Loader], Loader]:
    """Decorator: ``fn(directory, *, classifier=None, device=None)`` loads models whose config.json has ``kind``."""
    def deco(fn: Loader) -> Loader:
        _KINDS[kind] = fn
        return fn

    return deco


def kinds() -> list[str]:
    """The model kinds :func:`load` knows."""
    return sorted(_KINDS)


def load(directory: str | Path, *, classifier: nn.Module | None = None, device: str | torch.device | None = None) -> Any:
    """The model saved in ``directory``, whatever its kind (see :func:`kinds`); ``classifier``: for an AdvGAN attacker."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"model directory {d} does not exist; point to a directory written by .save().")
    kind = load_json(d / CONFIG, what="model").get("kind")
    if kind not in _KINDS:
        raise CheckpointError(f"{d} holds a {kind or 'unknown'!s} model; known kinds: {', '.join(kinds())}.")
    return _KINDS[kind](d, classifier=classifier, device=device)


@register_kind("classifier")
def _load_classifier(directory: Path, *, classifier: nn.Module | None = None, device: str | torch.device | None = None) -> Any:
    from attacks import Classifier

    return Classifier.load(directory, device=device if device is not None else "cpu")


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], d: Mapping[str, Any], where: str | Path = "config") -> C:
    """Rebuild a (frozen) config dataclass from JSON: unknown keys refused, lists -> tuples where typed so.

    Every field is validated by the config class; an error names ``where`` (the file) and the key."""
    if not isinstance(d, Mapping):
        raise CheckpointError(f"{where}: 'config' must be a JSON object, got {type(d).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise CheckpointError(f"{where}: 'config.{unknown[0]}' is not a field of {cls.__name__} (unknown: {unknown}); "
                              "was it written by another version?")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in d.items():
        if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
            v = tuple(v)
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: a field of 'config' is invalid: {e}") from None


def save_model(directory: str | Path, kind: str, config: Any, nets: Mapping[str, nn.Module],
               extra: Mapping[str, Any] | None = None) -> Path:
    """Write the networks and the config (atomic files) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, net in nets.items():
        tensors.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    save_tensors(d / WEIGHTS, tensors)
    save_json(d / CONFIG, {"kind": kind, "format_version": FORMAT_VERSION, "config": config_to_dict(config), "nets": sorted(nets),
                           "extra": dict(extra or {})})
    return d


def read_model_config(directory: str | Path, kind: str) -> dict[str, Any]:
    """The JSON of a saved model, checked to be of ``kind``."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{kind} directory {d} does not exist; point to a directory written by .save().")
    path = d / CONFIG
    meta = load_json(path, what=kind)
    check_kind(meta, kind, d)
    version = meta.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path}: 'format_version' is {version!r}; this version of the library reads {kind} format "
                              f"1..{FORMAT_VERSION}. Upgrade advgan, or re-save the model.")
    if "config" not in meta:
        raise CheckpointError(f"{path}: the key 'config' is missing (truncated or edited?).")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: 'config' must be a JSON object, got {type(meta['config']).__name__}.")
    nets = meta.get("nets", [])
    if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
        raise CheckpointError(f"{path}: 'nets' must be a list of network names, got {nets!r}.")
    if not isinstance(meta.get("extra", {}), dict):
        raise CheckpointError(f"{path}: 'extra' must be a JSON object, got {type(meta['extra']).__name__}.")
    return meta


def load_weights(directory: str | Path, nets: Mapping[str, nn.Module], kind: str) -> None:
    """Load each network from ``weights.safetensors`` (strict; nothing changes if any does not fit)."""
    d = Path(directory)
    tensors = load_tensors(d / WEIGHTS, what=kind)
    backups = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in nets.items()}
    try:
        for name, net in nets.items():
            load_state_dict_into(net, tensors, what=f"{kind} {d} ({name})", prefix=f"{name}.")
    except BaseException:
        for name, net in nets.items():
            net.load_state_dict(backups[name])
        raise
