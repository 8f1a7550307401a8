"""The target model: any ``nn.Module`` with its normalization (and resizing, channel mapping) inside.

Everything outside a ``Classifier`` works in pixel space [0, 1]. A Classifier starts frozen and in
eval mode (the state an attack needs); ``with clf.unfrozen():`` or ``clf.unfreeze()`` make it
trainable for fine-tuning.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .arch import check_arch_kwargs
from .checkpoint import CheckpointError, load_state_dict_into, load_tensors, save_json, save_tensors
from .checks import check_images, looks_like_probabilities
from .classifier_config import FORMAT_VERSION, KIND, read_classifier_config
from .models import builtin_factory, create_module, is_builtin
from .outputs import Output, check_output_selector, select_output
from .seeding import check_seed

_LUMA = (0.299, 0.587, 0.114)
def _as_tuple(v: float | Sequence[float], n: int, name: str) -> tuple[float, ...]:
    t = (float(v),) if isinstance(v, (int, float)) else tuple(float(a) for a in v)
    if len(t) == n:
        return t
    if len(t) == 1:
        return t * n
    if n == 1:  # e.g. ImageNet RGB statistics for a grayscale model: use their mean
        return (sum(t) / len(t),)
    raise ValueError(f"{name} has {len(t)} values but the model takes {n} channels; pass {n} values or one.")


class Classifier(nn.Module):
    """Wrap ``module`` (normalized images -> logits) so that it takes pixels in [0, 1].

    Args:
        module: the network; it receives ``(x - mean) / std`` of shape (N, in_chans, *input_size).
        num_classes: number of logits the module returns.
        mean, std: per-channel normalization the module was trained with (one value broadcasts).
        in_chans: channels the module takes (default: ``len(mean)``).
        data_chans: channels of the images users pass (default ``in_chans``); 1 -> 3 repeats the gray
            channel, 3 -> 1 takes luminance. Other mismatches are refused.
        input_size: (H, W) (or one int for a square) the module needs; inputs of another size are resized
            (bilinear, inside the forward, so attacks differentiate through it). ``None`` keeps the native size.
        arch: how to rebuild the module for ``load`` (set by ``create``/``from_timm``).
        output: where the logits are when the module does not return a tensor: a key or attribute name
            (``"logits"`` for dicts and Hugging Face-style outputs), an index (tuples) or a callable.
            ``None``: the module returns the logits tensor (anything else raises a ``TypeError`` naming it).
    """

    mean: torch.Tensor
    std: torch.Tensor
    input_size: tuple[int, ...] | None

    def __init__(
        self,
        module: nn.Module,
        num_classes: int,
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
        *,
        in_chans: int | None = None,
        data_chans: int | None = None,
        input_size: int | Sequence[int] | None = None,
        arch: dict[str, Any] | None = None,
        output: Output = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        output = check_output_selector(output)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        if in_chans is None:
            in_chans = 1 if isinstance(mean, (int, float)) else len(tuple(mean))
        data_chans = in_chans if data_chans is None else data_chans
        if data_chans != in_chans and {data_chans, in_chans} != {1, 3}:
            raise ValueError(
                f"cannot map {data_chans}-channel images to a {in_chans}-channel model; only 1<->3 is converted."
            )
        mean_t = _as_tuple(mean, in_chans, "mean")
        std_t = _as_tuple(std, in_chans, "std")
        if any(s <= 0 for s in std_t):
            raise ValueError(f"std must be positive, got {std_t}.")
        if isinstance(input_size, int) and not isinstance(input_size, bool):
            input_size = (input_size, input_size)
        if input_size is not None:
            if not isinstance(input_size, Sequence) or not all(isinstance(s, int) and not isinstance(s, bool) for s in input_size):
                raise TypeError(f"input_size must be an int or (H, W) ints, got {input_size!r}.")
            input_size = tuple(int(s) for s in input_size)[-2:]
            if len(input_size) != 2 or min(input_size) < 1:
                raise ValueError(f"input_size must be (H, W), got {input_size}.")
        self.module = module
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.data_chans = data_chans
        self.input_size = input_size
        self.arch = dict(arch) if arch else None
        self.output = output
        self.register_buffer("mean", torch.tensor(mean_t).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std_t).view(1, -1, 1, 1), persistent=False)
        self.freeze()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        name: str,
        num_classes: int,
        in_chans: int = 3,
        *,
        data_chans: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | str | None = "auto",
        pretrained: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> Classifier:
        """Build a built-in architecture or a timm model by name (see ``attacks.models``).

        ``seed``: initialise the weights from this seed, on a forked RNG (the global RNG is left as it was), so
        the same call gives the same model in every process; None draws from the global RNG (whose start is
        random in recent torch unless ``torch.manual_seed`` was called)."""
        if seed is not None:
            seed = check_seed(seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return cls.create(name, num_classes, in_chans, data_chans=data_chans, mean=mean, std=std,
                                  input_size=input_size, pretrained=pretrained, **kwargs)
        if not is_builtin(name):
            return cls.from_timm(name, num_classes, in_chans, data_chans=data_chans, mean=mean, std=std,
                                 input_size=input_size, pretrained=pretrained, **kwargs)
        if pretrained:
            raise ValueError(f"built-in model {name!r} has no pretrained weights; use pretrained=False.")
        kwargs = check_arch_kwargs("builtin", name, kwargs, where=f"Classifier.create({name!r})", builtin=builtin_factory(name))
        module = create_module(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
        arch = {"source": "builtin", "name": name, "kwargs": kwargs}
        return cls(module, num_classes, mean if mean is not None else (0.5,), std if std is not None else (0.5,),
                   in_chans=in_chans, data_chans=data_chans,
                   input_size=None if isinstance(input_size, str) else input_size, arch=arch)

    @classmethod
    def from_timm(
        cls,
        name: str,
        num_classes: int,
        in_chans: int = 3,
        *,
        pretrained: bool = False,
        data_chans: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | str | None = "auto",
        **timm_kwargs: Any,
    ) -> Classifier:
        """A timm model with mean/std (and, for fixed-size models, input size) from its pretrained config.

        ``input_size="auto"`` keeps the data's native size when the architecture accepts any size and
        resizes to the config's size when it does not (e.g. ViTs); ``"config"`` always resizes; a
        tuple sets the size; ``None`` never resizes.
        """
        import timm

        if not timm.is_model(name):
            create_module(name, num_classes=num_classes, in_chans=in_chans)  # raises with suggestions
        timm_kwargs = check_arch_kwargs("timm", name, timm_kwargs, where=f"Classifier.from_timm({name!r})")
        try:
            module = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **timm_kwargs)
        except (OSError, RuntimeError, ConnectionError) as e:  # hub download failure
            if pretrained:
                raise RuntimeError(
                    f"could not download pretrained weights for {name!r} ({type(e).__name__}: {e}). Check the "
                    "internet connection or the Hugging Face cache, or use pretrained=False."
                ) from e
            raise
        cfg = dict(getattr(module, "pretrained_cfg", {}) or {})
        cfg_size = tuple(cfg.get("input_size", (in_chans, 224, 224)))[-2:]
        if input_size == "auto":
            size = cfg_size if cfg.get("fixed_input_size", False) or "img_size" in timm_kwargs else None
            if "img_size" in timm_kwargs:
                s = timm_kwargs["img_size"]
                size = (s, s) if isinstance(s, int) else tuple(s)
        elif input_size == "config":
            size = cfg_size
        elif isinstance(input_size, str):
            raise ValueError(f"input_size must be 'auto', 'config', (H, W) or None, got {input_size!r}.")
        elif isinstance(input_size, int):
            size = (input_size, input_size)
        else:
            size = None if input_size is None else tuple(input_size)
        arch = {"source": "timm", "name": name, "kwargs": timm_kwargs}
        return cls(
            module, num_classes,
            mean if mean is not None else cfg.get("mean", (0.5,)),
            std if std is not None else cfg.get("std", (0.5,)),
            in_chans=in_chans, data_chans=data_chans, input_size=size, arch=arch,
        )

    # ------------------------------------------------------------------ forward
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels [0, 1] -> what the module takes: channel mapping, resize, normalization."""
        if x.shape[1] != self.in_chans:
            if x.shape[1] == 1 and self.in_chans == 3:
                x = x.expand(-1, 3, -1, -1)
            elif x.shape[1] == 3 and self.in_chans == 1:
                w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
                x = (x * w).sum(1, keepdim=True)
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.module(self.preprocess(x)), self.output)

    def check_input(self, x: Any, name: str = "x") -> torch.Tensor:
        """Raise a clear error unless ``x`` is a valid (N, data_chans, H, W) batch in [0, 1]."""
        return check_images(x, name=name, channels=self.data_chans)

    def check_output(self, logits: torch.Tensor, *, warn_probabilities: bool = True) -> bool:
        """Check the model returns (N, num_classes) logits; returns True if they look like probabilities."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the model returned shape {tuple(logits.shape)} but the Classifier declares num_classes="
                f"{self.num_classes}; it must return (N, {self.num_classes}) logits. Fix num_classes or the model's head."
            )
        probs = looks_like_probabilities(logits)
        if probs and warn_probabilities:
            warnings.warn(
                "the model's outputs are non-negative and sum to 1: it returns probabilities, not logits. "
                "Attacks and the AdvGAN loss expect logits; remove the final softmax.",
                stacklevel=3,
            )
        return probs

    # ------------------------------------------------------------------ freezing
    def freeze(self) -> Classifier:
        """Eval mode, no parameter gradients: the state for attacking and evaluation."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def unfreeze(self) -> Classifier:
        """Train mode with trainable parameters, for fine-tuning."""
        self.train()
        for p in self.parameters():
            p.requires_grad_(True)
        return self

    @contextlib.contextmanager
    def unfrozen(self) -> Iterator[Classifier]:
        """Context in which the classifier trains; on exit it is frozen again."""
        self.unfreeze()
        try:
            yield self
        finally:
            self.freeze()

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return self.mean.device

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        cfg = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "data_chans": self.data_chans,
            "mean": [float(v) for v in self.mean.flatten()],
            "std": [float(v) for v in self.std.flatten()],
            "input_size": list(self.input_size) if self.input_size else None,
        }
        if self.output is not None:  # only when set: configs of plain classifiers stay as 0.1 wrote them
            cfg["output"] = self.output if not callable(self.output) else "<callable>"
        return cfg

    def save(self, directory: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (atomic). ``extra`` is stored under "extra"."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_tensors(d / "model.safetensors", self.module.state_dict())
        cfg = self.config()
        if extra:
            cfg["extra"] = extra
        save_json(d / "config.json", cfg)
        return d

    @classmethod
    def load(cls, directory: str | Path, *, module: nn.Module | None = None, device: str | torch.device = "cpu",
             output: Output = None) -> Classifier:
        """Restore a saved Classifier. Custom (non-registry) modules must be passed as ``module``.

        ``config.json`` is untrusted: every field is checked (the error names the file and the key) and
        the architecture may only use the allowlisted kwargs of :mod:`attacks.arch`; nothing is unpickled.
        ``output`` overrides the saved output selector (needed when it was a callable).
        """
        d = Path(directory)
        if not d.is_dir():
            raise CheckpointError(f"classifier directory {d} does not exist; train one with `advgan train-classifier`.")
        cfg = read_classifier_config(d / "config.json")
        arch, num_classes, in_chans = cfg["arch"], cfg["num_classes"], cfg["in_chans"]
        if output is None:
            if cfg["output"] == "<callable>":
                raise CheckpointError(f"{d / 'config.json'}: output: the classifier was saved with a callable output "
                                      "selector, which cannot be stored; pass it again: Classifier.load(dir, output=fn).")
            output = cfg["output"]
        if module is None:
            if not arch:
                raise ValueError(
                    f"{d} holds a classifier around a custom module; pass it: Classifier.load(dir, module=MyNet())."
                )
            if arch["source"] == "timm":
                import timm

                module = timm.create_model(arch["name"], num_classes=num_classes, in_chans=in_chans, pretrained=False,
                                           **arch["kwargs"])
            else:
                module = create_module(arch["name"], num_classes=num_classes, in_chans=in_chans, **arch["kwargs"])
        tensors = load_tensors(d / "model.safetensors", what="classifier")
        load_state_dict_into(module, tensors, what=f"classifier {d}")
        try:
            clf = cls(module, num_classes, cfg["mean"], cfg["std"], in_chans=in_chans, data_chans=cfg["data_chans"],
                      input_size=cfg["input_size"], arch=arch, output=output)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{d / 'config.json'}: {e}") from None
        clf.extra = cfg["extra"]
        return clf.to(device)


def unwrap_classifier(model: nn.Module) -> nn.Module:
    """Strip DDP/compile wrappers to reach the Classifier (or the plain module)."""
    while True:
        inner = getattr(model, "module", None) if not isinstance(model, Classifier) else None
        if inner is None or not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if inner is None or isinstance(model, Classifier):
            return model
        model = inner


def num_classes_of(model: nn.Module) -> int | None:
    m = unwrap_classifier(model)
    n = getattr(m, "num_classes", None)
    return int(n) if isinstance(n, int) else None


def data_chans_of(model: nn.Module) -> int | None:
    m = unwrap_classifier(model)
    n = getattr(m, "data_chans", None)
    return int(n) if isinstance(n, int) else None
