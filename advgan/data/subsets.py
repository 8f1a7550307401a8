"""Exactly-``n`` stratified subsets of any labelled dataset (``--max-images``): never "the first n", which on a
class-sorted split (MNIST-5k's test split is sorted by digit) would be a few classes only."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset


def dataset_labels(ds: Dataset) -> torch.Tensor:
    """The integer labels of ``ds``: its ``labels`` / ``targets`` attribute when it has one, else read item by item."""
    for attr in ("labels", "targets"):
        t = getattr(ds, attr, None)
        if t is not None and not callable(t):
            labels = torch.as_tensor(t).long().flatten()
            if labels.numel() == len(ds):  # type: ignore[arg-type]
                return labels
    return torch.tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)  # type: ignore[arg-type]


def stratified_indices(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices (sorted) with every class's share as in ``labels`` (largest shares first when they do not divide
    evenly), chosen at random within each class; deterministic for a seed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    if n >= labels.numel():
        return torch.arange(labels.numel())
    g = torch.Generator().manual_seed(seed)
    order = torch.empty(labels.numel(), dtype=torch.float64)
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        # the k-th pick of a class of size m sits at (k + 0.5) / m: taking the n smallest keeps the class shares
        order[idx] = (torch.arange(idx.numel(), dtype=torch.float64) + 0.5) / idx.numel()
    tie = torch.rand(labels.numel(), generator=g, dtype=torch.float64) * 1e-9  # seeded tie-break across classes
    return torch.sort(torch.argsort(order + tie)[:n]).values


def stratified_subset(ds: Dataset, n: int, seed: int = 0) -> Any:
    """``n`` items of ``ds`` in its own order, every class in proportion (the whole dataset when ``n >= len``)."""
    if n >= len(ds):  # type: ignore[arg-type]
        return ds
    return Subset(ds, stratified_indices(dataset_labels(ds), n, seed).tolist())
