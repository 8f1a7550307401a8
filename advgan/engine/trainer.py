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

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from attacks.base import autograd_enabled, normal_tensor
from attacks.checkpoint import CheckpointError, set_rng_state
from attacks.checks import check_positive_int, explain_data_error, resolve_device, unpack_pair
from attacks.devices import device_snapshot, restore_devices, restored_on_error

from . import distributed as D
from . import parallel
from .callbacks import Callback, GameHooks
from .checkpoint import CHECKPOINT, HISTORY, Checkpointer, comparable_config
from .config import SCHEDULES, EngineConfig, TrainConfig
from .datacheck import BatchGuard
from .fingerprint import data_fingerprint, modules_fingerprint
from .game import MinMaxGame, Player, call_legacy_loss, check_partners, uses_nets
from .history import History
from .interrupt import SigintStop, TrainingInterrupted, interrupted_error
from .loaders import check_map_style, loader_generators
from .optim import apply_step, autocast, make_optimizer, make_schedulers
from .rundir import RunLock, check_out_dir, run_dir_of
from .state import TrainState
from .steplog import DivergenceError, divergence_error, to_records

__all__ = ["MinMaxTrainer", "DivergenceError", "TrainingInterrupted", "MinMaxGame", "Player", "TrainConfig", "EngineConfig", "SCHEDULES"]


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
        self._partners = check_partners(type(game).__name__, self.players)
        self.checkpointer = Checkpointer(self.out_dir)
        if self.out_dir is not None:  # before any work: a folder that can never receive the checkpoint is refused now
            check_out_dir(run_dir_of(self.out_dir))  # the run folder first (the engine may keep run/checkpoint)
            check_out_dir(self.out_dir, files=(CHECKPOINT, HISTORY))
            self.checkpointer.check()
        nets = dict(game.nets)
        #: the caller's fixed models (e.g. AdvGAN's target) as they were: put back if training fails or is interrupted
        self._frozen_snapshots = [device_snapshot(m) for m in game.frozen_modules()]
        # a move that fails half-way (out of memory, a device that vanished) puts the caller's models back
        with restored_on_error(*nets.values(), *game.frozen_modules()):
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
        self._fingerprint: dict[str, Any] = {}
        self._sigint = SigintStop(enabled=not self.dist.active)
        self.callbacks: list[Callback] = list(callbacks)
        self.metrics: dict[str, Any] = {}  #: the metrics of the epoch being closed (what earlier callbacks returned)
        self._wrapped: dict[str, nn.Module] = {}
        self._pending: list[tuple[int, int, dict[str, torch.Tensor]]] = []
        self._synced_step: tuple[int, int] | None = None
        self._callback_states: dict[str, Any] = {}
        self._guard: BatchGuard | None = None

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
        active = {player, *(q.name for q in self._partners.get(player, ()))}
        return {n: (self._wrapped.get(n, net) if n in active else net) for n, net in self.state.nets.items()}

    # ------------------------------------------------------------------ fit
    def fit(self, loader: DataLoader, epochs: int, *, resume: bool = True) -> History:
        """Train until ``epochs`` epochs are done (resuming from ``out_dir``'s checkpoint if present)."""
        check_positive_int(epochs, "epochs")
        if not isinstance(loader, DataLoader):
            raise TypeError(f"loader must be a torch DataLoader, got {type(loader).__name__}.")
        check_map_style(loader)
        if len(loader) == 0:
            raise ValueError("the training loader is empty: the dataset has no items (or batch_size > size with drop_last).")
        lock = (RunLock(run_dir_of(self.out_dir)) if self.out_dir is not None and self.dist.is_main
                else contextlib.nullcontext())
        with lock:  # the only writer of out_dir until the run ends
            if self.out_dir is not None:
                self._fingerprint = {"data": data_fingerprint(loader.dataset),
                                     "fixed_models": modules_fingerprint(list(self.game.frozen_modules()))}
            loader = D.shard_loader(loader, seed=self.config.seed)
            rounds_per_epoch = math.ceil(len(loader) / self.players[0].steps)
            self.state.schedulers = make_schedulers(self.state.optimizers, self.config.lr_schedule, epochs * rounds_per_epoch)
            if resume and self.has_checkpoint():
                self.load_checkpoint()
            elif self.state.step == 0:
                torch.manual_seed(self.config.seed)
            callbacks = self._all_callbacks()
            spec = self.game.batch_spec()
            self._guard = BatchGuard(spec, self.device) if spec is not None else None
            for cb in callbacks:
                cb.on_fit_start(self)
            trainable = {p.name: self.state.nets[p.name] for p in self.players}
            self._wrapped = parallel.wrap(trainable, dist=self.dist, device=self.device, compile=self.config.compile,
                                          find_unused=self.config.ddp_find_unused)
            try:
                with self._sigint:
                    for net in self.game.frozen_modules():
                        net.to(self.device)  # again, if a failed fit put them back
                    for net in self.state.nets.values():
                        net.train()
                    with autograd_enabled():  # training works when called under torch.inference_mode() / no_grad()
                        while self.state.epoch < epochs:
                            self._run_epoch(loader, epochs, callbacks)
                            if self._sigint.requested:
                                raise interrupted_error(self.state.step, self.state.epoch, self.checkpoint_path)  # a KeyboardInterrupt
            except BaseException:
                for snap in self._frozen_snapshots:  # the caller's target back on its device, with its own tensors
                    restore_devices(snap)
                raise
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
            self.state.update_ema(self.config.ema_decay or 0.0)
            for s in st.schedulers.values():
                s.step()
            self._pending.append((st.step, st.epoch, logs))
            if st.step % cfg.log_every == 0:
                self._flush_logs()
                last = self.history.steps[-1]
                bar.set_postfix({k.replace("/loss", ""): f"{v:.3g}" for k, v in last.items() if k.endswith("/loss")})
            if not done and (self._sigint.requested or (cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0)):
                self.save_checkpoint(callbacks)  # on Ctrl-C: the same safe point as a periodic checkpoint
            for cb in callbacks:
                cb.on_step_end(self)
            if self._sigint.requested and not done:
                bar.close()
                raise interrupted_error(self.state.step, self.state.epoch, self.checkpoint_path)  # a KeyboardInterrupt
        bar.close()
        self._end_epoch(t0, callbacks)

    def _epoch_iterator(self, loader: DataLoader) -> Iterator[Any]:
        """The loader's iterator for the current epoch (on a mid-epoch resume: the same order, consumed batches skipped)."""
        st = self.state
        resume_rng = st.begin_epoch(loader_generators(loader))
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
            if p.ascent_of is not None:  # a gradient-reversal partner steps inside its host's steps
                continue
            for _ in range(p.steps):
                if pi == 0 or batch is None:
                    try:
                        with explain_data_error(f"batch {self.state.batch_in_epoch + 1} of epoch {self.state.epoch + 1}"):
                            raw = next(it)
                    except StopIteration:
                        return logs, stepped, True
                    batch = self._to_device(raw)
                    if self._guard is not None:
                        batch = self._guard(batch, epoch=self.state.epoch, index=self.state.batch_in_epoch)
                    elif isinstance(batch, Mapping):
                        batch = unpack_pair(batch, f"batch {self.state.batch_in_epoch + 1}")
                    batch = tuple(normal_tensor(b) if isinstance(b, torch.Tensor) else b for b in batch)
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

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        nb = self.device.type == "cuda"
        if isinstance(batch, Mapping):  # a dict batch ({"image": ..., "label": ...}): the guard picks the items
            return {k: v.to(self.device, non_blocking=nb) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = tuple(b.to(self.device, non_blocking=nb) if isinstance(b, torch.Tensor) else b for b in batch)
        if self.config.channels_last:
            out = tuple(b.contiguous(memory_format=torch.channels_last) if isinstance(b, torch.Tensor) and b.dim() == 4
                        and b.is_floating_point() else b for b in out)
        return out

    # ------------------------------------------------------------------ one player step
    def _activate(self, player: Player) -> None:
        """Only ``player`` (and its gradient-reversal partners) train; every other player is frozen (no parameter
        gradients), in its ``frozen_mode``."""
        active = {player.name, *(q.name for q in self._partners.get(player.name, ()))}
        for name, net in self.state.nets.items():
            net.requires_grad_(name in active)
        for p in self.players:
            if p.frozen_mode == "eval":
                self.state.nets[p.name].train(p.name in active)

    def _player_step(self, p: Player, batch: tuple[Any, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        self._activate(p)
        partners = [q.name for q in self._partners.get(p.name, ())]
        opts = {n: self.state.optimizers[n] for n in [p.name, *partners]}
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        with self.autocast:
            loss, parts = self._loss(p.name, batch)
        scaler = self.state.scalers.get(p.name)  # the host's scaler scales the one backward: it steps every optimizer
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        apply_step(p.name, opts, self.state.nets, scaler, self.config.grad_clip)
        return loss.detach().float(), parts

    def _loss(self, player: str, batch: tuple[Any, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        nets = self.nets_for(player)
        fn = self.game.loss
        if uses_nets(fn):
            return fn(player, nets, batch, self.state.step)
        return call_legacy_loss(self.game, fn, player, nets, batch, self.state.step)

    # ------------------------------------------------------------------ logs, NaN guard
    def _flush_logs(self) -> None:
        """Move pending logs to the history (one host sync) and stop on a non-finite loss or a bad batch."""
        if self._guard is not None:
            self._guard.raise_if_bad()
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        recs, bad = to_records(pending)
        if bad is not None:
            self._diverged(*bad)
        self.history.steps.extend(recs)

    def _diverged(self, step: int, key: str, value: float) -> None:
        raise divergence_error(step, self.state.epoch, key, value, self.checkpoint_path)

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
                                   world_size=self.dist.world_size, fingerprint=self._fingerprint)
        D.barrier()
        return self.checkpoint_path

    def load_checkpoint(self) -> None:
        """Restore the train state, the history and the callbacks' states from ``out_dir``."""
        loaded = self.checkpointer.load(game_kind=self.game.kind, config=self._config_for_check(),
                                         fingerprint=self._fingerprint)
        try:
            same_world = loaded.meta.get("world_size", 1) == self.dist.world_size
            self.state.load_state_dict(loaded.tensors, loaded.meta, device=self.device, same_world=same_world)
            if loaded.history is not None:
                self.history = loaded.history
                self.history.steps = [r for r in self.history.steps if r["step"] <= self.state.step]
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            what = f"the key {e.args[0]!r} is missing" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise CheckpointError(f"{self.checkpoint_path}: the training metadata is malformed ({what}); it was edited or "
                                  "written by another program. Delete it to start over, or train into a new out_dir.") from None
        self._callback_states = dict(loaded.callbacks)


def _callback_name(cb: Callback) -> str:
    return cb.name or type(cb).__name__

