"""Fingerprints stored in a checkpoint so that a resume on other data, or against another model, is refused.

``data_fingerprint(dataset)``: the dataset's name (when it has one), its length, its type and a SHA-256 of
a few samples spread over it (images and labels) and of the whole label list when the dataset exposes
one. Samples are read with every random generator saved, seeded and restored (random transforms give
the same bytes each time, and the training's random stream is untouched).
``modules_fingerprint(modules)``: a SHA-256 of the weights of fixed modules a game uses (AdvGAN's target).
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, Subset

SAMPLES = 8  #: samples hashed, spread evenly over the dataset


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _feed(h, o)
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _feed(h, obj[k])
    elif hasattr(obj, "tobytes") and hasattr(obj, "shape"):  # numpy arrays
        h.update(obj.tobytes())
    else:
        h.update(repr(obj).encode())


def _name(ds: Any) -> str | None:
    while isinstance(ds, Subset):
        ds = ds.dataset
    name = getattr(ds, "name", None)
    return name if isinstance(name, str) and name else None


def _labels(ds: Any) -> Any:
    for attr in ("labels", "targets"):
        v = getattr(ds, attr, None)
        if isinstance(v, (torch.Tensor, list)):
            return v
    return None


def data_fingerprint(dataset: Dataset | Iterable[Any]) -> dict[str, Any]:
    """What identifies the training data (see the module docstring); JSON-able."""
    fp: dict[str, Any] = {"type": type(dataset).__name__}
    name = _name(dataset)
    if name is not None:
        fp["name"] = name
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        return fp
    n = len(dataset)  # type: ignore[arg-type]
    fp["length"] = n
    if n == 0:
        return fp
    idx = sorted({round(i * (n - 1) / max(SAMPLES - 1, 1)) for i in range(min(SAMPLES, n))})
    h = hashlib.sha256()
    np_random = _numpy_random()
    py_state = random.getstate()
    np_state = np_random.get_state() if np_random is not None else None
    try:
        with torch.random.fork_rng(devices=[]):
            for i in idx:
                torch.manual_seed(i)
                random.seed(i)
                if np_random is not None:
                    np_random.seed(i)
                _feed(h, dataset[i])
    except Exception as e:  # noqa: BLE001 - a dataset we cannot read here: keep name/length, note why
        fp["samples"] = f"unreadable ({type(e).__name__})"
        return fp
    finally:
        random.setstate(py_state)
        if np_random is not None and np_state is not None:
            np_random.set_state(np_state)
    fp["samples"] = h.hexdigest()[:16]
    labels = _labels(dataset)
    if labels is not None:
        hl = hashlib.sha256()
        _feed(hl, labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels))
        fp["labels"] = hl.hexdigest()[:16]
    return fp


def _numpy_random() -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return None
    return np.random


def modules_fingerprint(modules: Sequence[nn.Module]) -> str | None:
    """SHA-256 (16 hex digits) of the parameters and buffers of ``modules``; None when there are none."""
    if not modules:
        return None
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            _feed(h, v)
    return h.hexdigest()[:16]


#: fingerprint keys in the order they are reported, and the words the error uses for them
FIELDS = {"name": "dataset name", "length": "dataset length", "type": "dataset type", "labels": "labels",
          "samples": "sample contents"}


def first_difference(stored: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first field (in :data:`FIELDS` order) that both fingerprints have and that differs, described."""
    for key, words in FIELDS.items():
        if key in stored and key in now and stored[key] != now[key]:
            return f"{words}: checkpoint {stored[key]!r} vs now {now[key]!r}"
    return None
