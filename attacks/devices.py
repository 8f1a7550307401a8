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

Snapshot = list[tuple[nn.Module, str, str, torch.Tensor, torch.Tensor]]


def device_snapshot(model: nn.Module) -> Snapshot:
    """The tensors of every parameter (``p``), gradient (``g``) and buffer (``b``) of ``model``, as objects.

    A move replaces them (``.to`` makes new tensors, and for some devices, e.g. ``meta``, new Parameter
    objects); keeping the originals lets :func:`restore_devices` put back the exact bits on the exact
    device, with no copy, even from a device without data or after a move that failed half-way. Only for
    models the block does not train (their values must not change meanwhile): a caller's model under
    evaluation, a frozen target.
    """
    snap: Snapshot = []
    for mod in model.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                snap.append((mod, "p", name, p, p.data))
                if p.grad is not None:
                    snap.append((mod, "g", name, p, p.grad))
        for name, b in mod._buffers.items():
            if b is not None:
                snap.append((mod, "b", name, b, b))
    return snap


def restore_devices(snap: Snapshot) -> None:
    """Put every tensor of a :func:`device_snapshot` back: the original Parameter objects with their original data."""
    with torch.no_grad():
        for mod, kind, name, obj, data in snap:
            if kind == "b":
                if mod._buffers.get(name) is not obj:
                    mod._buffers[name] = obj
                continue
            if mod._parameters.get(name) is not obj:
                mod._parameters[name] = obj  # type: ignore[assignment]
            if kind == "p":
                if obj.data.device != data.device or obj.data.data_ptr() != data.data_ptr():
                    obj.data = data
            elif kind == "g" and obj.grad is not data:
                obj.grad = data


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
