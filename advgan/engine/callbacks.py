"""Side concerns of a training run as callbacks, each with its own resumable state.

A :class:`Callback` may use the trainer (games may not). The engine calls ``on_fit_start`` once per
``fit`` (after a resume), ``on_epoch_start`` / ``on_step_end`` during training and ``on_epoch_end`` after
each epoch, in list order; what ``on_epoch_end`` returns goes into the epoch's record of the history
(``trainer.metrics`` holds what earlier callbacks returned for this epoch). ``state_dict()`` (JSON values
and tensors, nested dicts allowed) is saved in the checkpoint and handed back to ``load_state_dict`` on
resume, so a callback resumes with the run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .trainer import MinMaxTrainer


class Callback:
    """Base class: every hook does nothing. ``name`` keys the state in checkpoints (default: the class name)."""

    name: str | None = None

    def on_fit_start(self, trainer: MinMaxTrainer) -> None:
        """Called once per fit, after a checkpoint (if any) was loaded."""

    def on_epoch_start(self, trainer: MinMaxTrainer) -> None:
        """Called before the first batch of an epoch (also of a resumed, partial one)."""

    def on_step_end(self, trainer: MinMaxTrainer) -> None:
        """Called after every round (``trainer.state.step`` has just been incremented)."""

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        """Called after every epoch (``trainer.state.epoch`` counts it already); returns metrics to record."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (not called for a checkpoint without this callback's state)."""


class SampleGrid(Callback):
    """Writes ``out_dir/samples/step_<step>.png`` with ``draw(path, trainer)``: every ``sample_every`` steps, else
    after each epoch. Rank 0 only, with an out_dir only; the networks run in eval mode without gradients."""

    name = "samples"

    def __init__(self, draw: Callable[[Path, MinMaxTrainer], Any]) -> None:
        self.draw = draw

    def on_step_end(self, trainer: MinMaxTrainer) -> None:
        every = trainer.config.sample_every
        if every and trainer.state.step % every == 0:
            self.write(trainer)

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        if not trainer.config.sample_every:
            self.write(trainer)
        return {}

    def write(self, trainer: MinMaxTrainer) -> None:
        if trainer.out_dir is None or not trainer.dist.is_main:
            return
        path = trainer.out_dir / "samples" / f"step_{trainer.state.step:07d}.png"
        nets = list(trainer.state.nets.values())
        with torch.no_grad(), eval_mode(nets):
            self.draw(path, trainer)


class eval_mode:
    """Context: the modules in eval mode inside, back in train mode after (the engine trains in train mode)."""

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        self.modules = list(modules)

    def __enter__(self) -> None:
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc: object) -> None:
        for m in self.modules:
            m.train()


class Accuracy(Callback):
    """Clean top-1 accuracy of ``model`` on ``loader`` after each epoch (``attacks.measure``), recorded as ``key``."""

    def __init__(self, model: nn.Module, loader: Any, *, key: str = "test_accuracy", max_batches: int | None = None) -> None:
        self.model, self.loader, self.key, self.max_batches = model, loader, key, max_batches
        self.name = f"accuracy:{key}"

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        from attacks import measure

        m = measure(self.model, self.loader, max_batches=self.max_batches, device=trainer.device)
        return {self.key: m.clean_accuracy}


class GameHooks(Callback):
    """The 0.1 optional game hooks ``on_epoch_end(trainer)`` and ``sample_grid(path, trainer)``, as callbacks."""

    name = "game-hooks"

    def __init__(self, game: Any) -> None:
        self.game = game
        draw = getattr(game, "sample_grid", None)
        self.grid = SampleGrid(lambda path, trainer: draw(path, trainer)) if callable(draw) else None

    def on_step_end(self, trainer: MinMaxTrainer) -> None:
        if self.grid is not None:
            self.grid.on_step_end(trainer)

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        hook = getattr(self.game, "on_epoch_end", None)
        metrics = dict(hook(trainer) or {}) if callable(hook) else {}
        trainer.metrics.update(metrics)
        if self.grid is not None:
            self.grid.on_epoch_end(trainer)
        return metrics

    @staticmethod
    def wanted(game: Any) -> bool:
        return callable(getattr(game, "on_epoch_end", None)) or callable(getattr(game, "sample_grid", None))
