"""Moving a caller's model to a device and back, safely: every tensor returns to where it was.

``with moved_to(model, device):`` moves ``model`` and, on every path out (a result, an exception, an
interrupt, a move that failed half-way), puts each parameter, gradient and buffer back on its own
original device (a model spread over devices comes back spread the same way). Parameters keep their
identity (``param.data`` is moved), so optimizers and references held by the caller stay valid.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

Snapshot = list[tuple[nn.Module, str, str, torch.device]]


def device_snapshot(model: nn.Module) -> Snapshot:
    """Where every parameter (``p``), gradient (``g``) and buffer (``b``) of ``model`` lives."""
    snap: Snapshot = []
    for mod in model.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                snap.append((mod, "p", name, p.device))
                if p.grad is not None:
                    snap.append((mod, "g", name, p.grad.device))
        for name, b in mod._buffers.items():
            if b is not None:
                snap.append((mod, "b", name, b.device))
    return snap


def restore_devices(snap: Snapshot) -> None:
    """Move every tensor of a :func:`device_snapshot` back to its recorded device."""
    with torch.no_grad():
        for mod, kind, name, dev in snap:
            if kind == "b":
                b = mod._buffers.get(name)
                if b is not None and b.device != dev:
                    mod._buffers[name] = b.to(dev)
                continue
            p = mod._parameters.get(name)
            if p is None:
                continue
            if kind == "p" and p.device != dev:
                p.data = p.data.to(dev)
            elif kind == "g" and p.grad is not None and p.grad.device != dev:
                p.grad = p.grad.to(dev)


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
