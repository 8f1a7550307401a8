"""Dev-only bridge to the reference ImageNet-C code (``imagecorruptions-imaug``) for cross-checks.

Used by ``tests/test_corruptions_reference.py`` and ``benchmarks/corruptions.py``; the library never
imports the reference. Facts about the reference that shape this bridge:

* it takes one H x W (x C) uint8 image at a time, refuses sides under 32 px, and draws its randomness
  from numpy's global RNG (``impulse_noise`` and ``glass_blur`` also take a ``seed``);
* it turns a gray image into RGB (the gray value in all three channels) and returns RGB. We read a gray
  answer back as BT.601 luma, except for the four noises, which it draws independently per RGB channel:
  for those we read one channel (luma would average three draws and weaken the noise by a third);
* it returns ``np.uint8(float)``, i.e. truncates (biased by -0.5/255 on average).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

NOISES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
LUMA = np.array([0.299, 0.587, 0.114])
#: the reference's smallest accepted side
MIN_SIDE = 32


@contextlib.contextmanager
def numpy_seed(seed: int):
    """Seed numpy's global RNG inside, restore the caller's state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, C) uint8 (rounded)."""
    return np.ascontiguousarray((x.detach().cpu().double() * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy())


def from_reference(out: np.ndarray, name: str, channels: int) -> np.ndarray:
    """The reference's H x W x 3 uint8 answer -> float H x W x C in [0, 1] (gray read as described above)."""
    v = out.astype(np.float64) / 255
    if channels == 3:
        return v
    if v.ndim == 2:
        return v[..., None]
    if name in NOISES:
        return v[..., :1]
    return (v[..., :3] @ LUMA)[..., None]


def reference_corrupt(x: torch.Tensor, name: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """The reference's per-image loop on a batch (N, C, H, W) in [0, 1]; returns the same layout."""
    from imagecorruptions import corrupt

    imgs = to_uint8_hwc(x)
    c = x.shape[1]
    out = []
    with numpy_seed(seed):
        for i, im in enumerate(imgs):
            kw = {"seed": seed * 100_003 + i} if name in ("impulse_noise", "glass_blur") else {}
            res = corrupt(im[..., 0] if c == 1 else im, severity=severity, corruption_name=name, **kw)
            out.append(from_reference(res, name, c))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype)


def reference_motion(x: torch.Tensor, severity: int, angle: float) -> torch.Tensor:
    """The reference's motion blur at a fixed angle (its internal line blur, with its parameters)."""
    from imagecorruptions.corruptions import _motion_blur

    from attacks.corruptions.blur import MOTION

    radius, sigma = MOTION[severity - 1]
    imgs = to_uint8_hwc(x)
    if x.shape[1] == 1:
        imgs = np.repeat(imgs, 3, axis=-1)
    out = [np.uint8(np.clip(_motion_blur(im, radius=radius, sigma=sigma, angle=angle), 0, 255)) for im in imgs]
    res = np.stack([from_reference(o, "motion_blur", x.shape[1]) for o in out])
    return torch.from_numpy(res).permute(0, 3, 1, 2).to(x.dtype)


def warm_reference() -> None:
    """Run every reference corruption once per severity so timings are fair (numba compiles glass blur's
    pixel shuffle on first use, once per type signature of its severity parameters)."""
    from imagecorruptions import corrupt, get_corruption_names

    im = np.full((32, 32, 3), 128, np.uint8)
    with numpy_seed(0):
        for name in get_corruption_names("all"):
            for severity in range(1, 6):
                corrupt(im, severity=severity, corruption_name=name)


def reference_failed(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Images the reference turned black: its water spatter divides by zero on an image with no drop
    (NaN, cast to 0). Cross-checks leave these out of both sides and report how many there were."""
    return (ref.flatten(1).amax(1) == 0) & (x.flatten(1).amax(1) > 0)


def time_reference(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    t = time.perf_counter()
    out = reference_corrupt(x, name, severity, seed=seed)
    return out, time.perf_counter() - t


# ---------------------------------------------------------------------- images
def mnist_images(n: int, *, split: str = "test", offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` MNIST-5k images (N, 1, 28, 28) and labels."""
    from advgan import data

    train, test = data.load("mnist5k")
    ds = test if split == "test" else train
    return ds.images[offset: offset + n].clone(), ds.labels[offset: offset + n].clone()


def pad_to(x: torch.Tensor, side: int = MIN_SIDE) -> torch.Tensor:
    """Zero-pad (black border) images up to ``side`` so the reference accepts them."""
    h, w = x.shape[-2:]
    ph, pw = max(0, side - h), max(0, side - w)
    return torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def crop_center(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top: top + h, left: left + w]


def rgb_crops(n: int, size: int) -> torch.Tensor:
    """``n`` RGB crops (N, 3, size, size) on the 8-bit grid from scikit-learn's two sample photographs."""
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in load_sample_images().images]
    rng = np.random.RandomState(0)
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        top = rng.randint(0, p.shape[1] - size + 1)
        left = rng.randint(0, p.shape[2] - size + 1)
        out.append(p[:, top: top + size, left: left + size])
    return torch.stack(out).contiguous()


def strength(xc: torch.Tensor, x: torch.Tensor) -> float:
    """Mean |x_c - x| over the batch."""
    return float((xc.double() - x.double()).abs().mean())
