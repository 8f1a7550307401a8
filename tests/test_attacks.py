"""Native attacks (FGSM, PGD, C&W, noise): the Attack protocol's promises, strength ordering, errors."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from attacks import CW, FGSM, PGD, Attack, RandomNoise, make_attack, random_targets


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"


@contextlib.contextmanager
def trainable(model: nn.Module):
    """Put the (shared, frozen) classifier in train mode with requires_grad=True; refreeze after."""
    model.unfreeze()
    try:
        yield model
    finally:
        model.freeze()
        for p in model.parameters():
            p.grad = None


class Counting(nn.Module):
    """Counts forward calls and the number of images pushed through the wrapped classifier."""

    def __init__(self, clf: nn.Module) -> None:
        super().__init__()
        self.module = clf
        self.calls = 0
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += x.shape[0]
        return self.module(x)


def success(clf, x, y, x_adv, target=None) -> float:
    with torch.no_grad():
        ok = clf(x).argmax(1) == y
        p = clf(x_adv).argmax(1)
    hit = (p == target) if target is not None else (p != y)
    return float((hit & ok).sum()) / float(ok.sum())


ATTACKS = {
    "fgsm": lambda: FGSM(0.1),
    "fgsm-rs": lambda: FGSM(0.1, random_start=True, seed=0),
    "fgsm-l2": lambda: FGSM(1.5, norm="l2"),
    "pgd": lambda: PGD(0.1, steps=5, seed=0),
    "pgd-l2-margin": lambda: PGD(1.5, norm="l2", steps=5, loss="margin", seed=0),
    "pgd-es-restarts": lambda: PGD(0.1, steps=5, restarts=2, early_stop=True, seed=0),
    "cw": lambda: CW(1.0, steps=10, binary_search_steps=2),
    "cw-linf": lambda: CW(0.1, norm="linf", steps=10, binary_search_steps=2),
    "noise": lambda: RandomNoise(0.1, seed=0),
    "noise-l2-ball": lambda: RandomNoise(2.0, norm="l2", kind="ball", seed=0),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_protocol_promises(name, trained_tiny_clf, small_batch):
    clf = trained_tiny_clf
    x, y = small_batch[0][:32], small_batch[1][:32]
    x_before = x.clone()
    atk = ATTACKS[name]()
    with trainable(clf):
        state = snapshot(clf)
        x_adv = atk(clf, x, y)
        assert clf.training, "train mode must be restored"
        assert all(p.requires_grad for p in clf.parameters()), "requires_grad flags must be restored"
        assert all(p.grad is None for p in clf.parameters()), "no gradient may reach the parameters"
        assert_same_state(clf, state)
    assert torch.equal(x, x_before)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert bool(atk.threat.contains(x, x_adv).all())
    assert not torch.equal(x_adv, x), "the attack must actually perturb"


def test_pgd_stronger_than_fgsm_and_noise(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    s_noise = success(clf, x, y, RandomNoise(0.1, seed=0)(clf, x, y))
    s_fgsm = success(clf, x, y, FGSM(0.1)(clf, x, y))
    s_pgd = success(clf, x, y, PGD(0.1, steps=10, seed=0)(clf, x, y))
    assert s_pgd >= s_fgsm > s_noise
    assert s_pgd > 0.2


def test_l2_pgd_and_cw_find_small_l2_examples(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:32], y[:32]
    adv = CW(3.0, steps=30, binary_search_steps=3)(clf, x, y)
    assert success(clf, x, y, adv) > 0.7
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= 3.0 + 1e-4
    assert success(clf, x, y, PGD(2.0, norm="l2", steps=10, seed=0)(clf, x, y)) > 0.5


def test_targeted_attacks_hit_the_target(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    t = random_targets(y, 10, torch.Generator().manual_seed(1))
    assert success(clf, x, y, PGD(0.2, steps=20, seed=0)(clf, x, y, target=t), t) > 0.5  # chance is 1/9
    xs, ys, ts = x[:16], y[:16], t[:16]
    assert success(clf, xs, ys, CW(4.0, steps=100, binary_search_steps=2)(clf, xs, ys, target=ts), ts) > 0.5
    assert success(clf, x, y, FGSM(0.2)(clf, x, y, target=t), t) > 0.15


def test_early_stop_same_success_less_work(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    plain, early = Counting(clf), Counting(clf)
    adv_p = PGD(0.15, steps=10, restarts=2, seed=0)(plain, x, y)
    adv_e = PGD(0.15, steps=10, restarts=2, seed=0, early_stop=True)(early, x, y)
    s_p, s_e = success(clf, x, y, adv_p), success(clf, x, y, adv_e)
    assert s_e >= s_p
    assert s_p > 0.3
    assert early.images < 0.8 * plain.images, (early.images, plain.images)
    assert plain.images == 2 * 11 * x.shape[0]  # restarts * (steps + final check) * batch


def test_pgd_keeps_best_over_restarts_and_is_seeded(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    a1 = PGD(0.1, steps=3, seed=3)(clf, x, y)
    assert torch.equal(a1, PGD(0.1, steps=3, seed=3)(clf, x, y))
    s1 = success(clf, x, y, a1)
    s3 = success(clf, x, y, PGD(0.1, steps=3, restarts=3, seed=3)(clf, x, y))
    assert s3 >= s1
    n1, n2 = RandomNoise(0.1, seed=5), RandomNoise(0.1, seed=5)
    assert torch.equal(n1(clf, x, y), n2(clf, x, y))


def test_step_size_follows_eps_and_registry():
    p = PGD(0.3, steps=40)
    assert p.step_size == pytest.approx(2.5 * 0.3 / 40)
    q = p.with_eps(0.1)
    assert q.step_size == pytest.approx(2.5 * 0.1 / 40) and q.eps == 0.1 and p.eps == 0.3
    assert isinstance(make_attack("pgd", eps=0.2, steps=3), PGD)
    assert isinstance(make_attack("fgsm", eps=0.2), FGSM)
    assert isinstance(make_attack("cw", eps=1.0), CW)
    assert isinstance(make_attack("noise", eps=0.2), RandomNoise)
    assert all(issubclass(type(make_attack(n, eps=0.2)), Attack) for n in ("pgd", "fgsm", "noise"))


def test_bad_inputs_give_clear_errors(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    state = snapshot(clf)
    with pytest.raises(ValueError, match="8/255"):
        PGD(eps=8)
    with pytest.raises(ValueError, match="must match"):
        PGD(0.1, steps=2)(clf, x, y[:10])
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        FGSM(0.1)(clf, x, torch.full_like(y, 12))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        FGSM(0.1)(clf, bad, y)
    with pytest.raises(TypeError, match="255"):
        FGSM(0.1)(clf, (x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="unknown attack"):
        make_attack("pgdd", eps=0.1)
    with pytest.raises(ValueError, match="different class"):
        PGD(0.1, steps=2)(clf, x, y, target=y)
    with pytest.raises(ValueError, match="step_size"):
        PGD(0.1, step_size=-1.0)
    with pytest.raises(ValueError, match="loss"):
        PGD(0.1, loss="hinge")
    with pytest.raises(ValueError, match="steps"):
        PGD(0.1, steps=0)
    with pytest.raises(TypeError, match="seed"):
        RandomNoise(0.1, seed="a")
    assert_same_state(clf, state)


def test_attacks_work_under_no_grad(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:8], y[:8]
    with torch.no_grad():
        for atk in (FGSM(0.1), PGD(0.1, steps=2), CW(1.0, steps=3, binary_search_steps=1), RandomNoise(0.1)):
            x_adv = atk(clf, x, y)
            assert not torch.equal(x_adv, x), type(atk).__name__
