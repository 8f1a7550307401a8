"""The engine contract of 0.2: the engine passes the networks to ``loss``, never writes into ``game.nets``,
runs frozen players in their ``frozen_mode``, and callbacks (with resumable state) carry the side concerns."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advgan import data
from advgan.engine import Callback, MinMaxGame, MinMaxTrainer, Player, TrainConfig


class Game(MinMaxGame):
    """A 1-D GAN that records what the engine hands to its loss."""

    kind = "contract"

    def __init__(self, cfg: TrainConfig, d_mode: str = "train") -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.d_mode = cfg, d_mode
        self.nets = {"D": nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 1)),
                     "G": nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))}
        self.raw = dict(self.nets)
        self.seen: list[tuple[str, bool, bool, bool]] = []

    def players(self):
        return [Player("D", self.cfg.lr_d, 1, frozen_mode=self.d_mode), Player("G", self.cfg.lr_g, 1)]

    def loss(self, player, nets, batch, step):
        # what the step sees: its own net (maybe wrapped), the others raw; game.nets untouched
        self.seen.append((player, nets[player] is self.raw[player], all(self.nets[k] is self.raw[k] for k in self.raw),
                          self.raw["D"].training))
        x = batch[0]
        z = torch.randn(x.shape[0], 2)
        if player == "D":
            return F.softplus(-nets["D"](x)).mean() + F.softplus(nets["D"](nets["G"](z).detach())).mean(), {}
        return F.softplus(-nets["D"](nets["G"](z))).mean(), {}


def _loader(n=128, bs=32):
    train, _ = data.load("gauss1d", n_train=n, mean=2.0, std=0.5)
    return data.loader(train, bs, shuffle=True, seed=0)


CFG = dict(progress=False, device="cpu")


def test_the_engine_passes_the_networks_and_never_writes_game_nets():
    cfg = TrainConfig(compile="aot_eager", **CFG)     # the active player's net is a compiled wrapper
    game = Game(cfg)
    MinMaxTrainer(game, cfg).fit(_loader(), epochs=1)
    assert game.seen and all(not own_is_raw for _, own_is_raw, _, _ in game.seen), "the step gets the wrapper"
    assert all(untouched for _, _, untouched, _ in game.seen), "game.nets holds the raw networks throughout"
    assert all(game.nets[k] is game.raw[k] for k in game.raw)
    plain = Game(TrainConfig(**CFG))
    MinMaxTrainer(plain, TrainConfig(**CFG)).fit(_loader(), epochs=1)
    assert all(own_is_raw for _, own_is_raw, _, _ in plain.seen)  # no wrapper: the raw network itself


def test_frozen_mode_eval_runs_a_waiting_player_in_eval_mode():
    game = Game(TrainConfig(**CFG), d_mode="eval")
    MinMaxTrainer(game, TrainConfig(**CFG)).fit(_loader(), epochs=1)
    modes = {(player, d_training) for player, _, _, d_training in game.seen}
    assert modes == {("D", True), ("G", False)}       # D trains in train mode, waits in eval mode
    default = Game(TrainConfig(**CFG))
    MinMaxTrainer(default, TrainConfig(**CFG)).fit(_loader(), epochs=1)
    assert {d for p, _, _, d in default.seen if p == "G"} == {True}   # "train": left as it is
    with pytest.raises(ValueError, match="frozen_mode"):
        Player("D", 1e-3, frozen_mode="frozen")


def test_a_direct_call_without_nets_uses_the_games_own_networks():
    game = Game(TrainConfig(**CFG))
    batch = (torch.ones(4, 1),)
    torch.manual_seed(1)
    a, _ = game.loss("G", batch, 0)                   # the 0.1 form
    torch.manual_seed(1)
    b, _ = game.loss("G", game.nets, batch, 0)
    assert torch.equal(a, b)


class Legacy(MinMaxGame):
    """A game written for advgan 0.1: ``loss(player, batch, step)`` reading ``self.nets``, epoch hook on the game."""

    kind = "legacy"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.nets = {"C": nn.Linear(1, 1)}

    def players(self):
        return [Player("C", 1e-2)]

    def loss(self, player, batch, step):
        return (self.nets["C"](batch[0]) - 1).pow(2).mean(), {}

    def on_epoch_end(self, trainer):
        return {"hook_epoch": trainer.state.epoch}


def test_a_0_1_game_still_trains_with_a_deprecation_warning():
    game = Legacy()
    w0 = game.nets["C"].weight.clone()
    with pytest.warns(DeprecationWarning, match=r"loss\(player, nets, batch, step\)"):
        hist = MinMaxTrainer(game, TrainConfig(**CFG)).fit(_loader(), epochs=2)
    assert not torch.equal(w0, game.nets["C"].weight)
    assert [e["hook_epoch"] for e in hist.epochs] == [1, 2]   # the 0.1 on_epoch_end hook still feeds the history


class Counter(Callback):
    """Counts rounds; sees what the callbacks before it returned for the epoch."""

    name = "counter"

    def __init__(self) -> None:
        self.rounds, self.seen_metrics, self.loaded = 0, [], None

    def on_step_end(self, trainer):
        self.rounds += 1

    def on_epoch_end(self, trainer):
        self.seen_metrics.append(dict(trainer.metrics))
        return {"rounds": self.rounds}

    def state_dict(self):
        return {"rounds": self.rounds, "t": torch.tensor([float(self.rounds)])}

    def load_state_dict(self, state):
        self.loaded = state
        self.rounds = int(state["rounds"])


class First(Callback):
    name = "first"

    def on_epoch_end(self, trainer):
        return {"first": 1.0}


def test_callbacks_record_metrics_in_order_and_resume_with_the_run(tmp_path):
    cfg = TrainConfig(**CFG)
    counter = Counter()
    hist = MinMaxTrainer(Game(cfg), cfg, tmp_path, callbacks=[First(), counter]).fit(_loader(), epochs=1)
    assert hist.epochs[-1]["rounds"] == 4 and hist.epochs[-1]["first"] == 1.0
    assert counter.seen_metrics == [{"first": 1.0}]  # trainer.metrics: what earlier callbacks returned
    again = Counter()
    hist = MinMaxTrainer(Game(cfg), cfg, tmp_path, callbacks=[First(), again]).fit(_loader(), epochs=2)
    assert again.loaded is not None and again.loaded["rounds"] == 4 and torch.equal(again.loaded["t"], torch.tensor([4.0]))
    assert [e["rounds"] for e in hist.epochs] == [4, 8]
    with pytest.raises(ValueError, match="distinct names"):
        MinMaxTrainer(Game(cfg), cfg, callbacks=[Counter(), Counter()]).fit(_loader(), epochs=1)


def test_no_deprecation_warning_for_library_models(mnist):
    from advgan import GAN, GANConfig

    pts, _ = data.load("ring8", n_train=256)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        GAN(GANConfig(z_dim=2, g_width=8, d_width=8, batch_size=64, **CFG), (2,)).fit(pts, 1)


class Bilinear(MinMaxGame):
    """``min_a max_b  a * b * mean(x)`` with b as a's gradient-reversal partner (one loss, one backward)."""

    kind = "reversal"

    def __init__(self, players=None, use_b=True) -> None:
        self.nets = {"A": nn.Linear(1, 1, bias=False), "B": nn.Linear(1, 1, bias=False)}
        for net in self.nets.values():
            nn.init.constant_(net.weight, 1.0)
        self._players, self.use_b, self.calls = players, use_b, []

    def players(self):
        return self._players or [Player("A", 0.1, 1, optimizer="sgd", momentum=0.0),
                                 Player("B", 0.1, 1, optimizer="sgd", momentum=0.0, ascent_of="A")]

    def loss(self, player, nets, batch, step):
        self.calls.append((player, nets["B"].weight.requires_grad))
        b = nets["B"].weight.sum() if self.use_b else torch.tensor(1.0)
        return nets["A"].weight.sum() * b * batch[0].mean(), {}


