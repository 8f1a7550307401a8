"""The contract between a model and the engine: players and a loss, nothing else.

A game names its trainable networks (``nets``), lists its players in update order (``players()``) and
returns a player's loss (``loss(player, nets, batch, step)``). ``nets`` is what the engine passes: the
active player's network possibly wrapped (DistributedDataParallel, ``torch.compile``), the other players'
networks as they are (frozen: no parameter gradients). A player marked ``ascent_of="C"`` is C's
gradient-reversal partner: it is active (wrapped, with gradients) during C's steps and steps, from C's backward,
on the negated gradient, so one loss serves a min-max pair (the game's loss for C is the pair's objective).
A game never sees the trainer; side concerns (validation, sample grids, guards) are :class:`~advgan.engine.callbacks.Callback` objects.

``loss(player, batch, step)`` (the 0.1 form, without ``nets``) still works on every game: it uses the
game's own networks, which is what a direct call from a test or a notebook wants.
"""
from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attacks.checks import check_choice, check_positive_int

from .datacheck import BatchSpec

Nets = Mapping[str, nn.Module]
Batch = tuple[torch.Tensor, ...]
LossParts = dict[str, torch.Tensor]
FROZEN_MODES = ("train", "eval")


@dataclass(frozen=True)
class Player:
    """One trainable network's place in the schedule and its optimiser settings."""

    name: str
    lr: float
    steps: int = 1                     #: steps of this player per round (a round = one step of the last player)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    ema: bool = False                  #: keep an EMA copy of this network (when the config sets ema_decay)
    optimizer: str = "adam"            #: adam | adamw (decoupled weight decay) | sgd (with ``momentum``)
    momentum: float = 0.9              #: SGD momentum (Nesterov when > 0); ignored by adam / adamw
    frozen_mode: str = "train"         #: how this network runs while another player steps: train (as is) | eval
    #: a gradient-reversal partner: this player has no loss (and no steps) of its own; it trains in the named player's
    #: steps, from the same backward, by gradient *ascent* on that player's loss (``steps`` is ignored)
    ascent_of: str | None = None

    def __post_init__(self) -> None:
        check_positive_int(self.steps, "steps")
        check_choice(self.frozen_mode, "frozen_mode", FROZEN_MODES)
        if self.ascent_of is not None and (not isinstance(self.ascent_of, str) or self.ascent_of == self.name):
            raise ValueError(f"player {self.name!r}: ascent_of must name another player, got {self.ascent_of!r}.")


def takes_nets(loss: Callable[..., Any]) -> bool:
    """True for ``loss(player, nets, batch, step)``, False for the 0.1 form ``loss(player, batch, step)``."""
    try:
        params = inspect.signature(loss).parameters.values()
    except (TypeError, ValueError):
        return True
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) != 3


def _accept_three_arguments(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def loss(self: MinMaxGame, player: str, *args: Any) -> Any:
        if len(args) == 2:  # loss(player, batch, step): the game's own networks
            return fn(self, player, self.nets, *args)
        return fn(self, player, *args)

    loss._three_arguments = True  # type: ignore[attr-defined]
    return loss


class MinMaxGame:
    """What a model provides to the engine. ``nets`` maps player names to their (raw) networks."""

    kind: str = "game"
    nets: dict[str, nn.Module]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("loss")
        if callable(fn) and takes_nets(fn.__get__(object())) and not getattr(fn, "_three_arguments", False):
            cls.loss = _accept_three_arguments(fn)  # type: ignore[method-assign]

    def players(self) -> list[Player]:
        raise NotImplementedError

    def loss(self, player: str, nets: Nets, batch: Batch, step: int) -> tuple[torch.Tensor, LossParts]:
        """Scalar loss for ``player`` to minimise on ``batch`` (with the networks ``nets``) and named parts to log."""
        raise NotImplementedError

    def frozen_modules(self) -> list[nn.Module]:
        """Non-trainable modules the game uses (e.g. a target classifier); moved to the device, never trained."""
        return []

    def config_dict(self) -> dict[str, Any]:
        """What, besides the config, must match for a checkpoint of this game to resume (shapes, classes, ...)."""
        return {}

    def batch_spec(self) -> BatchSpec | None:
        """What every batch holds (images in bounds, labels in range): the engine checks each batch against it
        on the device (:mod:`advgan.engine.datacheck`). ``None``: no check."""
        return None


_warned: set[type] = set()
_styles: dict[Any, bool] = {}


def uses_nets(fn: Any) -> bool:
    """:func:`takes_nets`, cached by function (the engine asks once per step)."""
    key = getattr(fn, "__func__", fn)
    if key not in _styles:
        _styles[key] = takes_nets(fn)
    return _styles[key]


def call_legacy_loss(game: MinMaxGame, fn: Any, player: str, nets: dict[str, nn.Module], batch: tuple[Any, ...],
                     step: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """A 0.1 game, ``loss(player, batch, step)`` reading ``self.nets``: it sees the step's networks there during the call."""
    if type(game) not in _warned:
        _warned.add(type(game))
        warnings.warn(f"{type(game).__name__}.loss(player, batch, step) is the advgan 0.1 game contract; write "
                      "loss(player, nets, batch, step) and use nets (the engine passes the networks to use).",
                      DeprecationWarning, stacklevel=4)
    own = game.nets
    swapped = {n: own[n] for n, net in nets.items() if own.get(n) is not net}
    own.update({n: nets[n] for n in swapped})
    try:
        return fn(player, batch, step)
    finally:
        own.update(swapped)


def check_partners(game: str, players: list[Player]) -> dict[str, list[Player]]:
    """``{host: [its gradient-reversal partners]}`` of a schedule; a partner of no player in it, a partner of a
    partner, or a partner listed first (the first player draws the batches) is refused."""
    names = {p.name for p in players}
    out: dict[str, list[Player]] = {}
    for i, p in enumerate(players):
        if p.ascent_of is None:
            continue
        host = next((q for q in players if q.name == p.ascent_of), None)
        if host is None or host.ascent_of is not None or i == 0:
            why = ("is listed first (the first player draws each batch; list the host first)" if i == 0 and host is not None
                   else f"names {p.ascent_of!r}, which is not a stepping player of {sorted(names)}")
            raise ValueError(f"{game}.players(): player {p.name!r} (ascent_of={p.ascent_of!r}) {why}.")
        out.setdefault(host.name, []).append(p)
    return out
