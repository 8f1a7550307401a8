"""Training a target classifier: a one-player game on the engine (``train_classifier``, ``accuracy``)."""
from .classifier import ClassifierConfig, SupervisedGame, accuracy, train_classifier

__all__ = ["ClassifierConfig", "SupervisedGame", "accuracy", "train_classifier"]
