"""Input validation shared by every public entry point.

Every check raises before any work is done and never mutates its inputs. Messages say what was
wrong, what was expected and what to do, because users most often hit these with their own data.

The dtype policy (one rule everywhere): what can be converted without changing a value is converted,
everything else is refused with the conversion to write.

- images: a floating tensor or NumPy array of any float dtype (float16, bfloat16, float32, float64) is
  accepted; computation runs in the model's dtype and an attack returns the input's dtype and device.
  Integer, bool and complex images are refused (0-255 integers need ``x.float() / 255``: the library
  never guesses a scale).
- labels and targets: a tensor or NumPy array of any integer dtype is cast to int64. Float, bool and
  complex labels are refused (one-hot or probabilities: ``y.argmax(1)``).
"""
from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

NORMS = ("linf", "l2")


def check_images(
    x: object,
    *,
    name: str = "x",
    channels: int | Sequence[int] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Validate a batch of images in pixel space: float tensor, shape (N, C, H, W), finite, in bounds.

    A NumPy array is accepted and returned as a tensor (sharing its memory, never written)."""
    x = _from_numpy(x, name)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}. "
            "Convert with torch.as_tensor(array, dtype=torch.float32)."
        )
    if not x.is_floating_point():
        hint = ""
        if x.numel() and x.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
            if int(x.max()) > 1:
                hint = " It looks like 0-255 integer pixels: pass x.float() / 255."
        raise TypeError(
            f"{name} must be a floating-point tensor with pixels in [{bounds[0]}, {bounds[1]}], "
            f"got dtype {x.dtype}.{hint}"
        )
    if x.dim() != 4:
        hint = ""
        if x.dim() == 3:
            hint = " For a single image use x.unsqueeze(0); for a batch of grayscale images use x.unsqueeze(1)."
        elif x.dim() == 2:
            hint = " Flattened images? Reshape to (N, C, H, W)."
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}.{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); pass at least one image.")
    if 0 in x.shape[1:]:
        raise ValueError(f"{name} has a zero-sized channel or image side (shape {tuple(x.shape)}); images must be "
                         "(N, C, H, W) with C, H and W >= 1.")
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if x.shape[1] not in allowed:
            raise ValueError(
                f"{name} has {x.shape[1]} channel(s) (shape {tuple(x.shape)}) but the model takes "
                f"{' or '.join(map(str, allowed))}. Images must be (N, C, H, W) with C first; convert "
                "grayscale/RGB or build the Classifier with data_chans matching your data."
            )
    if not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/Inf value(s); clean the data before attacking or training.")
    lo, hi = float(x.min()), float(x.max())
    if lo < bounds[0] - 1e-6 or hi > bounds[1] + 1e-6:
        if lo < 0 and hi <= 10:
            hint = (
                " It looks normalized with mean/std: pass raw pixels in [0, 1]; the Classifier applies "
                "its own normalization inside."
            )
        elif hi > 1.5:
            hint = " It looks like 0-255 pixels: divide by 255."
        else:
            hint = " Clamp or rescale your pixels."
        raise ValueError(
            f"{name} must have pixels in [{bounds[0]}, {bounds[1]}], found values in [{lo:.4g}, {hi:.4g}].{hint}"
        )
    return x


def check_labels(y: object, n: int, num_classes: int | None = None, *, name: str = "y") -> torch.Tensor:
    """Validate integer class labels of shape (n,) in [0, num_classes); any integer dtype is returned as int64."""
    y = _from_numpy(y, name)
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of int64 class indices, got {type(y).__name__}. "
            "Convert with torch.as_tensor(labels, dtype=torch.long)."
        )
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(
            f"{name} must hold integer class indices (int64), got dtype {y.dtype}. "
            "One-hot or probability targets? Use y.argmax(1); float indices? Use y.long()."
        )
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(y.shape)}. Flatten with {name}.view(-1).")
    if y.shape[0] != n:
        raise ValueError(
            f"{name} has {y.shape[0]} labels but the image batch has {n} images; they must match one to one."
        )
    if num_classes is not None and y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} must be class indices in [0, {num_classes - 1}], found values in [{lo}, {hi}]. "
                "Check the classifier's num_classes and your label encoding."
            )
    return y if y.dtype == torch.long else y.long()


def _from_numpy(a: object, name: str) -> object:
    """A NumPy array as a tensor (no copy); object / string arrays refused. Anything else passes through."""
    import numpy as np

    if not isinstance(a, np.ndarray):
        return a
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{name} is a NumPy array of dtype {a.dtype}; pass numbers (e.g. np.asarray(a, dtype=np.float32)).")
    if a.dtype.kind == "u" and a.dtype != np.uint8:
        a = a.astype(np.int64)  # torch has no uint16/32/64 arithmetic
    return torch.from_numpy(np.ascontiguousarray(a))


def compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating dtype a module computes in (its first floating parameter or buffer; float32 if none)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


IMAGE_KEYS = ("image", "images", "img", "pixel_values", "x", "input", "inputs", "data")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class", "class_idx")


def unpack_pair(batch: object, what: str = "batch") -> tuple[Any, Any]:
    """``(images, labels)`` from a batch: a tuple/list, or a dict with keys such as image/label,
    pixel_values/labels (Hugging Face datasets), x/y. Anything else: a ``ValueError`` saying what it got."""
    if isinstance(batch, Mapping):
        xi = next((k for k in IMAGE_KEYS if k in batch), None)
        yi = next((k for k in LABEL_KEYS if k in batch), None)
        if xi is None or yi is None:
            raise ValueError(
                f"{what} is a dict with keys {sorted(map(str, batch))[:10]}; expected an image key "
                f"({', '.join(IMAGE_KEYS)}) and a label key ({', '.join(LABEL_KEYS)}). Rename the keys, or map each "
                "item to an (image, label) tuple."
            )
        return batch[xi], batch[yi]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    got = f"a {type(batch).__name__} of {len(batch)} item(s)" if isinstance(batch, (tuple, list)) else type(batch).__name__
    raise ValueError(f"{what} must be an (images, labels) pair or a dict with image and label keys, got {got}.")


def check_targets(target: object, y: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Validate target classes of a targeted attack: same checks as labels, and never equal to the label."""
    t = check_labels(target, y.shape[0], num_classes, name="target")
    same = t.to(y.device) == y
    if bool(same.any()):
        raise ValueError(
            f"target equals the true label for {int(same.sum())} of {y.shape[0]} inputs; a targeted attack "
            "needs a different class. Draw targets with attacks.random_targets(y, num_classes)."
        )
    return t


def check_eps(eps: object, norm: str, *, name: str = "eps") -> float:
    """Validate an attack budget for pixels in [0, 1]; catch the 8-instead-of-8/255 mistake."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}.")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        if isinstance(eps, torch.Tensor) and eps.numel() == 1:
            eps = float(eps)
        else:
            raise TypeError(f"{name} must be a number, got {type(eps).__name__}.")
    eps = float(eps)
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {eps}.")
    if norm == "linf" and eps > 1:
        raise ValueError(
            f"{name}={eps:g} is larger than the whole pixel range [0, 1] for an L-inf budget. Pixels are in "
            f"[0, 1] here: did you mean {eps:g}/255 = {eps / 255:.4f}?"
        )
    return eps


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def check_number(value: object, name: str, *, positive: bool = False, minimum: float | None = None,
                 maximum: float | None = None, hint: str = "") -> float:
    """A finite real number (not bool), optionally > 0 or within [minimum, maximum]; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r}).{hint}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}.{hint}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.{hint}")
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if minimum is None:
            want = f"<= {maximum:g}"
        elif maximum is None:
            want = f">= {minimum:g}"
        else:
            want = f"in [{minimum:g}, {maximum:g}]"
        raise ValueError(f"{name} must be {want}, got {value!r}.{hint}")
    return v


