"""Every training batch checked (pixels in bounds, labels in range) on the device, without a host sync per batch.

A game declares what its batches hold with :class:`BatchSpec` (``MinMaxGame.batch_spec()``); the trainer
passes every batch through a :class:`BatchGuard` right after moving it to the device.

- What the host knows for free (the batch's structure, dtypes, shapes) is checked at once.
- Values: on the CPU they are checked at once too (there is no device to wait for). On an accelerator
  the guard queues a few reductions per batch (min, max, non-finite count of the images; min, max of
  the labels) and reads them at the trainer's next sync point (log flush, checkpoint, end of epoch),
  before anything is written: a bad batch stops training with a ``ValueError`` naming the batch and
  its values, and no checkpoint holds weights trained on it. Labels are clamped into range on the
  device meanwhile, so an out-of-range label cannot trigger a device-side assert first.

The dtype policy of :mod:`attacks.checks` applies: floating images are cast to the model's dtype,
integer labels to int64; integer images and float labels are refused.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from attacks.checks import check_images, check_labels, unpack_pair


@dataclass(frozen=True)
class BatchSpec:
    """What every batch of a game holds: images (at position ``image``) and optionally labels (``label``)."""

    what: str = "training data"
    image: int = 0
    label: int | None = 1
    num_classes: int | None = None
    channels: int | None = None
    bounds: tuple[float, float] = (0.0, 1.0)
    dtype: torch.dtype = torch.float32


class BatchGuard:
    """Checks each batch of ``spec`` on ``device``; :meth:`raise_if_bad` reads the deferred results."""

    def __init__(self, spec: BatchSpec, device: torch.device, *, deferred: bool | None = None) -> None:
        self.spec, self.device = spec, device
        self.deferred = device.type != "cpu" if deferred is None else deferred
        self._pending: list[tuple[int, int, torch.Tensor]] = []

    def _where(self, epoch: int, index: int) -> str:
        return f"{self.spec.what}, batch {index + 1} of epoch {epoch + 1}"

    def __call__(self, batch: Any, *, epoch: int, index: int) -> tuple[Any, ...]:
        """The batch as a tuple with images and labels checked (and cast per the dtype policy)."""
        s = self.spec
        where = self._where(epoch, index)
        if isinstance(batch, Mapping):
            batch = unpack_pair(batch, where) if s.label is not None else (unpack_pair(batch, where)[0],)
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        if not isinstance(batch, (tuple, list)):
            raise ValueError(f"{where}: expected a tuple of tensors, got {type(batch).__name__}.")
        need = max(s.image, s.label if s.label is not None else 0) + 1
        if len(batch) < need:
            raise ValueError(f"{where}: expected (image, label) items, got {len(batch)} tensor(s) per batch.")
        out = list(batch)
        x = out[s.image]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[0] == 0:
            check_images(x, name=f"{where}: images", channels=s.channels, bounds=s.bounds)  # raises with a hint
        if s.channels is not None and x.shape[1] != s.channels:
            check_images(x[:1], name=f"{where}: images", channels=s.channels, bounds=s.bounds)
        if x.dtype != s.dtype:
            x = x.to(s.dtype)
        y = out[s.label] if s.label is not None else None
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool or y.is_complex() \
                    or y.dim() != 1 or y.shape[0] != x.shape[0]:
                check_labels(y, x.shape[0], None, name=f"{where}: labels")  # raises
            if y.dtype != torch.long:
                y = y.long()
        if not self.deferred:
            check_images(x, name=f"{where}: images", channels=s.channels, bounds=s.bounds)
            if y is not None:
                check_labels(y, x.shape[0], s.num_classes, name=f"{where}: labels")
        else:
            xf = x.detach().float()
            finite = torch.isfinite(xf)
            stats = [torch.where(finite, xf, float("inf")).amin(), torch.where(finite, xf, float("-inf")).amax(),
                     (~finite).sum().float()]
            if y is not None:
                stats += [y.amin().float(), y.amax().float()]
                if s.num_classes is not None:
                    y = y.clamp(0, s.num_classes - 1)  # a bad label must not reach a device-side assert first
            self._pending.append((epoch, index, torch.stack(stats)))
        out[s.image] = x
        if y is not None and s.label is not None:
            out[s.label] = y
        return tuple(out)

    def raise_if_bad(self) -> None:
        """Read the queued checks (one host sync) and raise for the first bad batch."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = torch.stack([p[2] for p in pending]).cpu().tolist()
        s = self.spec
        lo, hi = s.bounds
        for (epoch, index, _), v in zip(pending, values):
            where = self._where(epoch, index)
            if v[2] > 0:
                raise ValueError(f"{where}: images contain {int(v[2])} NaN/Inf value(s); clean the data. Training stopped; "
                                 "no checkpoint was written after this batch.")
            if v[0] < lo - 1e-6 or v[1] > hi + 1e-6:
                hint = " It looks like 0-255 pixels: divide by 255." if v[1] > 1.5 else \
                    " It looks normalized with mean/std: pass raw pixels in [0, 1]." if v[0] < 0 else ""
                raise ValueError(f"{where}: images must have pixels in [{lo}, {hi}], found values in [{v[0]:.4g}, "
                                 f"{v[1]:.4g}].{hint} Training stopped; no checkpoint was written after this batch.")
            if len(v) > 3 and s.num_classes is not None and (v[3] < 0 or v[4] >= s.num_classes):
                raise ValueError(f"{where}: labels must be class indices in [0, {s.num_classes - 1}], found values in "
                                 f"[{int(v[3])}, {int(v[4])}]. Check the classifier's num_classes and your label encoding. "
                                 "Training stopped; no checkpoint was written after this batch.")
