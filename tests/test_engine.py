"""The min-max engine: schedule, freezing, exact resume, NaN guard, EMA, config checks."""
from __future__ import annotations

from typing import Annotated

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advgan import data
from advgan.config import RUN
from advgan.engine import DivergenceError, MinMaxGame, MinMaxTrainer, Player, TrainConfig
from attacks.checkpoint import CheckpointError


class ToyGame(MinMaxGame):
    """1-D GAN on N(2, 0.5^2) with a few counters to check the schedule."""

    kind = "toy"

    def __init__(self, cfg: TrainConfig, blow_up_at: int | None = None):
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.nets = {"D": nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1)),
                     "G": nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))}
        self.calls: list[str] = []
        self.grad_seen: list[tuple[str, bool]] = []
        self.blow_up_at = blow_up_at

    def players(self):
        return [Player("D", self.cfg.lr_d, self.cfg.d_steps), Player("G", self.cfg.lr_g, 1, ema=True)]

    def loss(self, player, nets, batch, step):
        self.calls.append(player)
        x = batch[0]
        z = torch.randn(x.shape[0], 2)
        if player == "D":
            fake = nets["G"](z).detach()
            loss = F.softplus(-nets["D"](x)).mean() + F.softplus(nets["D"](fake)).mean()
        else:
            loss = F.softplus(-nets["D"](nets["G"](z))).mean()
            self.grad_seen.append(("D", any(p.requires_grad for p in nets["D"].parameters())))
        if self.blow_up_at is not None and step >= self.blow_up_at:
            loss = loss * float("nan")
        return loss, {}


def _loader(n=256, bs=32, seed=0):
    train, _ = data.load("gauss1d", n_train=n, mean=2.0, std=0.5)
    return data.loader(train, bs, shuffle=True, seed=seed)


def _weights(nets):
    return {f"{n}.{k}": v.clone() for n, m in nets.items() for k, v in m.state_dict().items()}


def test_schedule_k_discriminator_steps_and_freezing():
    cfg = TrainConfig(d_steps=3, progress=False, device="cpu")
    game = ToyGame(cfg)
    hist = MinMaxTrainer(game, cfg).fit(_loader(n=256, bs=32), epochs=1)
    # 8 batches: rounds D,D,D,G + D,D,D,G + D,D (ends when data runs out)
    assert game.calls == ["D", "D", "D", "G", "D", "D", "D", "G", "D", "D"]
    assert all(flag is False for _, flag in game.grad_seen), "D must be frozen during the G step"
    assert len(hist.steps) == 3 and hist.steps[-1]["step"] == 3


def test_exact_resume_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(progress=False, device="cpu", checkpoint_every=3, ema_decay=0.9, lr_schedule="linear")
    ref = ToyGame(cfg)
    ref_trainer = MinMaxTrainer(ref, cfg)
    ref_trainer.fit(_loader(), epochs=2)

    # interrupted run: stop in the middle of epoch 2 by raising from the game after a checkpoint
    class Stop(Exception):
        pass

    game = ToyGame(cfg)
    trainer = MinMaxTrainer(game, cfg, tmp_path)
    orig = game.loss

    def loss(player, nets, batch, step):
        if step == 13 and player == "D":  # checkpoints at steps 3,6,9,12 and end of epoch 1 (8)
            raise Stop
        return orig(player, nets, batch, step)

    game.loss = loss
    with pytest.raises(Stop):
        trainer.fit(_loader(), epochs=2)
    resumed = ToyGame(cfg)
    t2 = MinMaxTrainer(resumed, cfg, tmp_path)
    hist = t2.fit(_loader(), epochs=2)
    a, b = _weights(ref.nets), _weights(resumed.nets)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in hist.steps] == list(range(1, 17))
    for pe, pr in zip(t2.ema_net("G").parameters(), ref_trainer.ema_net("G").parameters()):
        assert torch.equal(pe, pr)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = TrainConfig(progress=False, device="cpu", checkpoint_every=2, log_every=1)
    game = ToyGame(cfg, blow_up_at=5)
    trainer = MinMaxTrainer(game, cfg, tmp_path)
    with pytest.raises(DivergenceError, match=r"step 6.*D/loss.*lower the learning rates"):
        trainer.fit(_loader(), epochs=1)
    ck = tmp_path / "checkpoint.safetensors"
    before = ck.read_bytes()
    # the kept checkpoint is finite and resumable
    fresh = ToyGame(cfg)
    t2 = MinMaxTrainer(fresh, cfg, tmp_path)
    t2.load_checkpoint()
    assert t2.state.step == 4
    assert all(torch.isfinite(v).all() for v in _weights(fresh.nets).values())
    assert ck.read_bytes() == before


def test_resume_refuses_other_config(tmp_path):
    cfg = TrainConfig(progress=False, device="cpu")
    MinMaxTrainer(ToyGame(cfg), cfg, tmp_path).fit(_loader(), epochs=1)
    other = TrainConfig(progress=False, device="cpu", lr_d=1e-3)
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="lr_d"):
        MinMaxTrainer(ToyGame(other), other, tmp_path).fit(_loader(), epochs=2)
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("kwargs, msg", [
    ({"d_steps": 0}, "d_steps"), ({"lr_g": -1.0}, "lr_g"), ({"lr_schedule": "step"}, "lr_schedule"),
    ({"ema_decay": 1.5}, "ema_decay"), ({"betas": (0.5, 1.2)}, "betas"),
])
def test_bad_train_config(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kwargs)


def test_empty_loader_and_bad_epochs():
    cfg = TrainConfig(progress=False, device="cpu")
    tr = MinMaxTrainer(ToyGame(cfg), cfg)
    with pytest.raises(ValueError, match="epochs"):
        tr.fit(_loader(), epochs=0)
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 1)), batch_size=4)
    with pytest.raises(ValueError, match="empty"):
        tr.fit(empty, epochs=1)


def test_ema_warm_up_forgets_random_init():
    cfg = TrainConfig(progress=False, device="cpu", ema_decay=0.999)
    game = ToyGame(cfg)
    init = [p.clone() for p in game.nets["G"].parameters()]
    trainer = MinMaxTrainer(game, cfg)
    trainer.fit(_loader(n=640, bs=32), epochs=3)          # 60 steps
    ema, g = trainer.ema_net("G"), game.nets["G"]
    # the average sits near the trained weights, not near the random initialisation
    for pe, pg, p0 in zip(ema.parameters(), g.parameters(), init):
        assert (pe - pg).norm() < (pe - p0).norm()


def test_resume_may_extend_epochs(tmp_path):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class WithEpochs(TrainConfig):
        epochs: Annotated[int, RUN] = 1    # a run field: resuming may extend the run

    cfg = WithEpochs(progress=False, device="cpu", epochs=1)
    MinMaxTrainer(ToyGame(cfg), cfg, tmp_path).fit(_loader(), epochs=1)
    more = WithEpochs(progress=False, device="cpu", epochs=2)
    t = MinMaxTrainer(ToyGame(more), more, tmp_path)
    t.fit(_loader(), epochs=2)
    assert t.state.epoch == 2 and t.history.steps[-1]["step"] == 16
