"""FoolboxAttack: any foolbox 3 attack by name, under our protocol; agreement with our PGD."""
from __future__ import annotations

import pytest
import torch
from test_attacks import assert_same_state, snapshot, success, trainable

from attacks import PGD, FoolboxAttack, foolbox_attack_names, make_attack, random_targets


def test_names_and_registry():
    names = foolbox_attack_names()
    for n in ("LinfPGD", "FGSM", "L2CarliniWagnerAttack", "LinfDeepFoolAttack", "BoundaryAttack"):
        assert n in names
    atk = make_attack("foolbox:LinfPGD", eps=0.3)
    assert isinstance(atk, FoolboxAttack) and atk.norm == "linf" and atk.eps == 0.3
    assert FoolboxAttack("L2CarliniWagnerAttack", eps=1.0).norm == "l2"
    with pytest.raises(ValueError, match="LinfPGD"):  # the message lists the valid names
        FoolboxAttack("NoSuchAttack", eps=0.3)
    with pytest.raises(ValueError, match="Did you mean 'LinfPGD'"):
        FoolboxAttack("linfpgd", eps=0.3)
    with pytest.raises(TypeError, match="signature"):
        FoolboxAttack("LinfPGD", eps=0.3, stepz=3)
    with pytest.raises(ValueError, match="norm="):
        FoolboxAttack("L1PGD", eps=0.3)
    assert FoolboxAttack("L1PGD", eps=1.0, norm="l2").norm == "l2"
    with pytest.raises(ValueError, match="8/255"):
        FoolboxAttack("LinfPGD", eps=8)


@pytest.mark.parametrize("name,eps,kw", [
    ("LinfPGD", 0.1, {"steps": 5}),
    ("FGSM", 0.1, {}),
    ("L2CarliniWagnerAttack", 2.0, {"steps": 10, "binary_search_steps": 2}),
    ("LinfDeepFoolAttack", 0.1, {"steps": 10}),
])
def test_protocol_promises(name, eps, kw, trained_tiny_clf, small_batch):
    clf = trained_tiny_clf
    x, y = small_batch[0][:16], small_batch[1][:16]
    x0 = x.clone()
    atk = FoolboxAttack(name, eps=eps, **kw)
    with trainable(clf):
        state = snapshot(clf)
        x_adv = atk(clf, x, y)
        assert clf.training and all(p.requires_grad for p in clf.parameters())
        assert all(p.grad is None for p in clf.parameters()), "foolbox's backward must not reach the parameters"
        assert_same_state(clf, state)
    assert torch.equal(x, x0)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool(atk.threat.contains(x, x_adv).all())


def test_our_pgd_agrees_with_foolbox(trained_tiny_clf, mnist):
    clf = trained_tiny_clf
    x, y = mnist[1].images[:200], mnist[1].labels[:200]
    eps, steps = 0.1, 20
    ours = success(clf, x, y, PGD(eps, steps=steps, seed=0)(clf, x, y))
    theirs = success(clf, x, y, FoolboxAttack("LinfPGD", eps=eps, steps=steps, rel_stepsize=2.5 / steps, seed=0)(clf, x, y))
    assert 0.15 < ours < 0.95  # a budget where the comparison means something
    assert abs(ours - theirs) <= 0.06, (ours, theirs)


def test_targeted_and_errors(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    t = random_targets(y, 10, torch.Generator().manual_seed(2))
    adv = FoolboxAttack("LinfPGD", eps=0.2, steps=20, rel_stepsize=0.125, seed=0)(clf, x, y, target=t)
    assert success(clf, x, y, adv, t) > 0.5
    state = snapshot(clf)
    with pytest.raises(ValueError, match="does not support targeted"):
        FoolboxAttack("FGSM", eps=0.1)(clf, x, y, target=t)
    with pytest.raises(ValueError, match="does not support targeted"):
        FoolboxAttack("LinfDeepFoolAttack", eps=0.1)(clf, x, y, target=t)
    with pytest.raises(ValueError, match="must match"):
        FoolboxAttack("FGSM", eps=0.1)(clf, x, y[:3])
    assert_same_state(clf, state)


def test_seeded_and_decision_based(trained_tiny_clf, small_batch):
    clf = trained_tiny_clf
    x, y = small_batch[0][:8], small_batch[1][:8]
    a = FoolboxAttack("LinfPGD", eps=0.1, steps=3, seed=7)
    assert torch.equal(a(clf, x, y), a(clf, x, y))
    b = FoolboxAttack("BoundaryAttack", eps=3.0, steps=20, init_attack=None)
    x_adv = b(clf, x, y)
    assert bool(b.threat.contains(x, x_adv).all())
