"""The one min-max engine that trains every GAN in the library (GAN, cGAN, pix2pix, AdvGAN, ...).

A model plugs in as a :class:`MinMaxGame`: it names its trainable networks (``nets``), lists its
players in update order with their step counts (``players()``, e.g. ``[D x k, G x 1]``) and returns
each player's loss (``loss(name, batch, step)``). The engine owns everything else: the schedule, freezing
the other players, mixed precision, gradient clipping, EMA of generator weights, LR schedules,
progress, history, periodic samples, DDP, checkpoints with exact resume, and the NaN/Inf guard.

Schedule: a *round* (= one generator step) runs each player's ``steps`` in order. Every step of the
first player draws a fresh batch; the later players reuse the last batch drawn (as in WGAN-GP with
k critic steps, and pix2pix/AdvGAN with k = 1). An epoch is one pass over the loader.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from attacks.checkpoint import rng_state, set_rng_state
from attacks.checks import check_choice, check_positive_int, resolve_device

from . import distributed as D
from .checkpoint import _RUN_FIELDS, CHECKPOINT, HISTORY, CheckpointMixin, _State  # noqa: F401
from .history import History
from .optim import OPTIMIZERS, _autocast, make_optimizer  # noqa: F401

SCHEDULES = ("constant", "linear", "cosine")


class DivergenceError(RuntimeError):
    """A loss became NaN/Inf; training stopped and the last good checkpoint was kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the min-max engine; every model config inherits these fields."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    d_steps: int = 1                   #: discriminator steps per generator step (WGAN: 5)
    batch_size: int = 64
    lr_schedule: str = "constant"      #: constant | linear (to 0) | cosine
    amp: bool = False                  #: autocast (bf16 where supported, else fp16 + GradScaler)
    grad_clip: float | None = None     #: max gradient norm per player step
    ema_decay: float | None = None     #: EMA of generator weights (e.g. 0.999), warmed up as min(decay, (1+t)/(10+t))
    checkpoint_every: int = 0          #: generator steps between checkpoints (0: end of each epoch only)
    sample_every: int = 0              #: generator steps between sample grids (0: end of each epoch)
    log_every: int = 10                #: generator steps between host syncs for logging / NaN guard
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    channels_last: bool = False        #: nets and 4-D image batches in channels-last memory format (GPU speed-up)
    compile: bool | str = False        #: torch.compile the trainable nets (True: inductor, or a backend name)
    ddp_find_unused: bool = False      #: DDP find_unused_parameters (a net with parameters its loss does not use)

    def __post_init__(self) -> None:
        for name in ("lr_g", "lr_d"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive learning rate, got {v!r}.")
        if len(tuple(self.betas)) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}.")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        check_positive_int(self.d_steps, "d_steps")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.log_every, "log_every")
        check_positive_int(self.checkpoint_every, "checkpoint_every", minimum=0)
        check_positive_int(self.sample_every, "sample_every", minimum=0)
        check_positive_int(self.seed, "seed", minimum=0)
        check_choice(self.lr_schedule, "lr_schedule", SCHEDULES)
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}.")
        if self.ema_decay is not None and not (0 < self.ema_decay < 1):
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}.")
        if not isinstance(self.compile, (bool, str)) or self.compile == "":
            raise TypeError(f"compile must be True/False or a torch.compile backend name, got {self.compile!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Player:
    """One trainable network's place in the schedule."""

    name: str
    lr: float
    steps: int = 1
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    ema: bool = False
    optimizer: str = "adam"            #: adam | adamw (decoupled weight decay) | sgd (with ``momentum``)
    momentum: float = 0.9              #: SGD momentum (Nesterov when > 0); ignored by adam / adamw


class MinMaxGame:
    """What a model provides to the engine. ``nets`` maps player names to their networks."""

    kind: str = "game"
    nets: dict[str, nn.Module]

    def players(self) -> list[Player]:
        raise NotImplementedError

    def loss(self, player: str, batch: tuple[torch.Tensor, ...], step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss for ``player`` to minimise on ``batch`` and a dict of named components to log."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        return {}

    def frozen_modules(self) -> list[nn.Module]:
        """Non-trainable modules the game uses (e.g. a target classifier); moved to the device, never trained."""
        return []

    def sample_grid(self, path: Path, trainer: MinMaxTrainer) -> None:
        """Optional: write a PNG of current samples."""

    def on_epoch_end(self, trainer: MinMaxTrainer) -> dict[str, float]:
        """Optional: validation metrics to record after each epoch."""
        return {}


class MinMaxTrainer(CheckpointMixin):
    """Runs the min-max game. ``out_dir`` enables checkpoints, history files and sample grids."""

    def __init__(self, game: MinMaxGame, config: TrainConfig, out_dir: str | Path | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig (or a model config inheriting it), got {type(config).__name__}.")
        self.game = game
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = D.local_device(resolve_device(config.device))
        self.dist = D.init_from_env(self.device)
        self.players = game.players()
        if not self.players:
            raise ValueError(f"{type(game).__name__}.players() returned no players.")
        unknown = [p.name for p in self.players if p.name not in game.nets]
        if unknown:
            raise ValueError(f"players {unknown} have no network in game.nets ({list(game.nets)}).")
        self.state = _State()
        self.history = History()
        self.raw_nets: dict[str, nn.Module] = dict(game.nets)
        for net in list(self.raw_nets.values()) + list(game.frozen_modules()):
            net.to(self.device)
        if config.channels_last:
            for net in self.raw_nets.values():
                net.to(memory_format=torch.channels_last)
        self.optimizers = {
            p.name: make_optimizer(p, self.raw_nets[p.name].parameters())
            for p in self.players
        }
        self.ema: dict[str, nn.Module] = {}
        if config.ema_decay:
            for p in self.players:
                if p.ema:
                    self.ema[p.name] = copy.deepcopy(self.raw_nets[p.name]).eval().requires_grad_(False)
        self.autocast, scaler = _autocast(self.device, config.amp)
        self.scalers = {p.name: copy.deepcopy(scaler) for p in self.players} if scaler is not None else {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self._ddp: dict[str, nn.Module] = {}
        self._epoch_rng: dict[str, torch.Tensor] = {}
        self._loader_gens: list[torch.Generator] = []          # saved so a resume at an epoch boundary
        self._loader_resume: dict[str, torch.Tensor] = {}      # reshuffles exactly as the uninterrupted run
        self._pending: list[tuple[int, int, dict[str, torch.Tensor]]] = []
        self._resumed_world: int | None = None
        self._synced_step: tuple[int, int] | None = None

    # ------------------------------------------------------------------ public
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT if self.out_dir else None

    def has_checkpoint(self) -> bool:
        return bool(self.checkpoint_path and self.checkpoint_path.is_file())

    def fit(self, loader: DataLoader, epochs: int, *, resume: bool = True) -> History:
        """Train until ``epochs`` epochs are done (resuming from ``out_dir``'s checkpoint if present)."""
        check_positive_int(epochs, "epochs")
        if not isinstance(loader, DataLoader):
            raise TypeError(f"loader must be a torch DataLoader, got {type(loader).__name__}.")
        if len(loader) == 0:
            raise ValueError("the training loader is empty: the dataset has no items (or batch_size > size with drop_last).")
        loader = D.shard_loader(loader, seed=self.config.seed)
        first = self.players[0].steps
        rounds_per_epoch = math.ceil(len(loader) / first)
        self._make_schedulers(epochs * rounds_per_epoch)
        if resume and self.has_checkpoint():
            self.load_checkpoint()
        elif self.state.step == 0:
            torch.manual_seed(self.config.seed)
        self._wrap_ddp()
        try:
            for net in self.raw_nets.values():
                net.train()
            while self.state.epoch < epochs:
                self._run_epoch(loader, epochs)
        finally:
            self._unwrap_ddp()
        return self.history

    def ema_net(self, name: str) -> nn.Module:
        """The EMA copy of a player's network if EMA is on, else the network itself."""
        return self.ema.get(name, self.raw_nets[name])

    # ------------------------------------------------------------------ internals
    def _make_schedulers(self, total_rounds: int) -> None:
        kind = self.config.lr_schedule
        total = max(1, total_rounds)

        def factor(r: int) -> float:
            if kind == "linear":
                return max(0.0, 1.0 - r / total)
            if kind == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(r, total) / total))
            return 1.0

        self.schedulers = {n: torch.optim.lr_scheduler.LambdaLR(o, factor) for n, o in self.optimizers.items()}

    def _wrap_ddp(self) -> None:
        """DDP-wrap each player's net (and/or torch.compile it); frozen modules are never wrapped.

        Buffers are not broadcast on every forward (a GAN calls D several times per step, and the frozen
        players run the raw module); :meth:`_sync_buffers` averages them at epoch ends and checkpoints."""
        trainable = [p.name for p in self.players]
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            for name in trainable:
                net = self.raw_nets[name]
                was = [q.requires_grad for q in net.parameters()]
                net.requires_grad_(True)  # DDP registers hooks only for parameters that require grad now
                self._ddp[name] = DDP(net, device_ids=ids, find_unused_parameters=self.config.ddp_find_unused,
                                      **D.no_forward_buffer_sync())
                for q, r in zip(net.parameters(), was):
                    q.requires_grad_(r)
        if self.config.compile:
            backend = "inductor" if self.config.compile is True else self.config.compile
            for name in trainable:
                self._ddp[name] = torch.compile(self._ddp.get(name, self.raw_nets[name]), backend=backend)

    def _sync_buffers(self) -> None:
        """Average floating buffers (BatchNorm running stats) of the nets and EMA copies across ranks."""
        if not self.dist.active or self._synced_step == (self.state.epoch, self.state.step):
            return
        self._synced_step = (self.state.epoch, self.state.step)
        for net in list(self.raw_nets.values()) + list(self.ema.values()):
            for b in net.buffers():
                if b.is_floating_point():
                    D.all_reduce_sum(b.data).div_(self.dist.world_size)

    def _unwrap_ddp(self) -> None:
        self.game.nets.update(self.raw_nets)
        self._ddp.clear()

    def _activate(self, name: str) -> None:
        """Only ``name`` trains; every other player is frozen (no parameter gradients)."""
        for n, net in self.raw_nets.items():
            net.requires_grad_(n == name)
            self.game.nets[n] = self._ddp.get(n, net) if n == name else net

    def _loader_generators(self, loader: DataLoader) -> list[torch.Generator]:
        gens = []
        for g in (getattr(loader, "generator", None), getattr(loader.sampler, "generator", None)):
            if isinstance(g, torch.Generator) and all(g is not h for h in gens):
                gens.append(g)
        return gens

    def _run_epoch(self, loader: DataLoader, epochs: int) -> None:
        st, cfg = self.state, self.config
        gens = self._loader_generators(loader)
        self._loader_gens = gens
        loader_resume, self._loader_resume = self._loader_resume, {}
        if st.batch_in_epoch and self._epoch_rng:      # resuming mid-epoch: replay the epoch's order
            resume_rng = rng_state()
            set_rng_state({k[len("epoch."):]: v for k, v in self._epoch_rng.items() if k.startswith("epoch.rng")})
            for i, g in enumerate(gens):
                if f"epoch.gen{i}" in self._epoch_rng:
                    g.set_state(self._epoch_rng[f"epoch.gen{i}"])
        else:
            st.batch_in_epoch = 0
            resume_rng = None
            for i, g in enumerate(gens):
                if f"loader.gen{i}" in loader_resume:
                    g.set_state(loader_resume[f"loader.gen{i}"])
            self._epoch_rng = {f"epoch.{k}": v for k, v in rng_state().items()}
            self._epoch_rng.update({f"epoch.gen{i}": g.get_state() for i, g in enumerate(gens)})
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(st.epoch)
        it: Iterator = iter(loader)
        for _ in range(st.batch_in_epoch):
            next(it)
        if resume_rng is not None:
            set_rng_state(resume_rng)
        t0 = time.perf_counter()
        bar = tqdm(total=len(loader), initial=st.batch_in_epoch, desc=f"{self.game.kind} epoch {st.epoch + 1}/{epochs}",
                   disable=not (cfg.progress and self.dist.is_main), leave=False, dynamic_ncols=True)
        done = False
        while not done:
            logs: dict[str, torch.Tensor] = {}
            batch = None
            stepped = False
            for pi, p in enumerate(self.players):
                for _ in range(p.steps):
                    if pi == 0 or batch is None:
                        try:
                            batch = self._to_device(next(it))
                        except StopIteration:
                            done = True
                            break
                        st.batch_in_epoch += 1
                        bar.update(1)
                    loss, parts = self._player_step(p, batch)
                    stepped = True
                    logs[f"{p.name}/loss"] = loss
                    logs.update({f"{p.name}/{k}": v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for k, v in parts.items()})
                if done:
                    break
            if not stepped:
                break
            st.step += 1
            self._update_ema()
            for s in self.schedulers.values():
                s.step()
            self._pending.append((st.step, st.epoch, logs))
            if st.step % cfg.log_every == 0:
                self._flush_logs()
                last = self.history.steps[-1]
                bar.set_postfix({k.replace("/loss", ""): f"{v:.3g}" for k, v in last.items() if k.endswith("/loss")})
            if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and not done:
                self.save_checkpoint()
            if cfg.sample_every and st.step % cfg.sample_every == 0:
                self._samples()
        bar.close()
        self._flush_logs()
        st.epoch += 1
        st.batch_in_epoch = 0
        self._sync_buffers()
        metrics = self.game.on_epoch_end(self) or {}
        self.history.epochs.append({"epoch": st.epoch, "step": st.step, "seconds": time.perf_counter() - t0, **metrics})
        if not cfg.sample_every:
            self._samples()
        self.save_checkpoint()

    def _to_device(self, batch: Any) -> tuple[torch.Tensor, ...]:
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        nb = self.device.type == "cuda"
        out = tuple(b.to(self.device, non_blocking=nb) if isinstance(b, torch.Tensor) else b for b in batch)
        if self.config.channels_last:
            out = tuple(b.contiguous(memory_format=torch.channels_last) if isinstance(b, torch.Tensor) and b.dim() == 4
                        and b.is_floating_point() else b for b in out)
        return out

    def _player_step(self, p: Player, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        self._activate(p.name)
        opt = self.optimizers[p.name]
        opt.zero_grad(set_to_none=True)
        with self.autocast:
            loss, parts = self.game.loss(p.name, batch, self.state.step)
        scaler = self.scalers.get(p.name)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        params = [q for q in self.raw_nets[p.name].parameters() if q.grad is not None]
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

    @torch.no_grad()
    def _update_ema(self) -> None:
        # warm-up: early on the average follows G closely, so G's random initial weights do not linger
        # (with a flat 0.999 they would still weigh 0.999**2000 = 13 % after 2,000 steps)
        if not self.ema:
            return
        t = self.state.step
        decay = min(self.config.ema_decay, (1.0 + t) / (10.0 + t))
        for name, ema in self.ema.items():
            src = self.raw_nets[name]
            for pe, ps in zip(ema.parameters(), src.parameters()):
                pe.lerp_(ps.detach(), 1.0 - decay)
            for be, bs in zip(ema.buffers(), src.buffers()):
                be.copy_(bs)

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
        kept = f"the last good checkpoint is kept at {ck}" if ck and ck.is_file() else "no checkpoint was written (set an out_dir to keep one)"
        raise DivergenceError(
            f"training diverged at step {step} (epoch {self.state.epoch + 1}): {key} = {value}. Stopped; {kept}. "
            "Remedies: lower the learning rates (lr_g / lr_d), add a gradient penalty or spectral norm to D, use "
            "fewer discriminator steps (d_steps), set grad_clip, or turn amp off."
        )

    def _samples(self) -> None:
        if self.out_dir is None or not self.dist.is_main:
            return
        path = self.out_dir / "samples" / f"step_{self.state.step:07d}.png"
        with torch.no_grad():
            for net in self.raw_nets.values():
                net.eval()
            try:
                self.game.sample_grid(path, self)
            finally:
                for net in self.raw_nets.values():
                    net.train()
