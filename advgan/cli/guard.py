"""How every sub-command runs: checks before any work, one writer per ``--out``, errors as one line.

:func:`run_command` (called by :func:`advgan.cli.main`):

1. checks, before anything is loaded or trained: the device (``meta``, ``mps`` without MPS, ``cuda``
   without CUDA -> exit 2); dataset and architecture names; ``--out`` (a file, under a file, read-only,
   equal to / inside / around ``--classifier`` or an ``advgan:DIR`` input, symlinks resolved);
2. seeds ``torch``, ``random`` and ``numpy`` with ``--seed`` (models built by the command are repeatable);
3. holds ``--out``'s lock file while the command runs (a second run on the same ``--out`` gets exit 2);
4. turns errors into one line on stderr: user errors (``ValueError``, ``TypeError``, ``LookupError``,
   ``OSError`` incl. missing files, offline downloads, locked or read-only folders, ``ImportError``) exit
   2; a diverged training exits 1; Ctrl-C exits 130 after saying how to resume; anything else exits 1
   with its type and message. ``ADVGAN_TRACEBACK=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_USER = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
#: commands whose --dataset is any name of advgan.data (the others list their choices in argparse)
FREE_DATASET_COMMANDS = ("train-classifier", "train-attacker", "evaluate", "finetune")
#: user errors: one line, exit 2
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, LookupError, OSError, ImportError)


def input_dirs(args: argparse.Namespace) -> dict[str, str]:
    """What the command reads that ``--out`` must not overwrite: ``--classifier``, ``advgan:DIR`` specs, an imagefolder root."""
    out: dict[str, str] = {}
    if getattr(args, "classifier", None):
        out["--classifier"] = str(args.classifier)
    for flag in ("source", "attack"):
        for spec in getattr(args, flag, None) or []:
            if isinstance(spec, str) and spec.startswith("advgan:"):
                out[f"--{flag} {spec}"] = spec.split(":", 1)[1]
    if getattr(args, "dataset", None) == "imagefolder" and getattr(args, "data_root", None):
        out["--data-root"] = str(args.data_root)
    return out


def check_architecture(name: str, flag: str) -> None:
    """A built-in or timm architecture name, or ValueError listing the valid ones (without building anything)."""
    from attacks.models import check_architecture as check

    check(name, flag)


def preflight(args: argparse.Namespace) -> Path | None:
    """Every check that needs no data or model (see the module docstring); returns ``--out`` resolved (or None)."""
    from attacks.checks import resolve_device

    if getattr(args, "device", None) is not None:
        resolve_device(args.device)
    dataset = getattr(args, "dataset", None)
    if isinstance(dataset, str) and getattr(args, "command", None) in FREE_DATASET_COMMANDS:
        from advgan import data

        if dataset not in data.available():
            raise ValueError(f"--dataset: unknown dataset {dataset!r}; valid names: {', '.join(data.available())}.")
    if isinstance(getattr(args, "model", None), str) and args.command == "train-classifier":
        check_architecture(args.model, "--model")
    if getattr(args, "black_box", None) and isinstance(getattr(args, "surrogate", None), str):
        check_architecture(args.surrogate, "--surrogate")
    out = getattr(args, "out", None)
    if out is None:
        return None
    from advgan.engine.rundir import check_out_dir

    return check_out_dir(out, inputs=input_dirs(args), what="--out")


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), ``random`` and numpy: what the command builds before training is repeatable."""
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def _say(command: str, text: str) -> None:
    line = " ".join(str(text).split()) or "(no message)"
    print(f"advgan {command}: error: {line}", file=sys.stderr)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed sub-command with the checks, the seed, the lock and the error policy of the module docstring."""
    if os.environ.get("ADVGAN_TRACEBACK"):
        return _run(args)
    command = getattr(args, "command", "?")
    from advgan.engine.trainer import DivergenceError

    try:
        return _run(args)
    except KeyboardInterrupt as e:
        detail = f" ({e})" if str(e) else ""
        print(f"advgan {command}: interrupted{detail}. Re-run the same command to resume from the last checkpoint.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except DivergenceError as e:
        _say(command, str(e))
        return EXIT_FAILED
    except USER_ERRORS as e:
        _say(command, _describe(e))
        return EXIT_USER
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback; ADVGAN_TRACEBACK=1 does
        _say(command, f"{type(e).__name__}: {e} (unexpected; re-run with ADVGAN_TRACEBACK=1 to see where it happened)")
        return EXIT_FAILED


def _describe(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"missing key {e.args[0]!r}" if e.args else "missing key"
    if isinstance(e, OSError) and e.filename and str(e.filename) not in str(e):
        return f"{e.strerror or e}: {e.filename}"
    if isinstance(e, ImportError) and not str(e):
        return f"a module could not be imported ({type(e).__name__})"
    return str(e) or type(e).__name__


def _run(args: argparse.Namespace) -> int:
    from advgan.engine import distributed

    out = preflight(args)
    distributed.setup_cli(getattr(args, "device", None))  # under torchrun: process group, stdout on rank 0
    if getattr(args, "seed", None) is not None:
        seed_everything(int(args.seed))
    with _locked(out):
        return int(args._run(args) or 0)


@contextlib.contextmanager
def _locked(out: Path | None) -> Iterator[None]:
    from advgan.engine import distributed as D
    from advgan.engine.rundir import RunLock

    if out is None or not D.current().is_main:
        yield
        return
    with RunLock(out, what="--out"):
        yield


@contextlib.contextmanager
def offline_pretrained(name: str) -> Iterator[None]:
    """Around building a timm model with pretrained weights: offline -> from the local cache only, without the
    hub's minute of retries; not cached either -> :class:`~advgan.netcheck.OfflineError` saying what to do."""
    from advgan.netcheck import OfflineError, unreachable

    reason = None if os.environ.get("HF_HUB_OFFLINE") else unreachable("https://huggingface.co")
    if reason is None:
        yield
        return
    patched = _hub_offline()
    try:
        yield
    except (OSError, RuntimeError, ValueError) as e:
        raise OfflineError(
            f"cannot download the pretrained weights of {name!r}: this machine looks offline ({reason}) and they are "
            f"not in the local Hugging Face cache ({type(e).__name__}). Run once with internet access (or copy "
            "~/.cache/huggingface from a machine that has them), or train without --pretrained."
        ) from None
    finally:
        for mod, value in patched:
            mod.HF_HUB_OFFLINE = value


def _hub_offline() -> list[tuple[Any, Any]]:
    """Put huggingface_hub in offline mode (cache only, no retries) until the returned values are put back."""
    patched: list[tuple[Any, Any]] = []
    try:
        import huggingface_hub.constants as C
    except ImportError:
        return patched
    patched.append((C, C.HF_HUB_OFFLINE))
    C.HF_HUB_OFFLINE = True
    return patched
