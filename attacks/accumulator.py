"""Named running totals on one device: summed, maxed or min'ed per batch, reduced over ranks, read once.

``acc = Accumulator(device); acc.declare("pgd/fooled", "sum", torch.long)``; per batch
``acc.add("pgd/fooled", fooled.sum())`` (no host sync); at the end ``acc.all_reduce()`` (a no-op
without a process group) and ``values = acc.read()``: one device-to-host copy of everything, read
back by name (no offset arithmetic). Every name is declared up front, so every rank of a process
group holds the same tensors in the same order even when it saw no batch.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist

_OPS = ("sum", "max", "min")
_INIT = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}


class Accumulator:
    """A dict of 0-d tensors on ``device``, each with its reduction (``sum``, ``max`` or ``min``)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        # float64 makes sums of norms independent of the batch order to far below print precision
        self.float_dtype = torch.float32 if device.type == "mps" else torch.float64
        self._values: dict[str, torch.Tensor] = {}
        self._ops: dict[str, str] = {}

    def declare(self, name: str, op: str, dtype: torch.dtype | None = None) -> None:
        """A new total (``dtype``: ``torch.long`` for counts; default the float dtype)."""
        if op not in _OPS:
            raise ValueError(f"unknown reduction {op!r}; choose one of {', '.join(_OPS)}.")
        if name in self._values:
            raise ValueError(f"accumulator name {name!r} declared twice.")
        dtype = dtype or self.float_dtype
        init = 0 if (dtype == torch.long and op == "sum") else _INIT[op]
        if dtype == torch.long and op != "sum":
            init = torch.iinfo(torch.long).min if op == "max" else torch.iinfo(torch.long).max
        self._values[name] = torch.full((), init, dtype=dtype, device=self.device)
        self._ops[name] = op

    def declare_many(self, names: Iterable[str], op: str, dtype: torch.dtype | None = None) -> None:
        for n in names:
            self.declare(n, op, dtype)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def update(self, name: str, value: torch.Tensor | float | int) -> None:
        """Fold ``value`` (a 0-d tensor or a number; a tensor is reduced over all its elements) into ``name``."""
        cur = self._values[name]
        op = self._ops[name]
        v = value if isinstance(value, torch.Tensor) else torch.tensor(value, device=self.device)
        if v.dim() > 0:
            v = v.sum() if op == "sum" else (v.amax() if op == "max" else v.amin())
        v = v.to(device=self.device, dtype=cur.dtype)
        if op == "sum":
            cur += v
        elif op == "max":
            torch.maximum(cur, v, out=cur)
        else:
            torch.minimum(cur, v, out=cur)

    add = update  # reads better for sums

    def all_reduce(self) -> None:
        """Reduce every total over the ranks of the initialised process group (one collective per op and dtype)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        groups: dict[tuple[str, torch.dtype], list[str]] = {}
        for name, op in self._ops.items():
            groups.setdefault((op, self._values[name].dtype), []).append(name)
        red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        for (op, _), names in groups.items():
            flat = torch.stack([self._values[n] for n in names])
            dist.all_reduce(flat, op=red[op])
            for n, v in zip(names, flat):
                self._values[n] = v.clone()

    def read(self) -> dict[str, float]:
        """Every total as a Python float, by name: one device-to-host copy (counts are exact up to 2**53)."""
        names = list(self._values)
        if not names:
            return {}
        flat = torch.stack([self._values[n].to(self.float_dtype) for n in names]).cpu().tolist()
        return dict(zip(names, (float(v) for v in flat)))


__all__ = ["Accumulator"]
