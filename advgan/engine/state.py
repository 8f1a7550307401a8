"""Everything a training run is, as one object: :class:`TrainState` and its ``state_dict`` for exact resume.

Networks, EMA copies, optimizers, LR schedulers, gradient scalers, the step counters, and the RNG: the
global RNG now, the global RNG and the loader's shuffling generators at the start of the current epoch
(a resume in the middle of an epoch replays its order), and the loader's generators (a resume at an
epoch boundary reshuffles exactly as the uninterrupted run). Tensors go to safetensors, the rest to JSON.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attacks.checkpoint import (
    load_state_dict_into,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_state,
    set_rng_state,
)

Scheduler = torch.optim.lr_scheduler.LambdaLR


@dataclass
class TrainState:
    """The state of one training run (see the module docstring). ``step`` counts rounds (generator steps)."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema: dict[str, nn.Module] = field(default_factory=dict)
    schedulers: dict[str, Scheduler] = field(default_factory=dict)
    scalers: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    #: global RNG (``epoch.rng.*``) and loader generators (``epoch.gen<i>``) at the start of the current epoch
    epoch_rng: dict[str, torch.Tensor] = field(default_factory=dict)
    #: the loader's shuffling generators (their state is saved with the checkpoint)
    loader_gens: list[torch.Generator] = field(default_factory=list)
    #: loader generator states read from a checkpoint (``loader.gen<i>``), applied when the next epoch starts
    loader_resume: dict[str, torch.Tensor] = field(default_factory=dict)

    def counters(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch}

    def begin_epoch(self, gens: list[torch.Generator]) -> dict[str, torch.Tensor] | None:
        """Set the RNG for the epoch about to run. Returns the RNG to restore after a mid-epoch replay (else None).

        Mid-epoch resume: the epoch-start RNG and loader generators come back, so the loader yields the same
        order; the caller skips the consumed batches and then restores the returned (current) RNG."""
        self.loader_gens = gens
        loader_resume, self.loader_resume = self.loader_resume, {}
        if self.batch_in_epoch and self.epoch_rng:
            now = rng_state()
            set_rng_state({k[len("epoch."):]: v for k, v in self.epoch_rng.items() if k.startswith("epoch.rng")})
            for i, g in enumerate(gens):
                if f"epoch.gen{i}" in self.epoch_rng:
                    g.set_state(self.epoch_rng[f"epoch.gen{i}"])
            return now
        self.batch_in_epoch = 0
        for i, g in enumerate(gens):
            if f"loader.gen{i}" in loader_resume:
                g.set_state(loader_resume[f"loader.gen{i}"])
        self.epoch_rng = {f"epoch.{k}": v for k, v in rng_state().items()}
        self.epoch_rng.update({f"epoch.gen{i}": g.get_state() for i, g in enumerate(gens)})
        return None

    def end_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0

    # ------------------------------------------------------------------ state_dict
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, meta)``: tensors for safetensors (weights, EMA, optimizer tensors, RNG) and JSON metadata."""
        tensors: dict[str, torch.Tensor] = {}
        opt_meta = {}
        for name, net in self.nets.items():
            tensors.update({f"net.{name}.{k}": v for k, v in net.state_dict().items()})
        for name, ema in self.ema.items():
            tensors.update({f"ema.{name}.{k}": v for k, v in ema.state_dict().items()})
        for name, opt in self.optimizers.items():
            t, m = optimizer_to_tensors(opt, f"opt.{name}")
            tensors.update(t)
            opt_meta[name] = m
        tensors.update(rng_state())
        tensors.update(self.epoch_rng)
        tensors.update({f"loader.gen{i}": g.get_state() for i, g in enumerate(self.loader_gens)})
        meta = {
            "state": self.counters(),
            "optimizers": opt_meta,
            "schedulers": {n: {k: v for k, v in s.state_dict().items() if k != "lr_lambdas"} for n, s in self.schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
        }
        return tensors, meta

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, device: torch.device,
                        same_world: bool = True) -> None:
        """Restore everything from ``state_dict``'s output (strict: nets that do not fit are refused unchanged)."""
        for name, net in self.nets.items():
            load_state_dict_into(net, tensors, what=f"checkpoint net {name}", prefix=f"net.{name}.")
        for name, ema in self.ema.items():
            load_state_dict_into(ema, tensors, what=f"checkpoint EMA {name}", prefix=f"ema.{name}.")
        for name, opt in self.optimizers.items():
            optimizer_from_tensors(opt, {k: v.to(device) for k, v in tensors.items() if k.startswith(f"opt.{name}.")},
                                   meta["optimizers"][name], f"opt.{name}")
        for name, s in self.schedulers.items():
            sd = s.state_dict()
            sd.update(meta["schedulers"].get(name, {}))
            s.load_state_dict(sd)
        for name, s in self.scalers.items():
            if name in meta.get("scalers", {}):
                s.load_state_dict(meta["scalers"][name])
        counters = meta["state"]
        self.epoch, self.step, self.batch_in_epoch = int(counters["epoch"]), int(counters["step"]), int(counters["batch_in_epoch"])
        self.epoch_rng = {k: v for k, v in tensors.items() if k.startswith("epoch.")}
        self.loader_resume = {k: v for k, v in tensors.items() if k.startswith("loader.")}
        if not same_world and self.batch_in_epoch:
            self.batch_in_epoch = 0  # another world size shards differently: restart this epoch
            self.epoch_rng = {}
        set_rng_state(tensors)

    @torch.no_grad()
    def update_ema(self, max_decay: float) -> None:
        """One EMA step of every averaged net toward its trained net (buffers copied).

        Warm-up: early on the average follows the net closely, so its random initial weights do not linger
        (with a flat 0.999 they would still weigh 0.999**2000 = 13 % after 2,000 steps).
        """
        if not self.ema:
            return
        t = self.step
        decay = min(max_decay, (1.0 + t) / (10.0 + t))
        for name, ema in self.ema.items():
            src = self.nets[name]
            for pe, ps in zip(ema.parameters(), src.parameters()):
                pe.lerp_(ps.detach(), 1.0 - decay)
            for be, bs in zip(ema.buffers(), src.buffers()):
                be.copy_(bs)
