"""``corrupt()``, the name registry and ``Corruption`` (a corruption usable where an attack is expected)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..checks import check_images
from . import blur, digital, frost, jpeg, noise, spatter, weather

Fn = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]

#: the 19 ImageNet-C corruptions in the reference's order (the first 15 are the benchmark, the last 4 held out)
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
#: the reference's groups: four families of the benchmark and the held-out ("extra") four
CORRUPTION_FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": CORRUPTIONS[0:3],
    "blur": CORRUPTIONS[3:7],
    "weather": CORRUPTIONS[7:11],
    "digital": CORRUPTIONS[11:15],
    "extra": CORRUPTIONS[15:19],
}
#: corruptions whose output depends on the seed (the others are deterministic functions of the image)
RANDOM_CORRUPTIONS: frozenset[str] = frozenset({
    "gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
    "elastic_transform", "speckle_noise", "spatter",
})
SEVERITIES = (1, 2, 3, 4, 5)

_FUNCS: dict[str, Fn] = {
    "gaussian_noise": noise.gaussian_noise, "shot_noise": noise.shot_noise, "impulse_noise": noise.impulse_noise,
    "speckle_noise": noise.speckle_noise, "defocus_blur": blur.defocus_blur, "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur, "zoom_blur": blur.zoom_blur, "gaussian_blur": blur.gaussian_blur,
    "snow": weather.snow, "frost": frost.frost, "fog": weather.fog, "brightness": weather.brightness,
    "contrast": digital.contrast, "elastic_transform": digital.elastic_transform, "pixelate": digital.pixelate,
    "jpeg_compression": jpeg.jpeg_compression, "spatter": spatter.spatter, "saturate": digital.saturate,
}


def check_corruption(name: object) -> str:
    """``name`` must be one of ``CORRUPTIONS``."""
    if not isinstance(name, str):
        raise TypeError(f"corruption name must be a string, got {type(name).__name__} ({name!r}); valid: {', '.join(CORRUPTIONS)}.")
    if name not in _FUNCS:
        raise ValueError(f"unknown corruption {name!r}; valid corruptions: {', '.join(CORRUPTIONS)}.")
    return name


def check_severity(severity: object) -> int:
    """``severity`` must be an int in 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, int):
        raise TypeError(f"severity must be an int from 1 to 5, got {type(severity).__name__} ({severity!r}).")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be from 1 (mildest) to 5 (strongest), got {severity}.")
    return severity


def check_corruption_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r}).")
    return seed


def corruption_names(spec: str | Iterable[str] = "all") -> tuple[str, ...]:
    """Resolve ``"all"``, a family name (``"noise"``, ``"blur"``, ``"weather"``, ``"digital"``, ``"extra"``),
    ``"common"`` (the 15 benchmark corruptions), one corruption name, or a list of names."""
    if isinstance(spec, str):
        if spec == "all":
            return CORRUPTIONS
        if spec == "common":
            return CORRUPTIONS[:15]
        if spec in CORRUPTION_FAMILIES:
            return CORRUPTION_FAMILIES[spec]
        if spec in _FUNCS:
            return (spec,)
        raise ValueError(f"unknown corruption or group {spec!r}; use 'all', 'common', one of the families "
                         f"{', '.join(CORRUPTION_FAMILIES)} or corruption names: {', '.join(CORRUPTIONS)}.")
    try:
        names = tuple(spec)
    except TypeError:
        raise TypeError(f"corruptions must be 'all', a group name or a list of names, got {type(spec).__name__}.") from None
    if not names:
        raise ValueError("the list of corruptions is empty; pass 'all' or at least one name.")
    return tuple(check_corruption(n) for n in names)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


#: on the CPU a batch is corrupted in chunks of about this many values, so the temporaries of every step
#: stay in cache (at 224 x 224 RGB: 13 images a chunk, 3-12x faster than one pass over 256 images)
CPU_CHUNK_VALUES = 1 << 21


def _chunks(x: torch.Tensor) -> int:
    """Images per chunk: the whole batch on an accelerator, about ``CPU_CHUNK_VALUES`` values on the CPU."""
    if x.device.type != "cpu" or x.shape[0] == 0:
        return max(1, x.shape[0])
    return max(1, CPU_CHUNK_VALUES // max(1, x[0].numel()))


def corrupt(x: torch.Tensor, name: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """Corrupt a batch of images with one of the 19 ImageNet-C corruptions.

    Args:
        x: (N, C, H, W) float images in [0, 1], C = 1 or 3, any size, on any device.
        name: one of ``CORRUPTIONS``.
        severity: 1 (mildest) to 5.
        seed: seeds a ``torch.Generator`` on x's device; the global RNG is not used.

    Returns a new tensor of x's shape, dtype and device, in [0, 1]. Every image gets its own random
    draw (noise, angle, texture...); the same seed on the same batch gives the same result. On the CPU
    large batches run in cache-sized chunks that draw from the one generator in turn.
    """
    check_corruption(name)
    check_severity(severity)
    check_corruption_seed(seed)
    x = check_images(x, channels=(1, 3))  # a NumPy array becomes a tensor (the shared dtype policy)
    work = x.detach().to(_work_dtype(x.dtype))
    gen = torch.Generator(device=x.device).manual_seed(seed)
    # full precision even inside a caller's autocast region (evaluation with amp=True)
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        step = _chunks(work)
        fn = _FUNCS[name]
        parts = [fn(work[i : i + step], severity, gen) for i in range(0, work.shape[0], step)]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
    out = out.clamp(0, 1)
    if out.data_ptr() == x.data_ptr():
        out = out.clone()
    return out.to(x.dtype).contiguous()


class Corruption:
    """A corruption at a fixed severity, callable like an attack: ``corruption(model, x, y) -> x_c``.

    The model and labels are ignored (a corruption has no attacker behind it); ``target=`` is refused.
    Every call uses the same ``seed``, so it is repeatable like a seeded attack.
    """

    kind = "corruption"
    supports_targeted = False

    def __init__(self, name: str, severity: int, *, seed: int = 0) -> None:
        self.name = check_corruption(name)
        self.severity = check_severity(severity)
        self.seed = check_corruption_seed(seed)

    @property
    def family(self) -> str:
        return next(f for f, names in CORRUPTION_FAMILIES.items() if self.name in names)

    @property
    def random(self) -> bool:
        """True if the output depends on the seed."""
        return self.name in RANDOM_CORRUPTIONS

    def __call__(self, model: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None = None, *,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        if target is not None:
            raise ValueError(f"{self!r} is a natural corruption, not a targeted attack; call it without target=.")
        return corrupt(x, self.name, self.severity, seed=self.seed)

    def with_seed(self, seed: int) -> Corruption:
        """The same corruption with another seed (e.g. one per batch, so augmentation sees fresh noise)."""
        return Corruption(self.name, self.severity, seed=seed)

    def describe(self) -> dict[str, Any]:
        """JSON-able description for reports."""
        return {"name": self.name, "kind": self.kind, "family": self.family, "severity": self.severity,
                "seed": self.seed, "random": self.random}

    def __repr__(self) -> str:
        return f"Corruption({self.name!r}, severity={self.severity}, seed={self.seed})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Corruption):
            return NotImplemented
        return (self.name, self.severity, self.seed) == (other.name, other.severity, other.seed)

    def __hash__(self) -> int:
        return hash((self.name, self.severity, self.seed))
