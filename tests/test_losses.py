"""The GAN loss family against hand-computed values, and the theory of the original GAN, executable.

- every loss on fixed logits vs numbers computed from its definition;
- the gradient penalty uses per-sample gradient norms (a case where the batch norm gives another value);
- the minimax generator loss saturates where D confidently rejects fakes, the non-saturating one does not
  (central finite differences, no autograd);
- a discriminator trained by the engine approaches D* = p_data / (p_data + p_g) for fixed 1-D Gaussians;
- the value of the game at D* is −log 4 when p_g = p_data (and −log 4 + 2·JSD otherwise).
"""
from __future__ import annotations

import math

import pytest
import torch
from advgan.gan import batch_loader
from torch import nn

from advgan import data, losses, metrics
from advgan.engine import MinMaxGame, MinMaxTrainer, Player, TrainConfig

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _mean(xs):
    return sum(xs) / len(xs)


def _bce_d() -> float:  # -log D(x) - log(1 - D(G(z))), from the definition
    return _mean([-math.log(_sig(r)) for r in REAL.tolist()]) + _mean([-math.log(1 - _sig(f)) for f in FAKE.tolist()])


HAND = {
    "minimax": (_bce_d(), _mean([math.log(1 - _sig(f)) for f in FAKE.tolist()])),
    "non_saturating": (_bce_d(), _mean([-math.log(_sig(f)) for f in FAKE.tolist()])),
    "lsgan": (0.5 * _mean([1.0, 4.0]) + 0.5 * _mean([0.25, 9.0]), 0.5 * _mean([0.25, 16.0])),   # 3.5625, 4.0625
    "hinge": (_mean([0.0, 2.0]) + _mean([1.5, 0.0]), 1.25),                                     # 1.75, 1.25
    "wasserstein": (-1.25 - 0.5, 1.25),
}


@pytest.mark.parametrize("kind", list(HAND))
def test_losses_match_hand_computed_values(kind):
    d_ref, g_ref = HAND[kind]
    assert losses.d_loss(kind, REAL, FAKE).item() == pytest.approx(d_ref, rel=1e-6, abs=1e-6)
    assert losses.g_loss(kind, FAKE).item() == pytest.approx(g_ref, rel=1e-6, abs=1e-6)


def test_loss_names_and_aliases():
    assert losses.resolve("ns") == "non_saturating" and losses.resolve("wgan") == "wasserstein"
    with pytest.raises(ValueError, match="valid: minimax, non_saturating, lsgan, hinge, wasserstein"):
        losses.d_loss("bce", REAL, FAKE)


def _half_sq_norm(x: torch.Tensor) -> torch.Tensor:
    """Critic 0.5·‖x‖² per sample: its input gradient is x itself, so norms differ per sample."""
    return 0.5 * x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_uses_per_sample_norms():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.5]])          # gradient norms 5 and 0.5
    gp = losses.gradient_penalty(_half_sq_norm, x, x.clone()).item()   # real == fake: x_hat = x for any alpha
    per_sample = ((5 - 1) ** 2 + (0.5 - 1) ** 2) / 2     # 8.125
    batch_norm = (math.sqrt(25 + 0.25) - 1) ** 2         # 16.2: what a batch-level norm would give
    assert gp == pytest.approx(per_sample, rel=1e-6)
    assert abs(gp - batch_norm) > 1.0


def test_gradient_penalty_interpolates_and_is_differentiable():
    lin = nn.Linear(4, 1)
    real, fake = torch.randn(8, 4), torch.randn(8, 4)
    gp = losses.gradient_penalty(lambda t: lin(t).squeeze(1), real, fake)
    w_norm = lin.weight.norm().item()                    # a linear critic has gradient = w everywhere
    assert gp.item() == pytest.approx((w_norm - 1) ** 2, rel=1e-5)
    gp.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        losses.gradient_penalty(lin, real, fake[:4])


