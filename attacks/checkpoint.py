"""Safe, atomic checkpoint files: safetensors for tensors, JSON for everything else.

Nothing here ever unpickles. Every write goes to a temporary file in the same folder, is fsynced and
then renamed over the target, so a crash mid-write leaves the previous file intact.
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, of the wrong kind or unsafe to load."""


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows; else set and put back at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    """The mode the written file gets: a replaced file keeps its own; a new one gets 0o666 & ~umask (like open())."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename).

    The file's permissions are those of a plain ``open(path, "wb")``: a new file gets ``0o666 & ~umask``,
    a replaced file keeps its mode (the temporary file is private until it is renamed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory. Remove or rename it, or write elsewhere.")
    mode = _target_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_json(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = True) -> Path:
    """Write ``obj`` as indented JSON (atomic); ``sort_keys=False`` keeps the dict's own order."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


def load_json(path: str | os.PathLike[str], *, what: str = "checkpoint") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what}: {path} is a directory, not a JSON file.")
    if not path.is_file():
        raise CheckpointError(f"{what}: {path} does not exist. Point to a directory written by .save().")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what}: {path} is not valid JSON (truncated or corrupted?): {e}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what}: {path} must hold a JSON object, found {type(obj).__name__}.")
    return obj


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Save a flat dict of tensors as safetensors, atomically. Shared storage is cloned apart."""
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(path, st_save_bytes(flat, metadata=dict(metadata) if metadata else None))


def load_tensors(path: str | os.PathLike[str], *, what: str = "checkpoint", device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; pickle files are refused without being opened by an unpickler."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{what}: refusing to load {path.name}: pickle-based files ({', '.join(PICKLE_SUFFIXES)}) can run "
            "arbitrary code when loaded. Convert trusted weights once with "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')."
        )
    if path.is_dir():
        raise CheckpointError(f"{what}: {path} is a directory, not a safetensors file. Point to the file (or to the "
                              "model directory that holds it).")
    if not path.is_file():
        raise CheckpointError(f"{what}: {path} does not exist. Point to a directory written by .save().")
    data = path.read_bytes()
    # safetensors = 8-byte little-endian header length, then '{': its first byte may be 0x80 or "PK" by chance
    if (data[:1] == b"\x80" or data[:2] == b"PK") and data[8:9] != b"{":
        raise CheckpointError(
            f"{what}: {path} is a pickle/zip archive, not safetensors; refusing to unpickle it (it could run code)."
        )
    try:
        tensors = st_load_bytes(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{what}: {path} is not a valid safetensors file (truncated or corrupted?): {e}") from None
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors


def load_state_dict_into(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], *, what: str, prefix: str = "") -> None:
    """Strictly load ``tensors`` (optionally only keys under ``prefix``) into ``module``; explain mismatches.

    The module is left unchanged if the tensors do not fit.
    """
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected e.g. {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with other shapes e.g. {k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}")
        raise CheckpointError(
            f"{what}: the weights do not fit this architecture ({'; '.join(parts)}). Is the checkpoint from "
            "another model or configuration?"
        )
    module.load_state_dict(sd, strict=True)


def check_kind(config: Mapping[str, Any], expected: str, path: str | os.PathLike[str]) -> None:
    """Refuse a config.json written by another component (e.g. an AdvGAN dir passed as a classifier)."""
    kind = config.get("kind")
    if kind != expected:
        raise CheckpointError(
            f"{path} holds a {kind or 'unknown'!s} checkpoint, expected {expected}. Did you pass the wrong directory?"
        )


def rng_state() -> dict[str, torch.Tensor]:
    """CPU (and CUDA, when present) RNG state as tensors, for exact resume."""
    state = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"rng.cuda{i}"] = s
    return state


def set_rng_state(tensors: Mapping[str, torch.Tensor]) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"].to(torch.uint8).cpu())
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda"))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.to(torch.uint8).cpu() for c in cuda])


def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and a JSON-able skeleton."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        meta: dict[str, Any] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{k}"] = v
                meta[k] = "__tensor__"
            else:
                meta[k] = v
        state_meta[str(pid)] = meta
    return tensors, {"state": state_meta, "param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], prefix: str) -> None:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: (tensors[f"{prefix}.{pid}.{k}"] if v == "__tensor__" else v) for k, v in st.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
