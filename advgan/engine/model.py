"""The one model pattern: a model has a ``config``, its ``nets`` and a ``game``; one trainer runs it.

Every trainable model of the library (GAN, ConditionalGAN, Pix2Pix, AdvGAN, black-box AdvGAN, classifier
training, robust fine-tuning) derives from :class:`Trainable`. ``fit`` methods check their data, build a
loader and the callbacks they need, and call :meth:`Trainable.train`, which keeps one
:class:`~advgan.engine.trainer.MinMaxTrainer` per output directory: calling ``fit`` again continues the
same run ("epochs in total"), and a new ``out_dir`` starts (or resumes) the run stored there.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from .callbacks import Callback
from .config import EngineConfig
from .game import MinMaxGame
from .history import History
from .trainer import MinMaxTrainer


class Trainable:
    """Base of the models: ``config`` (an EngineConfig), ``game`` (a MinMaxGame), ``nets`` (the game's networks)."""

    config: EngineConfig
    game: MinMaxGame
    _trainer: MinMaxTrainer | None = None
    _history: History | None = None

    @property
    def trainer(self) -> MinMaxTrainer | None:
        """The trainer of the last ``fit`` (None before any)."""
        return self._trainer

    @property
    def history(self) -> History:
        """The training history (of the current trainer, or the one loaded with the model)."""
        if self._trainer is not None:
            return self._trainer.history
        return self._history if self._history is not None else History()

    @history.setter
    def history(self, value: History) -> None:
        self._history = value

    def ema_net(self, name: str) -> nn.Module:
        """A player's network for inference: its EMA copy when training kept one, else the network."""
        return self._trainer.ema_net(name) if self._trainer is not None else self.game.nets[name]

    def trainer_for(self, out_dir: str | Path | None) -> MinMaxTrainer:
        """The trainer of the run in ``out_dir`` (the current one, or a new one that resumes from there)."""
        out = Path(out_dir) if out_dir is not None else None
        if self._trainer is None or self._trainer.out_dir != out:
            self._trainer = MinMaxTrainer(self.game, self.config, out)
            self._adopt(self._trainer)
        return self._trainer

    def _adopt(self, trainer: MinMaxTrainer) -> None:
        """Hook: hand state the model already holds (e.g. a loaded EMA generator) to a new trainer."""

    def train(self, loader: DataLoader, epochs: int, out_dir: str | Path | None = None, *, resume: bool = True,
              callbacks: Sequence[Callback] = ()) -> History:
        """Run the engine until ``epochs`` epochs in total (resuming from ``out_dir``'s checkpoint when there is one)."""
        trainer = self.trainer_for(out_dir)
        trainer.callbacks = list(callbacks)
        history = trainer.fit(loader, epochs, resume=resume)
        self._trained(trainer)
        return history

    def _trained(self, trainer: MinMaxTrainer) -> None:
        """Hook: called after a fit (e.g. keep the EMA generator)."""


class Run(Trainable):
    """A one-off training run of ``game`` with ``config`` (what ``train_classifier`` and ``finetune`` use)."""

    def __init__(self, game: MinMaxGame, config: EngineConfig) -> None:
        self.game, self.config = game, config
