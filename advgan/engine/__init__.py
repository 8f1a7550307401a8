"""The one min-max engine that trains every model of the library.

- :mod:`~advgan.engine.game`: the contract a model provides (``Player``, ``MinMaxGame``);
- :mod:`~advgan.engine.trainer`: ``MinMaxTrainer`` (schedule, freezing, AMP, EMA, NaN guard, DDP);
- :mod:`~advgan.engine.state` / :mod:`~advgan.engine.checkpoint`: ``TrainState`` and its ``Checkpointer``;
- :mod:`~advgan.engine.callbacks`: side concerns with resumable state (validation, sample grids, guards);
- :mod:`~advgan.engine.config`: ``EngineConfig`` (engine settings) and ``TrainConfig`` (the GAN family's);
- :mod:`~advgan.engine.model`: ``Trainable``, the one model pattern (config + nets + game).
"""
from .callbacks import Accuracy, Callback, SampleGrid
from .checkpoint import CHECKPOINT, HISTORY, Checkpointer
from .config import SCHEDULES, EngineConfig, TrainConfig
from .game import MinMaxGame, Player
from .history import History
from .model import Run, Trainable
from .optim import OPTIMIZERS, make_optimizer
from .state import TrainState
from .trainer import DivergenceError, MinMaxTrainer

__all__ = ["Accuracy", "Callback", "SampleGrid", "CHECKPOINT", "HISTORY", "Checkpointer", "SCHEDULES", "EngineConfig",
           "TrainConfig", "MinMaxGame", "Player", "History", "Run", "Trainable", "OPTIMIZERS", "make_optimizer", "TrainState",
           "DivergenceError", "MinMaxTrainer"]
