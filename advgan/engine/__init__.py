"""The one min-max engine that trains every model of the library (see :mod:`advgan.engine.trainer`)."""
from .checkpoint import CHECKPOINT, HISTORY
from .history import History
from .optim import OPTIMIZERS, make_optimizer
from .trainer import SCHEDULES, DivergenceError, MinMaxGame, MinMaxTrainer, Player, TrainConfig

__all__ = ["CHECKPOINT", "HISTORY", "History", "OPTIMIZERS", "make_optimizer", "SCHEDULES", "DivergenceError",
           "MinMaxGame", "MinMaxTrainer", "Player", "TrainConfig"]
