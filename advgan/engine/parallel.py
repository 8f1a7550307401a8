"""Wrapping the trainable networks for the engine: DistributedDataParallel and/or ``torch.compile``.

The wrappers live in the trainer only (the game's ``nets`` always hold the raw networks); the engine
passes a player's wrapper to ``loss`` while that player steps. Frozen modules are never wrapped.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from . import distributed as D


def wrap(nets: Mapping[str, nn.Module], *, dist: D.DistInfo, device: torch.device, compile: bool | str = False,
         find_unused: bool = False) -> dict[str, nn.Module]:
    """``{name: wrapper}`` for each of ``nets``: DDP under torchrun, then torch.compile when asked (else nothing).

    Buffers are not broadcast on every forward (a GAN calls D several times per step, and frozen players
    run the raw module); :func:`sync_buffers` averages them at epoch ends and checkpoints."""
    wrapped: dict[str, nn.Module] = {}
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        for name, net in nets.items():
            was = [q.requires_grad for q in net.parameters()]
            net.requires_grad_(True)  # DDP registers hooks only for parameters that require grad now
            wrapped[name] = DDP(net, device_ids=ids, find_unused_parameters=find_unused, **D.no_forward_buffer_sync())  # type: ignore[arg-type]
            for q, r in zip(net.parameters(), was):
                q.requires_grad_(r)
    if compile:
        backend = "inductor" if compile is True else compile
        for name, net in nets.items():
            wrapped[name] = torch.compile(wrapped.get(name, net), backend=backend)  # type: ignore[assignment]
    return wrapped


def sync_buffers(modules: Iterable[nn.Module], dist: D.DistInfo) -> None:
    """Average floating buffers (BatchNorm running stats) across ranks."""
    if not dist.active:
        return
    for net in modules:
        for b in net.buffers():
            if b.is_floating_point():
                D.all_reduce_sum(b.data).div_(dist.world_size)
