"""torch.distributed helpers: detect torchrun, shard loaders, reduce numbers, rank-0-only work.

Under ``torchrun --nproc_per_node N`` the environment holds RANK / WORLD_SIZE / LOCAL_RANK;
``init_from_env()`` starts the process group (nccl on CUDA, gloo on CPU) once. Outside torchrun
everything here is a no-op, so single-process code paths are unchanged.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset, SequentialSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: torch.device | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun; return this process's rank info."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    ws = env_world_size()
    if ws <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build of torch.")
    backend = "nccl" if (device is not None and device.type == "cuda") else "gloo"
    dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun with CUDA, each rank uses cuda:LOCAL_RANK."""
    info = current()
    if info.active and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


class DistributedBatchSampler(BatchSampler):
    """A BatchSampler over a :class:`DistributedSampler` that forwards ``set_epoch`` (for loaders that
    index whole batches at once: ``DataLoader(ds, batch_size=None, sampler=BatchSampler(...))``)."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[union-attr]


def _is_sharded(sampler: object) -> bool:
    return isinstance(sampler, (DistributedSampler, DistributedBatchSampler))


def shard_loader(loader: Any, *, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """Rebuild ``loader`` so that each rank reads a disjoint shard (a :class:`DistributedSampler`).

    Keeps the batch size, collate function, workers, pinned memory and the loader's generator. Loaders
    that index whole batches (``batch_size=None`` with a ``BatchSampler`` as sampler) are sharded batch
    by batch. Outside a process group, or for an already sharded loader, ``loader`` is returned as is.
    An iterable-style dataset cannot be sharded here: every rank then reads all of it (a warning says so).
    """
    info = current()
    if not info.active or _is_sharded(loader.sampler) or _is_sharded(getattr(loader, "batch_sampler", None)):
        return loader
    if isinstance(loader.dataset, IterableDataset):
        warnings.warn("shard_loader: an IterableDataset cannot be sharded by a DistributedSampler; every rank reads "
                      "all of it. Shard it yourself (e.g. by torch.distributed.get_rank()).", RuntimeWarning, stacklevel=2)
        return loader
    batched = loader.batch_size is None and isinstance(loader.sampler, BatchSampler)
    inner = loader.sampler.sampler if batched else loader.sampler  # type: ignore[union-attr]
    if shuffle is None:
        shuffle = not isinstance(inner, SequentialSampler)
    sampler: DistributedSampler = DistributedSampler(loader.dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle,
                                 seed=seed, drop_last=drop_last)
    common = dict(num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                  generator=loader.generator, worker_init_fn=loader.worker_init_fn)
    if batched:
        bs = loader.sampler  # type: ignore[assignment]
        return DataLoader(loader.dataset, batch_size=None, sampler=DistributedBatchSampler(sampler, bs.batch_size, bs.drop_last),
                          **common)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last, **common)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if current().active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if current().active:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def no_forward_buffer_sync() -> dict[str, bool]:
    """DDP keyword that stops the buffer broadcast on every forward (buffers are still synced at init):
    ``forward_sync_buffers=False`` where this torch has it, else ``broadcast_buffers=False``."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    params = inspect.signature(DDP.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def setup_cli(device: str | None) -> DistInfo:
    """For a command run under torchrun: start the process group (on this rank's device) and keep
    stdout for rank 0 only. A no-op in a single process."""
    if env_world_size() <= 1:
        return current()
    from attacks.checks import resolve_device

    dev = resolve_device(device or "auto")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    info = init_from_env(dev)
    if not info.is_main:
        import sys

        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    return info


def barrier() -> None:
    if current().active:
        dist.barrier()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Make every rank start from rank ``src``'s parameters and buffers."""
    if not current().active:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)
