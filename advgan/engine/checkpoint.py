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

    def check(self) -> None:
        """Refuse, before any work, a checkpoint or history path that exists but is not a file (e.g. a directory)."""
        if self.directory is None:
            return
        for p in (self.directory / CHECKPOINT, self.directory / HISTORY):
            if p.exists() and not p.is_file():
                raise CheckpointError(f"{p} is a directory, not a checkpoint file; training could never save there. "
                                      "Remove or rename it, or train into another out_dir.")

    def save(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, game_kind: str, config: Mapping[str, Any],
             history: History, callbacks: Mapping[str, Any], world_size: int,
             fingerprint: Mapping[str, Any] | None = None) -> Path | None:
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
        if fingerprint:
            full["fingerprint"] = dict(fingerprint)
        self.directory.mkdir(parents=True, exist_ok=True)
        history.save(self.directory / HISTORY)
        save_tensors(self.directory / CHECKPOINT, all_tensors, {"json": json.dumps(full, default=str)})
        return self.path

    def load(self, *, game_kind: str, config: Mapping[str, Any], fingerprint: Mapping[str, Any] | None = None) -> Loaded:
        """Read and check the checkpoint: the same kind of game, configuration and (when both have one) data and
        fixed models (see :mod:`advgan.engine.fingerprint`), or CheckpointError naming what differs."""
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
        stored = _without_retired(meta.get("config", {}), config)
        if stored != dict(config):
            raise CheckpointError(
                f"{path} was written with a different configuration ({_first_diff(stored, dict(config))}). Resume with the "
                "same settings, or train into a new output directory."
            )
        _check_fingerprint(path, meta.get("fingerprint"), fingerprint)
        callbacks = {name: join_tensors(s, tensors, f"cb.{name}") for name, s in meta.get("callbacks", {}).items()}
        hist = self.directory / HISTORY if self.directory is not None else None
        history = History.load(hist) if hist is not None and hist.is_file() else None
        return Loaded({k: v for k, v in tensors.items() if not k.startswith("cb.")}, meta, history, callbacks)


#: training-config fields added after a checkpoint format was fixed, with the value that reproduces the old
#: behaviour: a checkpoint without the field resumes when the run's value is that one
ADDED_FIELDS: dict[str, Any] = {"augmix_width": 3, "augmix_depth": -1, "augmix_severity": 3, "augmix_alpha": 1.0,
                                "jsd_lambda": 12.0, "augmix_corruptions": "",
                                "g_steps": 1, "div_weight": 0.0, "spread_weight": 0.0, "spread_floor": None, "shift": 0, "image_size": None,
                                "target_curriculum": 0.0, "aux_weight": 0.0,
                                # fine-tuning methods added since 0.1 (their settings do not touch the older methods)
                                "mart_beta": 6.0, "nfgsm_k": 2.0, "awp_gamma": 5e-3, "awp_base": "pgd-at",
                                "awp_warmup_epochs": 0.0, "gen_steps": 1, "gen_noise": 0, "gen_mix": 0.0, "gen_clean": 0.5,
                                "gen_kl": 0.0, "gen_alpha": 1.0, "gen_kappa": 10.0, "gen_lr": 3e-3, "gen_width": 8,
                                "gen_fraction": 1.0, "gen_grad": False, "gen_init": False,
                                "gen_init_step": 1.0, "gen_reverse": False}


def _check_fingerprint(path: Path, stored: Any, now: Mapping[str, Any] | None) -> None:
    """Refuse a resume on other data or against another fixed model (checkpoints without a fingerprint pass)."""
    from .fingerprint import first_difference

    if not isinstance(stored, Mapping) or not now:
        return
    sd, nd = stored.get("data"), now.get("data")
    if isinstance(sd, Mapping) and isinstance(nd, Mapping):
        diff = first_difference(dict(sd), dict(nd))
        if diff:
            raise CheckpointError(
                f"{path} was trained on other data ({diff}). Resume with the same dataset and settings, or train "
                "into a new output directory."
            )
    sf, nf = stored.get("fixed_models"), now.get("fixed_models")
    if sf and nf and sf != nf:
        raise CheckpointError(
            f"{path} was trained against another model (fixed_models: weights checkpoint {sf} vs now {nf}; e.g. another "
            "--classifier). Resume with the same model, or train into a new output directory."
        )


#: settings read by one fine-tuning method only (field-name prefix -> method): a checkpoint of another method
#: without such a field resumes whatever its value (it cannot change that run), e.g. a 0.1 pgd-at run after
#: advgan-at's defaults changed
METHOD_FIELDS: dict[str, str] = {"gen_": "advgan-at", "mart_": "mart", "awp_": "awp", "nfgsm_": "n-fgsm"}


def _unused_by(stored_train: Mapping[str, Any], field: str) -> bool:
    """Whether ``field`` is a setting of a method other than the stored run's (so its value cannot matter)."""
    method = stored_train.get("method")
    return method is not None and any(field.startswith(pre) and method != m for pre, m in METHOD_FIELDS.items())


def _without_retired(stored: Mapping[str, Any], mine: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(stored)
    if isinstance(out.get("train"), Mapping) and isinstance(mine.get("train"), Mapping):
        train = {k: v for k, v in out["train"].items() if k in mine["train"] or k not in RETIRED_FIELDS}
        for k, v in mine["train"].items():
            if k not in train and k in ADDED_FIELDS and (v == ADDED_FIELDS[k] or _unused_by(out["train"], k)):
                train[k] = v
        out["train"] = train
    return out


def _first_diff(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: checkpoint {a!r} vs now {b!r}"