def check_fraction(value: object, name: str, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}.")
    v = float(value)
    if not (0.0 <= v <= 1.0) or (not allow_zero and v == 0.0):
        raise ValueError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1], got {value}.")
    return v


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, choices))}.")
    assert isinstance(value, str)
    return value


def looks_like_probabilities(out: torch.Tensor) -> bool:
    """True if every row is non-negative and sums to 1: a model returning softmax outputs, not logits."""
    if out.dim() != 2 or out.shape[1] < 2:
        return False
    out = out.detach().float()
    return bool((out >= 0).all() and (out <= 1).all() and torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-3))


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; a clear ``ValueError`` for a device that cannot run here.

    Refused up front (before any model is moved): ``meta`` (tensors without data: a model moved there
    loses its weights), ``cuda`` without CUDA or with an index past the last GPU, ``mps`` without MPS,
    and any other device type this build of torch cannot use.
    """
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, (str, torch.device)):
        raise TypeError(f"device must be a string like 'cpu', 'cuda', 'cuda:1' or 'auto', got {type(name).__name__}.")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto.") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "meta":
        raise ValueError(f"device {name!r} holds no data (a model moved there loses its weights); use cpu, cuda or auto.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available on this machine; use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {name!r} requested but Apple MPS is not available on this machine; use cpu or auto.")
        return dev
    backend = getattr(torch, dev.type, None)
    if backend is None or not callable(getattr(backend, "is_available", None)) or not backend.is_available():
        raise ValueError(f"device {name!r} is not available on this machine; use cpu, cuda or auto.")
    return dev


_SIZES = re.compile(r"stack expects each tensor to be equal size, but got \[([\d, ]+)\] at entry \d+ and \[([\d, ]+)\]")


@contextlib.contextmanager
def explain_data_error(where: str) -> Iterator[None]:
    """Turn the raw error of collating images of different sizes into one that says what to do."""
    try:
        yield
    except RuntimeError as e:
        m = _SIZES.search(str(e))
        if m is None:
            raise
        a, b = ("x".join(v.split(", ")[-2:]) for v in m.groups())
        raise ValueError(f"{where}: the images have different sizes ({a} and {b}), so they cannot be batched. Resize "
                         "them to one size: pass image_size= to the dataset (e.g. data.load('imagefolder', root=..., "
                         "image_size=64)) or add a Resize transform.") from None
