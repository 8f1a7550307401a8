"""Snapshots for the reliability tests: tensors, model state (weights, buffers, train/eval mode), folders.

``with unchanged(tensors=[x, y], models=[clf], dirs=[tmp_path]):`` asserts on exit that nothing in
them changed (bit for bit); used around every call that is expected to raise.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (persistent or not), cloned."""
    out = {f"p.{k}": v.detach().clone() for k, v in model.named_parameters()}
    out.update({f"b.{k}": v.detach().clone() for k, v in model.named_buffers()})
    return out


def modes_snapshot(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()] + [p.requires_grad for p in model.parameters()]


def assert_same_state(before: dict[str, torch.Tensor], model: nn.Module, what: str = "model") -> None:
    after = state_snapshot(model)
    assert set(before) == set(after), f"{what}: tensors added/removed"
    for k, v in before.items():
        w = after[k]
        assert v.dtype == w.dtype and v.shape == w.shape and v.device == w.device, f"{what}: {k} changed dtype/shape/device"
        assert torch.equal(v, w), f"{what}: {k} changed"


def dir_digest(path: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256} of every file under ``path`` (empty if it does not exist)."""
    root = Path(path)
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out


@contextlib.contextmanager
def unchanged(tensors: Iterable[torch.Tensor] = (), models: Iterable[nn.Module] = (),
              dirs: Iterable[str | os.PathLike] = ()) -> Iterator[None]:
    tensors, models, dirs = list(tensors), list(models), list(dirs)
    t0 = [(t, t.detach().clone()) for t in tensors]
    m0 = [(m, state_snapshot(m), modes_snapshot(m)) for m in models]
    d0 = [(d, dir_digest(d)) for d in dirs]
    try:
        yield
    finally:
        for t, c in t0:
            assert t.dtype == c.dtype and t.shape == c.shape, "an input tensor changed dtype/shape"
            assert torch.equal(t, c) if not t.is_floating_point() else torch.equal(torch.nan_to_num(t), torch.nan_to_num(c)) \
                and torch.equal(t.isnan(), c.isnan()), "an input tensor was modified"
        for m, s, modes in m0:
            assert_same_state(s, m)
            assert modes_snapshot(m) == modes, "the model's train/eval mode or requires_grad flags changed"
        for d, h in d0:
            assert dir_digest(d) == h, f"files under {d} changed"
