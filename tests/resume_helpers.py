"""Crash-and-resume check of fine-tuning, shared by the defense tests."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn


def state_of(m: nn.Module) -> dict[str, torch.Tensor]:
    """A cloned state dict."""
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    """Bit-identical state dicts."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_resume_exact(clf: nn.Module, make_loader: Callable[[], Any], cfg: Any, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, crash_at: int) -> None:
    """Fine-tune without interruption; again with a KeyboardInterrupt at the ``crash_at``-th training batch, then
    resume: weights and the per-step losses must be bit-identical to the uninterrupted run."""
    import defenses.methods as M
    from defenses import finetune

    full, hist_full = finetune(clf, make_loader(), cfg, out_dir=tmp_path / "a")
    real = M.batch_loss
    calls = {"n": 0}

    def crash(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(M, "batch_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        finetune(clf, make_loader(), cfg, out_dir=tmp_path / "b")
    monkeypatch.setattr(M, "batch_loss", real)
    resumed, hist_res = finetune(clf, make_loader(), cfg, out_dir=tmp_path / "b")
    assert same_state(state_of(full), state_of(resumed))
    assert [s["C/loss"] for s in hist_full.steps] == [s["C/loss"] for s in hist_res.steps]
