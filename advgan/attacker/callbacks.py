"""AdvGAN's side concerns during training: validation (``attacks.measure`` + diagnostics), the best epoch,
black-box query counting."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from ..engine import Callback, MinMaxTrainer

if TYPE_CHECKING:
    from .blackbox import BlackBox
    from .game import AdvGANGame
    from .model import AdvGAN


class AdvGANValidation(Callback):
    """After each epoch: attack success rate, clean accuracy, shared energy and adversarial-class entropy
    of the (EMA) generator on ``loader`` (``val_asr``, ``val_clean_acc``, ``val_shared_energy``,
    ``val_adv_class_entropy``; see :mod:`attacks.diagnostics`)."""

    name = "advgan-validation"

    def __init__(self, attacker: AdvGAN, loader: DataLoader) -> None:
        self.attacker, self.loader = attacker, loader

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        G = trainer.ema_net("G")
        was = G.training
        G.eval()
        try:
            rates = self.attacker.rates(self.loader, generator=G)
            diag = self.attacker.diagnostics(self.loader, generator=G)
        finally:
            G.train(was)
        return {**{f"val_{k}": v for k, v in rates.items()}, "val_shared_energy": diag["shared_energy"],
                "val_adv_class_entropy": diag["adv_class_entropy"]}


class BestGenerator(Callback):
    """Keeps (in memory) the weights of the (EMA) generator of the epoch with the highest ``val_asr``
    (``AdvGANValidation``'s metric; ties keep the earlier epoch). ``AdvGAN.fit`` loads them at the end.
    The best weights travel in every checkpoint, so a resumed run chooses among all its epochs."""

    name = "advgan-best-epoch"

    def __init__(self) -> None:
        self.best: float | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        asr = trainer.metrics.get("val_asr")
        if asr is None or (self.best is not None and asr <= self.best):
            return {}
        self.best = float(asr)
        self.state = {k: v.detach().clone() for k, v in trainer.ema_net("G").state_dict().items()}
        return {"best": True}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, **({"weights": self.state} if self.state is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        weights = state.get("weights")
        self.state = {k: v.clone() for k, v in weights.items()} if isinstance(weights, dict) else None


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


class TargetCurriculum(Callback):
    """Keeps the targeted game's running miss rate per target class with the run (checkpointed, restored on
    resume) and logs it after each epoch as ``miss/<class>``."""

    name = "advgan-target-curriculum"

    def __init__(self, game: AdvGANGame) -> None:
        self.game = game

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, Any]:
        return {f"miss/{c}": float(v) for c, v in enumerate(self.game.miss.tolist())}

    def state_dict(self) -> dict[str, Any]:
        return {"miss": self.game.miss.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.game.miss = state["miss"].clone().float()