def test_a_gradient_reversal_partner_ascends_its_hosts_loss_from_the_same_backward():
    x = torch.full((4, 1), 2.0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    game = Bilinear()
    MinMaxTrainer(game, TrainConfig(**CFG)).fit(loader, epochs=1)
    a, b = (game.nets[k].weight.item() for k in "AB")
    # one step from a = b = 1 on L = 2ab: a descends (dL/da = 2b = 2), b ascends (dL/db = 2a = 2), same lr 0.1
    assert a == pytest.approx(0.8) and b == pytest.approx(1.2)
    assert game.calls == [("A", True)], "the partner has no loss call of its own and trains in its host's"
    unused = Bilinear(use_b=False)  # a partner that takes no part in a loss is left as it is
    MinMaxTrainer(unused, TrainConfig(**CFG)).fit(loader, epochs=1)
    assert unused.nets["B"].weight.item() == 1.0 and unused.nets["A"].weight.item() == pytest.approx(0.8)


@pytest.mark.parametrize("players, match", [
    ([Player("A", 0.1), Player("B", 0.1, ascent_of="C")], "not a stepping player"),
    ([Player("B", 0.1, ascent_of="A"), Player("A", 0.1)], "listed first"),
    ([Player("A", 0.1), Player("C", 0.1, ascent_of="A"), Player("B", 0.1, ascent_of="C")], "not a stepping player"),
])
def test_a_partner_of_no_stepping_player_is_refused_before_any_work(players, match):
    game = Bilinear(players=players)
    game.nets["C"] = nn.Linear(1, 1)
    before = {k: v.weight.detach().clone() for k, v in game.nets.items()}
    with pytest.raises(ValueError, match=match):
        MinMaxTrainer(game, TrainConfig(**CFG))
    assert all(torch.equal(before[k], v.weight) for k, v in game.nets.items())
    with pytest.raises(ValueError, match="ascent_of"):
        Player("A", 0.1, ascent_of="A")