def test_r1_and_l1():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    assert losses.r1_penalty(_half_sq_norm, x).item() == pytest.approx((25 + 0.25) / 2)
    assert losses.l1(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.0])).item() == pytest.approx(0.75)


def _num_grad(f, theta: float, h: float = 1e-3) -> float:
    return (f(theta + h) - f(theta - h)) / (2 * h)


def test_minimax_generator_loss_saturates_where_nonsaturating_does_not():
    # D(x) = sigmoid(a·x + b) with a fixed D; the generator emits x = θ. At θ = -5 D rejects confidently.
    a, b = 2.0, 0.0

    def g_loss(kind):
        return lambda th: losses.g_loss(kind, torch.tensor([a * th + b], dtype=torch.float64)).item()

    theta_rejected, theta_uncertain = -5.0, 0.0
    assert _sig(a * theta_rejected + b) < 1e-4
    gm = _num_grad(g_loss("minimax"), theta_rejected)
    gn = _num_grad(g_loss("non_saturating"), theta_rejected)
    assert abs(gm) < 1e-3, f"minimax gradient should vanish, got {gm}"
    assert abs(gn) > 1.0, f"non-saturating gradient should stay large, got {gn}"
    assert abs(gn) / abs(gm) > 1e3
    # both push the generator the same way (towards larger D(G(z))): negative gradient of the loss wrt θ
    assert gm < 0 and gn < 0
    # where D is unsure both give the same slope a·½
    assert _num_grad(g_loss("minimax"), theta_uncertain) == pytest.approx(_num_grad(g_loss("non_saturating"), theta_uncertain), rel=1e-4)


def test_game_value_at_optimum_is_minus_log4():
    assert losses.game_value(torch.zeros(5), torch.zeros(5)).item() == pytest.approx(-math.log(4))
    grid = torch.linspace(-12, 12, 4001)
    assert metrics.game_value_at_optimum((0.0, 1.0), (0.0, 1.0), grid) == pytest.approx(-math.log(4), abs=1e-6)
    assert metrics.game_value_at_optimum((0.0, 1.0), (2.0, 1.0), grid) > -math.log(4) + 0.1   # + 2·JSD > 0


class _FixedGeneratorGame(MinMaxGame):
    """Only D plays: real ~ p_data (the loader), fake ~ p_g = N(mu_g, s_g²) (fixed)."""

    kind = "d-star"

    def __init__(self, mu_g: float, s_g: float):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.nets = {"D": nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))}
        self.mu_g, self.s_g = mu_g, s_g

    def players(self):
        return [Player("D", 1e-2, 1, (0.9, 0.999))]

    def loss(self, player, nets, batch, step):
        x = batch[0]
        fake = self.mu_g + self.s_g * torch.randn_like(x)
        return losses.d_loss("non_saturating", nets["D"](x).squeeze(1), nets["D"](fake).squeeze(1)), {}


def test_engine_trained_discriminator_approaches_optimal_discriminator():
    train, _ = data.load("gauss1d", n_train=8_000, mean=0.0, std=1.0)
    game = _FixedGeneratorGame(mu_g=1.5, s_g=1.0)
    cfg = TrainConfig(batch_size=256, progress=False, device="cpu", lr_schedule="linear", seed=0)
    MinMaxTrainer(game, cfg).fit(batch_loader(train, 256), epochs=5)
    d_star = metrics.optimal_discriminator((0.0, 1.0), (1.5, 1.0))
    grid = torch.linspace(-2.0, 3.5, 111)
    with torch.no_grad():
        d = torch.sigmoid(game.nets["D"](grid[:, None]).squeeze(1)).double()
    err = (d - d_star(grid)).abs().max().item()
    assert err < 0.06, f"max |D - D*| = {err:.3f} on [-2, 3.5]"
    # and D* itself: 1/2 where the densities cross (x = 0.75), → 1 far left, → 0 far right
    assert d_star(torch.tensor([0.75])).item() == pytest.approx(0.5)
    assert d_star(torch.tensor([-6.0])).item() > 0.99 and d_star(torch.tensor([8.0])).item() < 0.01
