"""What a classifier's ``arch`` may ask for: a model name and a short, named list of keyword arguments.

A ``config.json`` is a file on disk, so it is untrusted: whatever it says is passed to a model
constructor, and timm's constructor can be told to read files (``checkpoint_path``,
``pretrained_cfg_overlay={"file": ...}``, ``hf-hub:`` / ``local-dir:`` names) — with torch.load.
So a saved ``arch`` may only name a built-in model or a registered timm model by its plain name, and
set the few architecture kwargs below, each with a value of the expected type; never a path,
``pretrained`` or a pretrained config. Anything else is refused, naming the file and the key.
The same check runs when a classifier is created, so that what is saved can be loaded again.
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .checkpoint import CheckpointError

SOURCES = ("builtin", "timm")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")  # no ':' (hf-hub:, local-dir:), no '/', no '\'
_WORD = re.compile(r"^[A-Za-z0-9_]{0,32}$")                  # global_pool="avg", "token", "" ...
_TOP_LEVEL = ("num_classes", "in_chans")


def _int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _real(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _size(v: Any) -> bool:
    ok = _int(1, 16384)
    return ok(v) or (isinstance(v, (list, tuple)) and len(v) == 2 and all(ok(s) for s in v))


def _word(v: Any) -> bool:
    return isinstance(v, str) and bool(_WORD.match(v))


#: the timm keyword arguments a saved arch may set, and what each accepts
TIMM_KWARGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "img_size": (_size, "an image size (an integer or [H, W], 1..16384)"),
    "patch_size": (_int(1, 1024), "an integer in [1, 1024]"),
    "drop_rate": (_real(0, 1), "a number in [0, 1]"),
    "drop_path_rate": (_real(0, 1), "a number in [0, 1]"),
    "attn_drop_rate": (_real(0, 1), "a number in [0, 1]"),
    "proj_drop_rate": (_real(0, 1), "a number in [0, 1]"),
    "global_pool": (_word, "a pooling name such as 'avg', 'max' or 'token'"),
    "embed_dim": (_int(1, 65536), "an integer in [1, 65536]"),
    "depth": (_int(1, 1024), "an integer in [1, 1024]"),
    "num_heads": (_int(1, 1024), "an integer in [1, 1024]"),
    "mlp_ratio": (_real(0.01, 64), "a number in [0.01, 64]"),
    "output_stride": (_int(1, 64), "an integer in [1, 64]"),
}
_BUILTIN_VALUE = (_int(1, 1 << 20), "an integer in [1, 1048576]")


def _fail(where: str, key: str, what: str) -> CheckpointError:
    return CheckpointError(f"{where}: {key} {what}")


def check_arch_kwargs(source: str, name: str, kwargs: Mapping[str, Any], *, where: str = "arch",
                      builtin: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Refuse any kwarg not on the list for ``source`` (or of the wrong type); returns a plain dict copy."""
    if not isinstance(kwargs, Mapping):
        raise _fail(where, "arch.kwargs", f"must be a JSON object, got {type(kwargs).__name__}.")
    out: dict[str, Any] = {}
    if source == "builtin":
        params = [p for p in inspect.signature(builtin).parameters if p not in _TOP_LEVEL] if builtin else []
        allowed = {p: _BUILTIN_VALUE for p in params}
    else:
        allowed = TIMM_KWARGS
    for key, value in kwargs.items():
        k = f"arch.kwargs.{key}"
        if key in _TOP_LEVEL:
            raise _fail(where, k, f"is not allowed here: {key} is set by the top-level '{key}' field.")
        if key not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise _fail(where, k, f"is not an allowed architecture argument for {source} model {name!r} (allowed: {listed}). "
                        "Paths, 'pretrained', 'pretrained_cfg', 'pretrained_cfg_overlay' and 'checkpoint_path' are never "
                        "read from a file: load such weights yourself and wrap the module, Classifier(module, ...).")
        ok, what = allowed[key]
        if not ok(value):
            raise _fail(where, k, f"must be {what}, got {value!r}.")
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def check_arch(arch: Any, *, where: str = "arch") -> dict[str, Any] | None:
    """Validate a saved ``arch`` (``{"source", "name", "kwargs"}`` or None) before anything is built from it.

    Raises :class:`CheckpointError` naming ``where`` (the file) and the offending key.
    """
    if arch is None:
        return None
    if not isinstance(arch, Mapping):
        raise _fail(where, "arch", f"must be a JSON object or null, got {type(arch).__name__}.")
    unknown = sorted(set(arch) - {"source", "name", "kwargs"})
    if unknown:
        raise _fail(where, f"arch.{unknown[0]}", "is not a known field of arch (expected source, name, kwargs).")
    source, name = arch.get("source", "builtin"), arch.get("name")
    if source not in SOURCES:
        raise _fail(where, "arch.source", f"must be one of {', '.join(SOURCES)}, got {source!r}.")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(where, "arch.name", f"must be a plain model name (letters, digits, '_', '.', '-'; no path, no "
                    f"'hf-hub:' or 'local-dir:' prefix), got {name!r}.")
    from .models import builtin_factory

    fn = builtin_factory(name)
    if source == "builtin" and fn is None:
        raise _fail(where, "arch.name", f"{name!r} is not a built-in model.")
    if source == "timm":
        import timm

        if not timm.is_model(name):
            raise _fail(where, "arch.name", f"{name!r} is not a timm model of the installed timm {timm.__version__}.")
    kwargs = check_arch_kwargs(source, name, arch.get("kwargs") or {}, where=where, builtin=fn)
    return {"source": source, "name": name, "kwargs": kwargs}
