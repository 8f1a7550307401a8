"""Per-step logs: kept on the device while a round runs, moved to the host in one sync, NaN/Inf stops the run."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

#: (step, epoch, {name: 0-d tensor}) for each step since the last flush
Pending = list[tuple[int, int, dict[str, torch.Tensor]]]


class DivergenceError(RuntimeError):
    """A loss became NaN/Inf; training stopped and the last good checkpoint was kept."""


def divergence_error(step: int, epoch: int, key: str, value: float, checkpoint: Path | None) -> DivergenceError:
    """The error for ``key = value`` (not finite) at ``step``; says whether a good checkpoint was kept."""
    kept = (f"the last good checkpoint is kept at {checkpoint}" if checkpoint and checkpoint.is_file()
            else "no checkpoint was written (set an out_dir to keep one)")
    return DivergenceError(
        f"training diverged at step {step} (epoch {epoch + 1}): {key} = {value}. Stopped; {kept}. "
        "Remedies: lower the learning rates (lr_g / lr_d), add a gradient penalty or spectral norm to D, use "
        "fewer discriminator steps (d_steps), set grad_clip, or turn amp off."
    )


def to_records(pending: Pending) -> tuple[list[dict[str, Any]], tuple[int, str, float] | None]:
    """History records for ``pending`` (one device-to-host copy) and the first non-finite (step, key, value)."""
    keys = [(i, k) for i, (_, _, logs) in enumerate(pending) for k in logs]
    values = torch.stack([pending[i][2][k].float().reshape(()) for i, k in keys]).cpu().tolist() if keys else []
    recs: list[dict[str, Any]] = [{"step": s, "epoch": e} for s, e, _ in pending]
    bad: tuple[int, str, float] | None = None
    for (i, k), v in zip(keys, values):
        if bad is None and not math.isfinite(v):
            bad = (pending[i][0], k, v)
        recs[i][k] = v
    return recs, bad
