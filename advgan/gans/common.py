"""Helpers shared by the GAN-family models: a whole-batch loader, building registered nets, small checks."""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import nets as _nets


def _check_nonneg(v: Any, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0) or v == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}.")


def _check_pos_int(v: Any, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}.")


class _SeededBatchSampler(torch.utils.data.BatchSampler):
    """A BatchSampler that exposes its shuffling generator (the engine saves it for exact resume)."""

    @property
    def generator(self) -> torch.Generator | None:
        return getattr(self.sampler, "generator", None)


def _indexable_by_list(ds: Dataset) -> bool:
    try:
        item = ds[[0, 1]] if len(ds) > 1 else None  # type: ignore[arg-type,index]
    except Exception:  # noqa: BLE001 - any failure means "not batch-indexable"
        return False
    items = item if isinstance(item, (tuple, list)) else (item,)
    return bool(items) and all(isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == 2 for t in items)


def batch_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader for in-memory datasets that index whole batches at once (``ds[list_of_indices]``,
    as ``ImageDataset``, ``PointDataset`` and precomputed ``PairDataset`` do): no per-item Python
    overhead. Other datasets get the ordinary per-item loader. Shuffling is fixed by ``seed``."""
    from ..data import loader

    if not _indexable_by_list(dataset):
        return loader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    g = torch.Generator().manual_seed(seed)
    base = torch.utils.data.RandomSampler(dataset, generator=g) if shuffle else torch.utils.data.SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None, sampler=_SeededBatchSampler(base, batch_size, drop_last), generator=g)


def _first_sample(dataset: Dataset) -> torch.Tensor:
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the dataset is empty.")
    item = dataset[0]
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"dataset items must be tensors or (tensor, label) pairs, got {type(x).__name__}.")
    return x


def _build(name: str, required: dict[str, Any], optional: dict[str, Any]) -> nn.Module:
    """Create a registered net with ``required`` kwargs plus those ``optional`` ones its constructor accepts."""
    fn = _nets._NETS[name]
    try:
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
        extra = {k: v for k, v in optional.items() if takes_all or k in params}
    except (TypeError, ValueError):
        extra = {}
    return _nets.create_net(name, **required, **extra)


class EngineFitMixin:
    """Shared by the GAN-family models: keep one trainer per output directory and an EMA generator.

    The model must define ``nets`` (with "G"), ``config`` and the ``MinMaxGame`` methods.
    """

    g_ema: nn.Module | None
    _trainer: Any

    def _fit_engine(self, loader: DataLoader, epochs: int, out_dir: Any, resume: bool) -> Any:
        from pathlib import Path

        from ..engine import MinMaxTrainer

        out = Path(out_dir) if out_dir is not None else None
        if self._trainer is None or self._trainer.out_dir != out:
            self._trainer = MinMaxTrainer(self, self.config, out)  # type: ignore[attr-defined,arg-type]
            if self.g_ema is not None and "G" in self._trainer.ema:
                self._trainer.ema["G"].load_state_dict(self.g_ema.state_dict())
        hist = self._trainer.fit(loader, epochs, resume=resume)
        self.g_ema = self._trainer.ema.get("G", self.g_ema)
        return hist

    @property
    def history(self) -> Any:
        from ..engine.history import History

        return self._trainer.history if self._trainer is not None else History()

    def generator(self) -> nn.Module:
        """The generator used for inference: the EMA copy when ``ema_decay`` is set, else G."""
        return self.g_ema if self.g_ema is not None else self.nets["G"]  # type: ignore[attr-defined]
