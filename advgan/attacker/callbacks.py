"""AdvGAN's side concerns during training: validation (``attacks.measure``) and black-box query counting."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader

from ..engine import Callback, MinMaxTrainer

if TYPE_CHECKING:
    from .blackbox import BlackBox
    from .model import AdvGAN


class AdvGANValidation(Callback):
    """After each epoch: attack success rate and clean accuracy of the (EMA) generator on ``loader``."""

    name = "advgan-validation"

    def __init__(self, attacker: AdvGAN, loader: DataLoader) -> None:
        self.attacker, self.loader = attacker, loader

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        G = trainer.ema_net("G")
        was = G.training
        G.eval()
        try:
            rates = self.attacker.rates(self.loader, generator=G)
        finally:
            G.train(was)
        return {f"val_{k}": v for k, v in rates.items()}


class QueryCount(Callback):
    """Keeps the black box's query counter with the run: saved in every checkpoint, restored on resume."""

    name = "blackbox-queries"

    def __init__(self, blackbox: BlackBox) -> None:
        self.blackbox = blackbox
        self._restored = False

    def on_fit_start(self, trainer: MinMaxTrainer) -> None:
        if not self._restored and trainer.state.step:  # a 0.1 checkpoint: the count is in the history
            last = trainer.history.last("S/queries")
            if last is not None:
                self.blackbox.queries = int(last)

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        return {"queries": self.blackbox.queries}

    def state_dict(self) -> dict[str, Any]:
        return {"queries": self.blackbox.queries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.blackbox.queries = int(state["queries"])
        self._restored = True
