"""PGD's training mode (keep="last", generate), MI-FGSM and DI options; exact projections; C&W/ThreatModel checks."""
from __future__ import annotations

import pytest
import torch
from test_attacks import assert_same_state, snapshot, success, trainable

from attacks import CW, PGD, ThreatModel
from attacks.diversity import diverse_input


@pytest.mark.parametrize("norm,eps,steps,step", [("linf", 0.3, 3, None), ("l2", 2.0, 3, None), ("linf", 0.1, 1, 0.125)])
def test_keep_last_is_the_training_pgd_bit_for_bit(norm, eps, steps, step, trained_tiny_clf, small_batch):
    from defenses.methods import pgd_train_examples

    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:32], y[:32]
    step = step if step is not None else 2.5 * eps / steps
    torch.manual_seed(11)
    old = pgd_train_examples(clf, x, y, ThreatModel(norm, eps), steps=steps, step_size=step)
    after_old = torch.rand(3)
    torch.manual_seed(11)
    new = PGD(eps, norm, steps=steps, step_size=step, keep="last", seed=None).generate(clf, x, y)
    assert torch.equal(old, new)
    assert torch.equal(torch.rand(3), after_old)  # the same draws from the global RNG
    assert not torch.equal(new, x) and bool(ThreatModel(norm, eps).contains(x, new).all())


def test_generate_freezes_projects_and_restores(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    with trainable(clf):
        state = snapshot(clf)
        out = PGD(0.1, steps=2, keep="last", seed=0).generate(clf, x, y)
        assert clf.training and all(p.requires_grad and p.grad is None for p in clf.parameters())
        assert_same_state(clf, state)
    assert not out.requires_grad and bool(ThreatModel("linf", 0.1).contains(x, out).all())
    # seeded: repeatable; keep="last" returns the last iterate, keep="best" the best one (stronger or equal)
    last = PGD(0.1, steps=4, keep="last", seed=3)(clf, x, y)
    assert torch.equal(last, PGD(0.1, steps=4, keep="last", seed=3)(clf, x, y))
    assert success(clf, x, y, PGD(0.1, steps=4, seed=3)(clf, x, y)) >= success(clf, x, y, last)


def test_momentum_and_diversity_change_the_result_and_stay_in_the_ball(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:32], y[:32]
    plain = PGD(0.1, steps=5, seed=0)(clf, x, y)
    mi = PGD(0.1, steps=5, seed=0, momentum=1.0)(clf, x, y)
    di = PGD(0.1, steps=5, seed=0, diversity=1.0)(clf, x, y)
    both = PGD(0.1, steps=5, seed=0, momentum=1.0, diversity=0.5, keep="last")(clf, x, y)
    threat = ThreatModel("linf", 0.1)
    for adv in (mi, di, both):
        assert not torch.equal(adv, plain)
        assert bool(threat.contains(x, adv).all()) and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(di, PGD(0.1, steps=5, seed=0, diversity=1.0)(clf, x, y))  # DI's draws are seeded
    assert success(clf, x, y, mi) > 0.2 and success(clf, x, y, di) > 0.2  # still attacks
    l2 = PGD(1.5, "l2", steps=4, seed=0, momentum=0.9, diversity=1.0)(clf, x, y)
    assert bool(ThreatModel("l2", 1.5).contains(x, l2).all())
    assert "momentum=1.0" in repr(PGD(0.1, momentum=1.0)) and PGD(0.1, diversity=0.5).describe()["diversity"] == 0.5


def test_diverse_input_resizes_pads_and_keeps_the_gradient():
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    assert diverse_input(x, 0.0, g) is x
    z = diverse_input(x, 1.0, g)
    assert z.shape == x.shape and not torch.equal(z, x)
    (gx,) = torch.autograd.grad(z.sum(), [x])
    assert gx.abs().sum() > 0
    small = torch.rand(2, 3, 8, 8)
    assert diverse_input(small, 1.0, g).shape == small.shape  # even 8x8 (sklearn digits) has room


def test_pgd_option_errors():
    with pytest.raises(ValueError, match="keep='last'.*restarts=1"):
        PGD(0.1, keep="last", restarts=2)
    with pytest.raises(ValueError, match="keep='last'.*early_stop=False"):
        PGD(0.1, keep="last", early_stop=True)
    with pytest.raises(ValueError, match="unknown keep 'first'; valid choices: best, last"):
        PGD(0.1, keep="first")
    with pytest.raises(ValueError, match="momentum must be >= 0"):
        PGD(0.1, momentum=-1.0)
    with pytest.raises(ValueError, match="momentum must be a finite number"):
        PGD(0.1, momentum=float("inf"))
    with pytest.raises(ValueError, match=r"diversity must be in \[0, 1\]"):
        PGD(0.1, diversity=1.5)
    with pytest.raises(ValueError, match="step_size must be a finite number"):
        PGD(0.1, step_size=float("inf"))


def test_projection_is_exact_and_idempotent():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 16, 16, generator=g)
    for norm, eps in (("linf", 8 / 255), ("linf", 0.3), ("l2", 0.5), ("l2", 1e-3), ("l2", 5.0)):
        t = ThreatModel(norm, eps)
        z = x + 0.5 * torch.randn(x.shape, generator=g)
        p = t.project(x, z)
        assert torch.equal(t.project(x, p), p), (norm, eps)
        assert bool(t.contains(x, p, tol=0.0).all()), (norm, eps)
        inside = x + t.random_delta(x, g) * 0.5
        inside = inside.clamp(0, 1)
        assert torch.equal(t.project(x, inside), inside)  # points already inside are returned bit-identical


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"initial_const": float("inf")}, ValueError, "initial_const must be a finite number"),
    ({"initial_const": 1e12}, ValueError, r"initial_const must be <= 1e\+10"),
    ({"initial_const": 0.0}, ValueError, "initial_const must be a positive number"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number"),
    ({"kappa": float("inf")}, ValueError, "kappa must be a finite number"),
    ({"bounds": (0.0, float("inf"))}, ValueError, "bounds must be finite"),
    ({"bounds": (1.0, 0.0)}, ValueError, "low < high"),
    ({"bounds": ("0", 1)}, TypeError, "pair of numbers"),
])
def test_cw_and_threat_model_refuse_unsafe_numbers(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        CW(1.0, **kwargs)
    if "bounds" in kwargs:
        with pytest.raises(exc, match=msg):
            ThreatModel("l2", 1.0, kwargs["bounds"])


def test_cw_at_the_largest_constant_stays_finite(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    adv = CW(2.0, initial_const=1e10, steps=3, binary_search_steps=4)(clf, x[:8], y[:8])
    assert bool(torch.isfinite(adv).all())
