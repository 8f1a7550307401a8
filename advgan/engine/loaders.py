"""What the engine needs from a training loader: a map-style dataset, and the generators that shuffle it."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, IterableDataset


def iterable_dataset_message(ds: object) -> str:
    return (f"training needs a map-style Dataset (with len() and indexing: seeded shuffling, LR schedules and exact "
            f"resume depend on them); got the IterableDataset {type(ds).__name__}. Materialise it first, e.g. "
            "advgan.data.to_image_dataset(ds) for data that fits in memory, or write a map-style Dataset.")


def check_map_style(loader: DataLoader) -> None:
    """Refuse a loader over an IterableDataset (seeded shuffling and exact resume need len() and indexing)."""
    if isinstance(loader.dataset, IterableDataset):
        raise TypeError(iterable_dataset_message(loader.dataset))


def loader_generators(loader: DataLoader) -> list[torch.Generator]:
    """The torch.Generators that drive the loader's shuffling (their states are saved for exact resume)."""
    gens: list[torch.Generator] = []
    for g in (getattr(loader, "generator", None), getattr(loader.sampler, "generator", None)):
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens
