"""Ctrl-C during training: stop at a safe point (after a checkpoint) and say where the run resumes from."""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a safe point; ``checkpoint`` (when an out_dir was given) resumes it exactly."""

    def __init__(self, message: str, *, checkpoint: Path | None, step: int) -> None:
        super().__init__(message)
        self.checkpoint, self.step = checkpoint, step


class SigintStop:
    """Inside ``with``, the first Ctrl-C (SIGINT) only sets ``requested``; a second one stops at once.

    Installed only in the main thread and when ``enabled`` (off under DDP, where every rank would have
    to agree on the step); the previous handler is put back on exit.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self._previous: object = None
        self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> SigintStop:
        self.requested, self._installed = False, False
        if self.enabled and threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
                pass
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False


def interrupted_error(step: int, epoch: int, checkpoint: Path | None) -> TrainingInterrupted:
    """The :class:`TrainingInterrupted` for a stop after ``step`` (``checkpoint``: the saved file, if any)."""
    saved = checkpoint is not None and checkpoint.is_file()
    where = (f"a checkpoint at step {step} is saved in {checkpoint}; re-running the same command (or fit) resumes from it"
             if saved else "no out_dir was given, so nothing was saved")
    return TrainingInterrupted(f"training interrupted at step {step} (epoch {epoch + 1}): {where}.",
                               checkpoint=checkpoint if saved else None, step=step)
