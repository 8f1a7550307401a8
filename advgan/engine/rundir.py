"""Output directories of runs: checked before any work, and locked while a run writes into them.

:func:`check_out_dir` refuses, before the first step, an output directory that cannot hold a run: a path
that is a file or sits under a file, a read-only folder, a file the run will write that is a directory,
and an output folder equal to, inside or around one of the run's inputs (``--out`` inside
``--classifier`` would overwrite the classifier). Symlinks are resolved first.

:class:`RunLock` makes a run the only writer of its folder: ``.advgan.lock`` is created with ``O_EXCL``
and holds the owner's pid; a second run gets :class:`RunLockedError`; the lock is removed when the run
ends (whatever the outcome); a lock left by a dead process (SIGKILL, power loss) is taken over with a
warning. The lock is re-entrant within a process (the CLI and the engine both take it).
"""
from __future__ import annotations

import os
import socket
import stat
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

LOCK = ".advgan.lock"
#: suffixes of the files runs write into their folders: such a name existing as a directory blocks the run
OUTPUT_SUFFIXES = (".safetensors", ".json", ".png", ".md", ".csv")


#: models keep the engine's checkpoint in ``<run folder>/checkpoint``; the lock is on the run folder
ENGINE_SUBDIR = "checkpoint"


def run_dir_of(engine_dir: str | os.PathLike[str]) -> Path:
    """The run folder an engine directory belongs to (``run/checkpoint`` -> ``run``), which the lock covers."""
    p = Path(engine_dir)
    return p.parent if p.name == ENGINE_SUBDIR else p


class RunDirError(ValueError):
    """An output directory that cannot hold the run (a file, read-only, inside an input, ...)."""


class RunLockedError(RunDirError):
    """Another process is writing to the same output directory."""


