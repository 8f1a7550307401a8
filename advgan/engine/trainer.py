"""The one min-max engine that trains every model in the library (GAN, cGAN, pix2pix, AdvGAN, classifiers).

A model plugs in as a :class:`~advgan.engine.game.MinMaxGame`: it names its trainable networks
(``nets``), lists its players in update order with their step counts (``players()``, e.g. ``[D x k, G x 1]``)
and returns each player's loss (``loss(player, nets, batch, step)``). The engine owns everything else: the
schedule, freezing the other players, mixed precision, gradient clipping, EMA of generator weights, LR
schedules, progress, history, DDP, checkpoints with exact resume and the NaN/Inf guard. Side concerns
(validation, sample grids, guards) are callbacks (:mod:`advgan.engine.callbacks`).

Schedule: a *round* (= one step of the last player, the generator) runs each player's ``steps`` in order.
Every step of the first player draws a fresh batch; the later players reuse the last batch drawn (as in
WGAN-GP with k critic steps, and pix2pix/AdvGAN with k = 1). An epoch is one pass over the loader.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from attacks.checkpoint import set_rng_state
from attacks.checks import check_positive_int, resolve_device

from . import distributed as D
from . import parallel
from .callbacks import Callback, GameHooks
from .checkpoint import Checkpointer, comparable_config, config_defaults
from .config import SCHEDULES, EngineConfig, TrainConfig
from .game import MinMaxGame, Player, call_legacy_loss, uses_nets
from .history import History
from .optim import autocast, make_optimizer, make_schedulers
from .state import TrainState

__all__ = ["MinMaxTrainer", "DivergenceError", "MinMaxGame", "Player", "TrainConfig", "EngineConfig", "SCHEDULES"]


class DivergenceError(RuntimeError):
    """A loss became NaN/Inf; training stopped and the last good checkpoint was kept."""


class MinMaxTrainer:
    """Runs a game. ``out_dir`` enables checkpoints and history files (and sample grids, via callbacks)."""

    def __init__(self, game: MinMaxGame, config: EngineConfig, out_dir: str | Path | None = None, *,
                 callbacks: Sequence[Callback] = ()) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig (or a model config deriving from it), got {type(config).__name__}.")
        self.game, self.config = game, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = D.local_device(resolve_device(config.device))
        self.dist = D.init_from_env(self.device)
        self.players = game.players()
        if not self.players:
            raise ValueError(f"{type(game).__name__}.players() returned no players.")
        unknown = [p.name for p in self.players if p.name not in game.nets]
        if unknown:
            raise ValueError(f"players {unknown} have no network in game.nets ({list(game.nets)}).")
        nets = dict(game.nets)
        for net in list(nets.values()) + list(game.frozen_modules()):
            net.to(self.device)
        if config.channels_last:
            for net in nets.values():
                net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizers = {p.name: make_optimizer(p, nets[p.name].parameters()) for p in self.players}
        ema = {p.name: copy.deepcopy(nets[p.name]).eval().requires_grad_(False) for p in self.players if p.ema and config.ema_decay}
        self.autocast, scaler = autocast(self.device, config.amp)
        scalers = {p.name: copy.deepcopy(scaler) for p in self.players} if scaler is not None else {}
        self.state = TrainState(nets, optimizers, ema, scalers=scalers)
        self.history = History()
        self.checkpointer = Checkpointer(self.out_dir)
        self.callbacks: list[Callback] = list(callbacks)
        self.metrics: dict[str, Any] = {}  #: the metrics of the epoch being closed (what earlier callbacks returned)
        self._wrapped: dict[str, nn.Module] = {}
        self._pending: list[tuple[int, int, dict[str, torch.Tensor]]] = []
        self._synced_step: tuple[int, int] | None = None
        self._callback_states: dict[str, Any] = {}

    # ------------------------------------------------------------------ views of the state (0.1 names)
    @property
    def raw_nets(self) -> dict[str, nn.Module]:
        return self.state.nets

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.state.optimizers

    @property
    def ema(self) -> dict[str, nn.Module]:
        return self.state.ema

    @property
    def schedulers(self) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
        return self.state.schedulers

    @property
    def scalers(self) -> dict[str, Any]:
        return self.state.scalers

    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpointer.path

    def has_checkpoint(self) -> bool:
        return self.checkpointer.exists()

    def ema_net(self, name: str) -> nn.Module:
        """The EMA copy of a player's network if EMA is on, else the network itself."""
        return self.state.ema.get(name, self.state.nets[name])

    def nets_for(self, player: str) -> dict[str, nn.Module]:
        """The networks a step of ``player`` sees: its own possibly wrapped (DDP / compiled), the others raw."""
        return {n: (self._wrapped.get(n, net) if n == player else net) for n, net in self.state.nets.items()}

    # ------------------------------------------------------------------ fit
    def fit(self, loader: DataLoader, epochs: int, *, resume: bool = True) -> History:
        """Train until ``epochs`` epochs are done (resuming from ``out_dir``'s checkpoint if present)."""
        check_positive_int(epochs, "epochs")
        if not isinstance(loader, DataLoader):
            raise TypeError(f"loader must be a torch DataLoader, got {type(loader).__name__}.")
        if len(loader) == 0:
            raise ValueError("the training loader is empty: the dataset has no items (or batch_size > size with drop_last).")
        loader = D.shard_loader(loader, seed=self.config.seed)
        rounds_per_epoch = math.ceil(len(loader) / self.players[0].steps)
        self.state.schedulers = make_schedulers(self.state.optimizers, self.config.lr_schedule, epochs * rounds_per_epoch)
        if resume and self.has_checkpoint():
            self.load_checkpoint()
        elif self.state.step == 0:
            torch.manual_seed(self.config.seed)
        callbacks = self._all_callbacks()
        for cb in callbacks:
            cb.on_fit_start(self)
        trainable = {p.name: self.state.nets[p.name] for p in self.players}
        self._wrapped = parallel.wrap(trainable, dist=self.dist, device=self.device, compile=self.config.compile,
                                      find_unused=self.config.ddp_find_unused)
        try:
            for net in self.state.nets.values():
                net.train()
            while self.state.epoch < epochs:
                self._run_epoch(loader, epochs, callbacks)
        finally:
            self._wrapped = {}
        return self.history

    def _all_callbacks(self) -> list[Callback]:
        extra = [GameHooks(self.game)] if not uses_nets(self.game.loss) and GameHooks.wanted(self.game) else []
        callbacks = list(self.callbacks) + extra
        names = [_callback_name(cb) for cb in callbacks]
        if len(set(names)) != len(names):
            raise ValueError(f"callbacks need distinct names (their checkpoint keys), got {names}.")
        for cb, name in zip(callbacks, names):
            if name in self._callback_states:
                cb.load_state_dict(self._callback_states.pop(name))
        return callbacks

    # ------------------------------------------------------------------ one epoch
    def _run_epoch(self, loader: DataLoader, epochs: int, callbacks: list[Callback]) -> None:
        st, cfg = self.state, self.config
        it = self._epoch_iterator(loader)
        for cb in callbacks:
            cb.on_epoch_start(self)
        t0 = time.perf_counter()
        bar = tqdm(total=len(loader), initial=st.batch_in_epoch, desc=f"{self.game.kind} epoch {st.epoch + 1}/{epochs}",
                   disable=not (cfg.progress and self.dist.is_main), leave=False, dynamic_ncols=True)
        done = False
        while not done:
            logs, stepped, done = self._round(it, bar)
            if not stepped:
                break
            st.step += 1
            self._update_ema()
            for s in st.schedulers.values():
                s.step()
            self._pending.append((st.step, st.epoch, logs))
            if st.step % cfg.log_every == 0:
                self._flush_logs()
                last = self.history.steps[-1]
                bar.set_postfix({k.replace("/loss", ""): f"{v:.3g}" for k, v in last.items() if k.endswith("/loss")})
            if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and not done:
                self.save_checkpoint(callbacks)
            for cb in callbacks:
                cb.on_step_end(self)
        bar.close()
        self._end_epoch(t0, callbacks)

    def _epoch_iterator(self, loader: DataLoader) -> Iterator[Any]:
        """The loader's iterator for the current epoch (on a mid-epoch resume: the same order, consumed batches skipped)."""
        st = self.state
        resume_rng = st.begin_epoch(_loader_generators(loader))
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(st.epoch)
        it: Iterator[Any] = iter(loader)
        for _ in range(st.batch_in_epoch):
            next(it)
        if resume_rng is not None:
            set_rng_state(resume_rng)
        return it

    def _round(self, it: Iterator[Any], bar: Any) -> tuple[dict[str, torch.Tensor], bool, bool]:
        """One round: each player's steps in order. Returns ``(logs, stepped, data_ran_out)``."""
        logs: dict[str, torch.Tensor] = {}
        batch = None
        stepped = False
        for pi, p in enumerate(self.players):
            for _ in range(p.steps):
                if pi == 0 or batch is None:
                    try:
                        batch = self._to_device(next(it))
                    except StopIteration:
                        return logs, stepped, True
                    self.state.batch_in_epoch += 1
                    bar.update(1)
                loss, parts = self._player_step(p, batch)
                stepped = True
                logs[f"{p.name}/loss"] = loss
                logs.update({f"{p.name}/{k}": v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                             for k, v in parts.items()})
        return logs, stepped, False

    def _end_epoch(self, t0: float, callbacks: list[Callback]) -> None:
        st = self.state
        self._flush_logs()
        st.end_epoch()
        self._sync_buffers()
        self.metrics = {}
        for cb in callbacks:
            self.metrics.update(cb.on_epoch_end(self) or {})
        self.history.epochs.append({"epoch": st.epoch, "step": st.step, "seconds": time.perf_counter() - t0, **self.metrics})
        self.save_checkpoint(callbacks)

    def _to_device(self, batch: Any) -> tuple[Any, ...]:
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        nb = self.device.type == "cuda"
        out = tuple(b.to(self.device, non_blocking=nb) if isinstance(b, torch.Tensor) else b for b in batch)
        if self.config.channels_last:
            out = tuple(b.contiguous(memory_format=torch.channels_last) if isinstance(b, torch.Tensor) and b.dim() == 4
                        and b.is_floating_point() else b for b in out)
        return out

    # ------------------------------------------------------------------ one player step
    def _activate(self, player: Player) -> None:
        """Only ``player`` trains; every other player is frozen (no parameter gradients), in its ``frozen_mode``."""
        for name, net in self.state.nets.items():
            net.requires_grad_(name == player.name)
        for p in self.players:
            if p.frozen_mode == "eval":
                self.state.nets[p.name].train(p.name == player.name)

    def _player_step(self, p: Player, batch: tuple[Any, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        self._activate(p)
        opt = self.state.optimizers[p.name]
        opt.zero_grad(set_to_none=True)
        with self.autocast:
            loss, parts = self._loss(p.name, batch)
        scaler = self.state.scalers.get(p.name)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        params = [q for q in self.state.nets[p.name].parameters() if q.grad is not None]
        if self.config.grad_clip:
            if scaler is not None:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return loss.detach().float(), parts

    def _loss(self, player: str, batch: tuple[Any, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        nets = self.nets_for(player)
        fn = self.game.loss
        if uses_nets(fn):
            return fn(player, nets, batch, self.state.step)
        return call_legacy_loss(self.game, fn, player, nets, batch, self.state.step)

    @torch.no_grad()
    def _update_ema(self) -> None:
        # warm-up: early on the average follows G closely, so G's random initial weights do not linger
        # (with a flat 0.999 they would still weigh 0.999**2000 = 13 % after 2,000 steps)
        if not self.state.ema:
            return
        t = self.state.step
        decay = min(self.config.ema_decay or 0.0, (1.0 + t) / (10.0 + t))
        for name, ema in self.state.ema.items():
            src = self.state.nets[name]
            for pe, ps in zip(ema.parameters(), src.parameters()):
                pe.lerp_(ps.detach(), 1.0 - decay)
            for be, bs in zip(ema.buffers(), src.buffers()):
                be.copy_(bs)

    # ------------------------------------------------------------------ logs, NaN guard
    def _flush_logs(self) -> None:
        """Move pending logs to the history (one host sync) and stop on a non-finite loss."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        keys = [(i, k) for i, (_, _, logs) in enumerate(pending) for k in logs]
        values = torch.stack([pending[i][2][k].float().reshape(()) for i, k in keys]).cpu().tolist() if keys else []
        recs: list[dict[str, Any]] = [{"step": s, "epoch": e} for s, e, _ in pending]
        for (i, k), v in zip(keys, values):
            if not math.isfinite(v):
                self._diverged(pending[i][0], k, v)
            recs[i][k] = v
        self.history.steps.extend(recs)

    def _diverged(self, step: int, key: str, value: float) -> None:
        ck = self.checkpoint_path
        kept = (f"the last good checkpoint is kept at {ck}" if ck and ck.is_file()
                else "no checkpoint was written (set an out_dir to keep one)")
        raise DivergenceError(
            f"training diverged at step {step} (epoch {self.state.epoch + 1}): {key} = {value}. Stopped; {kept}. "
            "Remedies: lower the learning rates (lr_g / lr_d), add a gradient penalty or spectral norm to D, use "
            "fewer discriminator steps (d_steps), set grad_clip, or turn amp off."
        )

    # ------------------------------------------------------------------ checkpoints
    def _sync_buffers(self) -> None:
        """Average floating buffers (BatchNorm running stats) of the nets and EMA copies across ranks (once per step)."""
        if not self.dist.active or self._synced_step == (self.state.epoch, self.state.step):
            return
        self._synced_step = (self.state.epoch, self.state.step)
        parallel.sync_buffers(list(self.state.nets.values()) + list(self.state.ema.values()), self.dist)

    def _config_for_check(self) -> dict[str, Any]:
        return comparable_config(self.config, self.game.config_dict())

    def save_checkpoint(self, callbacks: Sequence[Callback] | None = None) -> Path | None:
        """Write everything needed for exact resume into one safetensors file (atomic). Rank 0 writes."""
        self._flush_logs()
        if self.out_dir is None:
            return None
        self._sync_buffers()
        for name, net in self.state.nets.items():
            bad = [n for n, t in net.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
            if bad:
                self._diverged(self.state.step, f"{name} weights ({bad[0]})", float("nan"))
        if self.dist.is_main:
            tensors, meta = self.state.state_dict()
            cbs = self.callbacks if callbacks is None else callbacks
            self.checkpointer.save(tensors, meta, game_kind=self.game.kind, config=self._config_for_check(),
                                   history=self.history, callbacks={_callback_name(cb): cb.state_dict() for cb in cbs},
                                   world_size=self.dist.world_size)
        D.barrier()
        return self.checkpoint_path

    def load_checkpoint(self) -> None:
        """Restore the train state, the history and the callbacks' states from ``out_dir``."""
        loaded = self.checkpointer.load(game_kind=self.game.kind, config=self._config_for_check(),
                                        defaults=config_defaults(type(self.config)))
        same_world = loaded.meta.get("world_size", 1) == self.dist.world_size
        self.state.load_state_dict(loaded.tensors, loaded.meta, device=self.device, same_world=same_world)
        if loaded.history is not None:
            self.history = loaded.history
            self.history.steps = [r for r in self.history.steps if r["step"] <= self.state.step]
        self._callback_states = dict(loaded.callbacks)


def _callback_name(cb: Callback) -> str:
    return cb.name or type(cb).__name__


def _loader_generators(loader: DataLoader) -> list[torch.Generator]:
    gens: list[torch.Generator] = []
    for g in (getattr(loader, "generator", None), getattr(loader.sampler, "generator", None)):
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens
