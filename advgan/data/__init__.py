"""Datasets by name (``data.load("mnist5k")``), loaders, and paired-data builders (``advgan.data.pairs``)."""
from . import pairs
from .datasets import (
    _LOADERS,
    DEFAULT_ROOT,
    ImageDataset,
    PointDataset,
    TransformedDataset,
    _stratified_indices,
    available,
    cifar10,
    digits,
    fashion_mnist,
    imagefolder,
    load,
    mnist,
    mnist5k,
    register_dataset,
    stratified_split,
    to_image_dataset,
)
from .loaders import as_loader, batch_loader, loader
from .subsets import dataset_labels, stratified_subset
from .toy import gauss1d, grid25, grid_modes, ring8, ring_modes  # registers the toy datasets

__all__ = ["DEFAULT_ROOT", "ImageDataset", "PointDataset", "TransformedDataset", "available", "cifar10", "digits",
           "fashion_mnist", "gauss1d", "grid25", "grid_modes", "imagefolder", "load", "loader",
           "as_loader", "batch_loader", "mnist", "mnist5k",
           "pairs", "register_dataset", "ring8", "ring_modes", "stratified_split", "stratified_subset",
           "dataset_labels", "to_image_dataset"]
_private = (_LOADERS, _stratified_indices)  # kept importable from advgan.data as before the move
