"""FAB / FAB-T: the exact hyperplane-in-box projection, a cross-check against the reference
(pyautoattack's FABAttack_PT), the threat model, seeds, targets and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attacks import assert_same_state, snapshot

from attacks import FAB, FABT, ThreatModel, make_attack
from attacks.fab import project_hyperplane_box

N, STEPS = 16, 20


def robust(clf, x, y, adv) -> float:
    with torch.no_grad():
        return float((clf(adv).argmax(1) == y).float().mean())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_is_the_minimal_norm_point_of_hyperplane_and_box(norm):
    optimize = pytest.importorskip("scipy.optimize")
    g = torch.Generator().manual_seed(3)
    n, d = 6, 10
    p, w, r = torch.rand(n, d, generator=g), torch.randn(n, d, generator=g), torch.randn(n, generator=g) * 1.5
    delta = project_hyperplane_box(p, w, r, (0.0, 1.0), norm)
    assert bool(((p + delta) >= -1e-6).all() and ((p + delta) <= 1 + 1e-6).all())
    for i in range(n):
        P, W, R = p[i].double().numpy(), w[i].double().numpy(), float(r[i])
        box = [(-P[j], 1 - P[j]) for j in range(d)]
        got = delta[i].double().numpy()
        if norm == "linf":  # LP: min t s.t. |d_j| <= t, <w, d> = r, d in the box
            a_ub = np.vstack([np.hstack([np.eye(d), -np.ones((d, 1))]), np.hstack([-np.eye(d), -np.ones((d, 1))])])
            res = optimize.linprog(np.r_[np.zeros(d), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[W, 0.0][None],
                                   b_eq=[R], bounds=box + [(0, None)])
            best, mine = (res.fun if res.success else None), np.abs(got).max()
        else:
            res = optimize.minimize(lambda z: z @ z, np.zeros(d), bounds=box,
                                    constraints=[{"type": "eq", "fun": lambda z, W=W, R=R: W @ z - R}])
            best, mine = (np.linalg.norm(res.x) if res.success else None), np.linalg.norm(got)
        if best is None:  # the box does not reach the hyperplane: every coordinate saturated towards it
            assert abs(W @ got) < abs(R)
            continue
        assert W @ got == pytest.approx(R, abs=1e-4)
        assert mine == pytest.approx(best, abs=1e-4)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_fab_t_matches_the_reference(norm, eps, trained_tiny_clf, small_batch):
    fab_pt = pytest.importorskip("pyautoattack.fab_pt")
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:N], y[:N]
    ours = FABT(eps, norm, steps=STEPS, n_target_classes=3)(clf, x, y)
    ref = fab_pt.FABAttack_PT(clf, norm={"linf": "Linf", "l2": "L2"}[norm], n_iter=STEPS, eps=eps, targeted=True,
                              n_target_classes=3, seed=0).perturb(x, y)
    r_ours, r_ref = robust(clf, x, y, ours), robust(clf, x, y, ref)
    assert r_ours < robust(clf, x, y, x)  # it fools some inputs
    assert abs(r_ours - r_ref) <= 2 / N, (r_ours, r_ref)
    assert bool(ThreatModel(norm, eps).contains(x, ours).all())


def test_untargeted_fab_fools_and_reports_norms(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:N], y[:N]
    atk = FAB(0.15, "linf", steps=STEPS)
    adv = atk(clf, x, y)
    assert bool(ThreatModel("linf", 0.15).contains(x, adv).all())
    with torch.no_grad():
        fooled = clf(adv).argmax(1) != y
    assert atk.last_norms is not None
    inside = atk.last_norms <= 0.15
    assert bool(fooled[inside].all()) and int(inside.sum()) >= N // 4
    # a reported norm is the norm of the returned example
    got = (adv - x).flatten(1).abs().amax(1)
    assert torch.allclose(got[inside], atk.last_norms[inside], atol=1e-6)


def test_seeded_restarts_repeat_and_target_is_reached(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:8], y[:8]
    a = FAB(0.3, "l2", steps=5, restarts=2, seed=1)(clf, x, y)
    b = FAB(0.3, "l2", steps=5, restarts=2, seed=1)(clf, x, y)
    assert torch.equal(a, b)
    target = (y + 1) % 10
    adv = FAB(0.5, "linf", steps=STEPS)(clf, x, y, target=target)
    with torch.no_grad():
        hit = clf(adv).argmax(1) == target
    assert int(hit.sum()) >= 4


def test_registry_and_bad_input(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    fab_t = make_attack("fab-t", eps=0.3, steps=3)
    assert isinstance(fab_t, FABT) and fab_t.targeted and make_attack("fab").targeted is False
    with pytest.raises(ValueError, match="unknown norm"):
        FAB(0.3, "l1")
    with pytest.raises(ValueError, match="8/255"):
        FABT(8, "linf")
    with pytest.raises(ValueError, match="eta"):
        FAB(0.3, eta=0.5)
    before, mode, xs = snapshot(clf), clf.training, x[:4].clone()
    with pytest.raises(ValueError, match="n_target_classes=10 .* 10 classes"):
        FABT(0.3, n_target_classes=10)(clf, xs, y[:4])
    assert_same_state(clf, before)
    assert clf.training == mode and torch.equal(xs, x[:4])
