"""Loaders: the one way a ``fit`` turns a Dataset (or a ready DataLoader) into batches.

``as_loader(data, batch_size, shuffle=..., seed=...)`` passes a DataLoader through and wraps a Dataset in
a loader whose shuffling order is fixed by ``seed``. ``whole_batches=True`` (the GAN family) indexes
in-memory datasets a whole batch at a time (``ds[list_of_indices]``): no per-item Python overhead.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler


def loader(dataset: Dataset, batch_size: int = 128, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
           num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose shuffling order is fixed by ``seed``."""
    if isinstance(dataset, IterableDataset):
        raise TypeError(f"data.loader needs a map-style Dataset, got the IterableDataset {type(dataset).__name__}: wrap it "
                        "in a DataLoader yourself for evaluation, or materialise it (advgan.data.to_image_dataset).")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the dataset is empty; nothing to load.")
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last,
                      num_workers=num_workers, pin_memory=pin_memory)


class _SeededBatchSampler(BatchSampler):
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
    if not _indexable_by_list(dataset):
        return loader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    g = torch.Generator().manual_seed(seed)
    sized: Any = dataset
    base = RandomSampler(sized, generator=g) if shuffle else SequentialSampler(sized)
    return DataLoader(dataset, batch_size=None, sampler=_SeededBatchSampler(base, batch_size, drop_last), generator=g)


def as_loader(data: Any, batch_size: int, *, shuffle: bool, seed: int, what: str = "data",
              items: str = "(image, label) pairs", whole_batches: bool = False) -> DataLoader:
    """``data`` as a DataLoader: a DataLoader as is, a Dataset wrapped (seeded shuffling), anything else refused.

    ``whole_batches``: batch-indexed loading where the dataset allows it, dropping the last partial batch
    when there is more than one batch (GAN training: every batch has ``batch_size`` items)."""
    if isinstance(data, IterableDataset) or (isinstance(data, DataLoader) and isinstance(data.dataset, IterableDataset)):
        ds = data.dataset if isinstance(data, DataLoader) else data
        raise TypeError(f"{what} is the IterableDataset {type(ds).__name__}: training needs a map-style Dataset (len() "
                        "and indexing: seeded shuffling, LR schedules and exact resume depend on them). Materialise it "
                        "first, e.g. advgan.data.to_image_dataset(ds) when it fits in memory, or write a map-style Dataset.")
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset):
        raise TypeError(f"{what} must be a torch Dataset or DataLoader of {items}, got {type(data).__name__}.")
    if whole_batches:
        n = len(data)  # type: ignore[arg-type]
        return batch_loader(data, batch_size, shuffle=shuffle, seed=seed, drop_last=n > batch_size)
    return loader(data, batch_size, shuffle=shuffle, seed=seed)


__all__ = ["loader", "batch_loader", "as_loader"]