def _resolve(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve(strict=False)


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or below it."""
    return a == b or b in a.parents


def _read_only(d: Path) -> bool:
    if not os.access(d, os.W_OK | os.X_OK):
        return True  # also a read-only file system
    # root passes access(); a folder without any write bit is meant to be read-only even so
    return bool(hasattr(os, "geteuid") and os.geteuid() == 0 and not d.stat().st_mode & 0o222)


def check_out_dir(out: str | os.PathLike[str], *, inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
                  what: str = "out_dir", files: Iterable[str] = ()) -> Path:
    """Check that ``out`` can receive the run's files; return it resolved. Raises :class:`RunDirError`.

    ``inputs``: name -> path of what the run reads (``{"--classifier": dir}``); ``out`` may not be one of
    them, inside one, or contain one. ``files``: names (relative to ``out``) the run will write.
    """
    if out is None or str(out) == "":
        raise RunDirError(f"{what} is empty; give a directory path.")
    raw = Path(out).expanduser()
    res = _resolve(raw)
    if res.exists() and not res.is_dir():
        raise RunDirError(f"{what} {raw} is a file, not a directory; choose a directory path (it is created if missing).")
    parent = res
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"{what} {raw} sits under {parent}, which is a file, not a directory; choose another path.")
    if _read_only(parent):
        where = "is" if parent == res else f"would be created in {parent}, which is"
        raise RunDirError(f"{what} {raw} {where} read-only (mode {stat.filemode(parent.stat().st_mode)}); "
                          "choose a writable directory.")
    for name, src in (inputs or {}).items():
        if src is None or str(src) == "":
            continue
        s = _resolve(src)
        if _inside(res, s):
            rel = "is the same directory as" if res == s else "is inside"
            raise RunDirError(f"{what} {raw} {rel} {name} {src}: the run would overwrite its own input. "
                              "Choose an output directory outside it.")
        if _inside(s, res):
            raise RunDirError(f"{name} {src} is inside {what} {raw}: the run could overwrite its own input. "
                              "Choose an output directory that does not contain it.")
    if res.is_dir():
        _check_no_dir_where_a_file_goes(res, raw, files, what)
    return res


def _check_no_dir_where_a_file_goes(res: Path, raw: Path, files: Iterable[str], what: str) -> None:
    named = [res / f for f in files]
    candidates: list[Path] = [p for p in named if p.is_dir()]
    if not candidates:
        seen = 0
        for p in _walk(res, depth=2):
            seen += 1
            if seen > 2000:
                break
            if p.suffix in OUTPUT_SUFFIXES and p.is_dir():
                candidates.append(p)
                break
    if candidates:
        p = candidates[0]
        raise RunDirError(f"{what} {raw}: {p.relative_to(res)} is a directory, but the run writes a file there "
                          "(a checkpoint, config or report). Remove or rename it, or choose another directory.")


def _walk(root: Path, depth: int) -> Iterator[Path]:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for e in entries:
        p = Path(e.path)
        yield p
        if depth > 1 and e.is_dir(follow_symlinks=False) and p.suffix not in OUTPUT_SUFFIXES:
            yield from _walk(p, depth - 1)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


_HELD: dict[Path, int] = {}  #: lock paths this process holds -> depth (re-entrant)


class RunLock:
    """``with RunLock(out_dir):`` — this process is the only writer of ``out_dir`` (see the module docstring).

    The folder (and missing parents) is created; folders created here are removed again at exit if the
    run left them empty.
    """

    def __init__(self, directory: str | os.PathLike[str], *, what: str = "out_dir") -> None:
        self.directory = _resolve(directory)
        self.raw = Path(directory)
        self.path = self.directory / LOCK
        self.what = what
        self._created: list[Path] = []
        self._owner = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        if self.path in _HELD:
            _HELD[self.path] += 1
            return
        self._make_dirs()
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = self._owner_of()
                if owner is None or attempt:
                    self._cleanup_dirs()
                    raise RunLockedError(
                        f"another run is writing to {self.what} {self.raw} ({self._describe()}; lock file {self.path}). "
                        "Wait for it to finish or choose another output directory; if no such run exists, delete the lock file."
                    ) from None
                continue
            except OSError as e:
                self._cleanup_dirs()
                raise RunDirError(f"cannot write to {self.what} {self.raw}: {e.strerror or e}. Choose a writable directory.") from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n{socket.gethostname()}\n")
            _HELD[self.path] = 1
            self._owner = True
            return

    def _describe(self) -> str:
        info = self._read()
        return f"pid {info[0]} on {info[1]}" if info else "its lock file could not be read"

    def _read(self) -> tuple[int, str] | None:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").split("\n")
            return int(lines[0]), (lines[1] if len(lines) > 1 else "")
        except (OSError, ValueError):
            return None

    def _owner_of(self) -> tuple[int, str] | None:
        """None when the lock is held by a live process; otherwise take it over (removing it) and return its owner."""
        info = self._read()
        if info is None:
            return None  # being written right now, or unreadable: treat as held
        pid, host = info
        if host and host != socket.gethostname():
            return None  # another machine: cannot tell, treat as held
        if _pid_alive(pid) and pid != os.getpid():
            return None
        warnings.warn(f"{self.what} {self.raw}: taking over the stale lock of process {pid}, which is no longer running.",
                      RuntimeWarning, stacklevel=3)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return info

    def _make_dirs(self) -> None:
        missing = []
        p = self.directory
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create {self.what} {self.raw}: {e.strerror or e}. Choose a writable directory.") from None
        self._created = missing  # deepest first

    def _cleanup_dirs(self) -> None:
        for d in self._created:
            try:
                d.rmdir()
            except OSError:
                break
        self._created = []

    def release(self) -> None:
        depth = _HELD.get(self.path)
        if depth is None:
            return
        if depth > 1:
            _HELD[self.path] = depth - 1
            return
        del _HELD[self.path]
        if self._owner:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self._owner = False
        self._cleanup_dirs()
