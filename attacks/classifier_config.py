"""Reading a saved classifier's ``config.json``: every field checked, errors name the file and the key."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .arch import check_arch
from .checkpoint import CheckpointError, check_kind, load_json
from .outputs import check_output_selector

KIND = "classifier"
FORMAT_VERSION = 1


def _bad(path: Path, key: str, what: str, value: Any) -> CheckpointError:
    return CheckpointError(f"{path}: '{key}' must be {what}, got {value!r}. Was the file edited or written by another program?")


def read_classifier_config(path: str | Path) -> dict[str, Any]:
    """A classifier's ``config.json``, every field checked; errors name the file and the key."""
    path = Path(path)
    cfg = load_json(path, what="classifier")
    check_kind(cfg, KIND, path.parent)
    version = cfg.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(f"{path}: 'format_version' is {version!r}; this version of the library reads classifier "
                              f"format 1..{FORMAT_VERSION}. Upgrade advgan, or re-save the classifier.")
    out: dict[str, Any] = {}
    for key in ("num_classes", "in_chans", "mean", "std"):
        if key not in cfg:
            raise CheckpointError(f"{path}: the key '{key}' is missing (truncated or edited?).")

    def integer(key: str, lo: int, optional: bool = False) -> int | None:
        v = cfg.get(key)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise _bad(path, key, f"an integer >= {lo}" + (" or null" if optional else ""), v)
        return v

    out["num_classes"] = integer("num_classes", 2)
    out["in_chans"] = integer("in_chans", 1)
    out["data_chans"] = integer("data_chans", 1, optional=True)
    for key in ("mean", "std"):
        v = cfg[key]
        if not isinstance(v, list) or not v or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in v):
            raise _bad(path, key, "a non-empty list of finite numbers", v)
        out[key] = v
    size = cfg.get("input_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise _bad(path, "input_size", "[H, W] (two positive integers) or null", size)
    out["input_size"] = size
    output = cfg.get("output")
    if output is not None and output != "<callable>":
        try:
            check_output_selector(output)
        except (TypeError, ValueError):
            raise _bad(path, "output", "a key name, an index or null", output) from None
    out["output"] = output
    extra = cfg.get("extra", {})
    if not isinstance(extra, dict):
        raise _bad(path, "extra", "a JSON object", extra)
    out["extra"] = extra
    out["arch"] = check_arch(cfg.get("arch"), where=str(path))
    return out
