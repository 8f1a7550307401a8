"""Moving a caller's model to a device and back, safely: every tensor returns to where it was.

``with moved_to(model, device):`` moves ``model`` and, on every path out (a result, an exception, an
interrupt, a move that failed half-way), puts each parameter, gradient and buffer back: the original
tensors themselves, so the bits, the device (a model spread over devices comes back spread the same
way) and the memory format are the caller's again. Parameters keep their identity (``param.data`` is
set), so optimizers and references held by the caller stay valid.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

Snapshot = list[tuple[nn.Module, str, str, torch.Tensor]]


def device_snapshot(model: nn.Module) -> Snapshot:
    """The tensor objects of every parameter (``p``), gradient (``g``) and buffer (``b``) of ``model``.

    A move replaces them (``.to`` makes new tensors); keeping the originals lets :func:`restore_devices`
    put back the exact bits on the exact device, with no copy, even from a device without data (``meta``)
    or after a move that failed half-way. Only for models the block does not train (their values must
    not change meanwhile): a caller's model under evaluation, a frozen target.
    """
    snap: Snapshot = []
    for mod in model.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                snap.append((mod, "p", name, p.data))
                if p.grad is not None:
                    snap.append((mod, "g", name, p.grad))
        for name, b in mod._buffers.items():
            if b is not None:
                snap.append((mod, "b", name, b))
    return snap


def restore_devices(snap: Snapshot) -> None:
    """Put every tensor of a :func:`device_snapshot` back (parameters keep their identity: ``param.data`` is set)."""
    with torch.no_grad():
        for mod, kind, name, t in snap:
            if kind == "b":
                if mod._buffers.get(name) is not t:
                    mod._buffers[name] = t
                continue
            p = mod._parameters.get(name)
            if p is None:
                continue
            if kind == "p" and p.data is not t:
                p.data = t
            elif kind == "g" and p.grad is not t:
                p.grad = t


@contextlib.contextmanager
def moved_to(model: nn.Module, device: torch.device | str) -> Iterator[nn.Module]:
    """Run the block with ``model`` on ``device``; restore every tensor's device afterwards, whatever happens."""
    snap = device_snapshot(model)
    try:
        model.to(device)
        yield model
    finally:
        restore_devices(snap)


@contextlib.contextmanager
def restored_on_error(*models: nn.Module) -> Iterator[None]:
    """Run the block (which may move ``models``); if it raises, put every tensor back on its original device."""
    snaps = [device_snapshot(m) for m in models]
    try:
        yield
    except BaseException:
        for s in snaps:
            restore_devices(s)
        raise
