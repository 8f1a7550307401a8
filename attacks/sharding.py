"""Sharded evaluation across the ranks of an initialised ``torch.distributed`` process group.

Rank ``r`` of ``W`` evaluates the global batches ``r, r + W, r + 2W, ...`` of the loader: the very same
batches a single process would see (same composition, same per-batch seeds), so after the totals are
reduced (``attacks.accumulator``: counts summed, maxima with MAX), the report equals the single-process
report. For a
map-style ``DataLoader`` only this rank's batches are loaded (a batch-index loader over the same
dataset); any other iterable is read in full and the other ranks' batches are skipped. Without a
process group (or with one rank) everything here is a no-op. torch only: nothing of ``advgan``.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, IterableDataset


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_device(dev: torch.device) -> torch.device:
    """Under a multi-rank group, a bare ``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``)."""
    if world()[1] > 1 and dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def _index_loader(loader: object, max_batches: int | None, rank: int, size: int) -> tuple[DataLoader[Any], list[int]] | None:
    """A loader of only this rank's batches of a map-style DataLoader, and their global indices."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return None
    if loader.batch_sampler is not None:
        auto = True
        batches = list(loader.batch_sampler)
    elif isinstance(loader.sampler, BatchSampler):
        auto = False
        batches = list(loader.sampler)
    else:
        return None
    batches = batches[:max_batches] if max_batches is not None else batches
    idx = list(range(rank, len(batches), size))
    mine = [batches[i] for i in idx]
    if auto:
        return DataLoader(loader.dataset, batch_sampler=mine, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                          pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn), idx
    return DataLoader(loader.dataset, batch_size=None, sampler=mine, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn), idx


def rank_batches(loader: Iterable[Any], max_batches: int | None) -> tuple[Iterator[tuple[int, Any]], int | None]:
    """(global batch index, batch) pairs this rank evaluates, and how many there are (None: unknown)."""
    rank, size = world()
    if size == 1:
        it = itertools.islice(loader, max_batches) if max_batches is not None else loader
        return enumerate(it), None
    sub = _index_loader(loader, max_batches, rank, size)
    if sub is not None:
        return zip(sub[1], sub[0]), len(sub[1])
    it = itertools.islice(loader, max_batches) if max_batches is not None else loader
    return ((i, b) for i, b in enumerate(it) if i % size == rank), None


def share_first_batch(info: dict[str, Any]) -> dict[str, Any]:
    """Everything computed on global batch 0 (sanity checks, grids, sample shape), from the rank that ran it."""
    if world()[1] == 1:
        return info
    obj: list[Any] = [info if world()[0] == 0 else None]
    dist.broadcast_object_list(obj, src=0)
    shared: dict[str, Any] = obj[0]
    return shared
