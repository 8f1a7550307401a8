"""Checkpoints of the min-max engine: one safetensors file with everything needed for exact resume.

Weights, EMA copies, optimizer tensors, RNG state (also at the epoch start, with the loader's shuffle
generators) go in as tensors; step counters, schedulers, scalers and the configuration go in as JSON
metadata. Written atomically by rank 0; a checkpoint of another model or configuration is refused.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attacks.checkpoint import (
    CheckpointError,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_state,
    save_tensors,
    set_rng_state,
)
from attacks.checkpoint import load_tensors as _load_tensors

from . import distributed as D
from .history import History

CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.json"
_RUN_FIELDS = ("progress", "device", "checkpoint_every", "sample_every", "log_every",  # may differ on resume
               "channels_last", "compile", "ddp_find_unused",
               "epochs")  # a config's own `epochs` field (fine-tuning): resuming may extend the run


@dataclass
class _State:
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0


class CheckpointMixin:
    """Save/load of :class:`~advgan.engine.MinMaxTrainer` state (mixed into the trainer)."""

    def _config_for_check(self) -> dict[str, Any]:
        tc = {k: v for k, v in self.config.to_dict().items() if k not in _RUN_FIELDS}
        return json.loads(json.dumps({"train": tc, "game": self.game.config_dict()}, default=str))

    def save_checkpoint(self) -> Path | None:
        """Write everything needed for exact resume into one safetensors file (atomic). Rank 0 only."""
        self._flush_logs()
        if self.out_dir is None:
            return None
        self._sync_buffers()
        for name, net in self.raw_nets.items():
            bad = [n for n, t in net.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
            if bad:
                self._diverged(self.state.step, f"{name} weights ({bad[0]})", float("nan"))
        if self.dist.is_main:
            tensors: dict[str, torch.Tensor] = {}
            opt_meta = {}
            for name, net in self.raw_nets.items():
                tensors.update({f"net.{name}.{k}": v for k, v in net.state_dict().items()})
            for name, ema in self.ema.items():
                tensors.update({f"ema.{name}.{k}": v for k, v in ema.state_dict().items()})
            for name, opt in self.optimizers.items():
                t, m = optimizer_to_tensors(opt, f"opt.{name}")
                tensors.update(t)
                opt_meta[name] = m
            tensors.update(rng_state())
            tensors.update(self._epoch_rng)
            tensors.update({f"loader.gen{i}": g.get_state() for i, g in enumerate(self._loader_gens)})
            meta = {
                "kind": "minmax-checkpoint",
                "game_kind": self.game.kind,
                "config": self._config_for_check(),
                "state": dataclasses.asdict(self.state),
                "optimizers": opt_meta,
                "schedulers": {n: {k: v for k, v in s.state_dict().items() if k != "lr_lambdas"} for n, s in self.schedulers.items()},
                "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
                "world_size": self.dist.world_size,
            }
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.history.save(self.out_dir / HISTORY)
            save_tensors(self.out_dir / CHECKPOINT, tensors, {"json": json.dumps(meta, default=str)})
        D.barrier()
        return self.checkpoint_path

    def load_checkpoint(self) -> None:
        """Restore nets, EMA, optimizers, schedulers, scalers, step counters and RNG from ``out_dir``."""
        path = self.checkpoint_path
        from safetensors import safe_open

        tensors = _load_tensors(path, what="training checkpoint")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["json"])
        except (KeyError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} has no engine metadata ({e}); it is not a training checkpoint.") from None
        if meta.get("kind") != "minmax-checkpoint" or meta.get("game_kind") != self.game.kind:
            raise CheckpointError(f"{path} is a {meta.get('game_kind')} checkpoint; this is a {self.game.kind}. Use another out_dir.")
        mine = self._config_for_check()
        if meta["config"] != mine:
            diff = _first_diff(meta["config"], mine)
            raise CheckpointError(
                f"{path} was written with a different configuration ({diff}). Resume with the same settings, "
                "or train into a new output directory."
            )
        from attacks.checkpoint import load_state_dict_into

        for name, net in self.raw_nets.items():
            load_state_dict_into(net, tensors, what=f"checkpoint net {name}", prefix=f"net.{name}.")
        for name, ema in self.ema.items():
            load_state_dict_into(ema, tensors, what=f"checkpoint EMA {name}", prefix=f"ema.{name}.")
        for name, opt in self.optimizers.items():
            optimizer_from_tensors(opt, {k: v.to(self.device) for k, v in tensors.items() if k.startswith(f"opt.{name}.")},
                                   meta["optimizers"][name], f"opt.{name}")
        for name, s in self.schedulers.items():
            sd = s.state_dict()
            sd.update(meta["schedulers"].get(name, {}))
            s.load_state_dict(sd)
        for name, s in self.scalers.items():
            if name in meta.get("scalers", {}):
                s.load_state_dict(meta["scalers"][name])
        self.state = _State(**meta["state"])
        self._epoch_rng = {k: v for k, v in tensors.items() if k.startswith("epoch.")}
        self._loader_resume = {k: v for k, v in tensors.items() if k.startswith("loader.")}
        if meta.get("world_size", 1) != self.dist.world_size and self.state.batch_in_epoch:
            self.state.batch_in_epoch = 0  # another world size shards differently: restart this epoch
            self._epoch_rng = {}
        set_rng_state(tensors)
        hist = self.out_dir / HISTORY
        if hist.is_file():
            self.history = History.load(hist)
            self.history.steps = [r for r in self.history.steps if r["step"] <= self.state.step]


def _first_diff(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: checkpoint {a!r} vs now {b!r}"
