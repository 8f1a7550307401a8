"""Checkpoints of the engine: one safetensors file with everything needed for exact resume.

:class:`Checkpointer` writes a :class:`~advgan.engine.state.TrainState` (weights, EMA copies, optimizer
tensors, RNG), the callbacks' states and ``history.json`` into a run directory, atomically, and reads them
back after checking that the checkpoint belongs to the same kind of game and the same configuration
(fields marked ``RUN`` may differ). A checkpoint of another model or configuration is refused with the
differing field named. The format is the one of advgan 0.1 plus a ``callbacks`` entry; a 0.1 checkpoint
still resumes (its callbacks start fresh, from the history).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attacks.checkpoint import CheckpointError, load_tensors, save_tensors

from ..config import run_fields
from .history import History

CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.json"
KIND = "minmax-checkpoint"
#: fields that the one-player configs of advgan 0.1 inherited and ignored; a 0.1 checkpoint that has them resumes
RETIRED_FIELDS = ("lr_g", "lr_d", "d_steps")


def comparable_config(config: Any, game_config: Mapping[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to resume: the config without its ``RUN`` fields, and the game's own."""
    skip = run_fields(type(config))
    train = {k: v for k, v in config.to_dict().items() if k not in skip}
    return json.loads(json.dumps({"train": train, "game": dict(game_config)}, default=str))


def config_defaults(config: Any) -> dict[str, Any]:
    """The (JSON-normalised) defaults of ``config``'s fields: a field added after a checkpoint was written, and set
    to its default now, changes nothing, so that checkpoint still resumes."""
    import dataclasses

    out = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    return json.loads(json.dumps(out, default=str))


def split_tensors(obj: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Tensors of a nested dict (keys under ``prefix``) and a JSON skeleton with ``"__tensor__"`` in their place."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}, "__tensor__"
    if isinstance(obj, Mapping):
        tensors: dict[str, torch.Tensor] = {}
        skeleton = {}
        for k, v in obj.items():
            t, s = split_tensors(v, f"{prefix}.{k}")
            tensors.update(t)
            skeleton[str(k)] = s
        return tensors, skeleton
    return {}, obj


def join_tensors(skeleton: Any, tensors: Mapping[str, torch.Tensor], prefix: str) -> Any:
    """The inverse of :func:`split_tensors` (dict keys come back as strings)."""
    if skeleton == "__tensor__":
        return tensors[prefix]
    if isinstance(skeleton, Mapping):
        return {k: join_tensors(v, tensors, f"{prefix}.{k}") for k, v in skeleton.items()}
    return skeleton


@dataclass
class Loaded:
    """A checked checkpoint: its tensors, metadata, history and callback states."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    history: History | None
    callbacks: dict[str, Any] = field(default_factory=dict)


class Checkpointer:
    """Reads and writes ``checkpoint.safetensors`` (+ ``history.json``) in ``directory`` (None: never writes)."""

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None

    @property
    def path(self) -> Path | None:
        return self.directory / CHECKPOINT if self.directory is not None else None

    def exists(self) -> bool:
        return bool(self.path and self.path.is_file())

    def save(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, game_kind: str, config: Mapping[str, Any],
             history: History, callbacks: Mapping[str, Any], world_size: int) -> Path | None:
        """Write one checkpoint (atomic: a crash keeps the previous one). Call on one rank only."""
        if self.directory is None:
            return None
        all_tensors = dict(tensors)
        cb_meta = {}
        for name, state in callbacks.items():
            t, skeleton = split_tensors(state, f"cb.{name}")
            all_tensors.update(t)
            cb_meta[name] = skeleton
        full = {"kind": KIND, "game_kind": game_kind, "config": dict(config), **meta, "world_size": world_size,
                "callbacks": cb_meta}
        self.directory.mkdir(parents=True, exist_ok=True)
        history.save(self.directory / HISTORY)
        save_tensors(self.directory / CHECKPOINT, all_tensors, {"json": json.dumps(full, default=str)})
        return self.path

    def load(self, *, game_kind: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> Loaded:
        """Read and check the checkpoint: the same kind of game and the same configuration, or CheckpointError.

        ``defaults`` (:func:`config_defaults`): a config field the checkpoint lacks passes when it is at its default."""
        path = self.path
        if path is None:
            raise CheckpointError("no checkpoint directory was given.")
        from safetensors import safe_open

        tensors = load_tensors(path, what="training checkpoint")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["json"])
        except (KeyError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} has no engine metadata ({e}); it is not a training checkpoint.") from None
        if meta.get("kind") != KIND or meta.get("game_kind") != game_kind:
            raise CheckpointError(f"{path} is a {meta.get('game_kind')} checkpoint; this is a {game_kind}. Use another out_dir.")
        stored = _without_retired(meta.get("config", {}), config, defaults or {})
        if stored != dict(config):
            raise CheckpointError(
                f"{path} was written with a different configuration ({_first_diff(stored, dict(config))}). Resume with the "
                "same settings, or train into a new output directory."
            )
        callbacks = {name: join_tensors(s, tensors, f"cb.{name}") for name, s in meta.get("callbacks", {}).items()}
        hist = self.directory / HISTORY if self.directory is not None else None
        history = History.load(hist) if hist is not None and hist.is_file() else None
        return Loaded({k: v for k, v in tensors.items() if not k.startswith("cb.")}, meta, history, callbacks)


def _without_retired(stored: Mapping[str, Any], mine: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(stored)
    if isinstance(out.get("train"), Mapping) and isinstance(mine.get("train"), Mapping):
        train = {k: v for k, v in out["train"].items() if k in mine["train"] or k not in RETIRED_FIELDS}
        added = {k: v for k, v in mine["train"].items() if k not in train and k in defaults and defaults[k] == v}
        out["train"] = {**train, **added}
    return out


def _first_diff(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: checkpoint {a!r} vs now {b!r}"
