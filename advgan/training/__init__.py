"""Training a target classifier: a one-player game on the engine (``train_classifier``, ``accuracy``)."""
from .classifier import ClassifierConfig, ClassifierGame, SupervisedGame, accuracy, train_classifier

__all__ = ["ClassifierConfig", "ClassifierGame", "SupervisedGame", "accuracy", "train_classifier"]
