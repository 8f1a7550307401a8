"""Square: a cross-check against the reference (pyautoattack's SquareAttack), the query accounting
(only still-robust inputs are queried), the threat model, seeds, the p schedule and bad input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks import Square, ThreatModel, make_attack, random_targets
from attacks.square import p_schedule

N, QUERIES = 32, 150


def robust(clf, x, y, adv) -> float:
    with torch.no_grad():
        return float((clf(adv).argmax(1) == y).float().mean())


class Counting(nn.Module):
    """Counts the images the wrapped classifier is asked about."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_square_matches_the_reference(norm, eps, trained_tiny_clf, small_batch):
    square = pytest.importorskip("pyautoattack.square")
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:N], y[:N]
    ours = Square(eps, norm, queries=QUERIES)(clf, x, y)
    ref = square.SquareAttack(clf, norm={"linf": "Linf", "l2": "L2"}[norm], n_queries=QUERIES, eps=eps,
                              seed=0).perturb(x, y)
    r_ours, r_ref, r_clean = robust(clf, x, y, ours), robust(clf, x, y, ref), robust(clf, x, y, x)
    assert r_ours <= r_clean - 4 / N  # it fools inputs
    assert abs(r_ours - r_ref) <= 4 / N, (r_ours, r_ref)
    assert bool(ThreatModel(norm, eps).contains(x, ours).all())


def test_only_robust_inputs_are_queried(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:N], y[:N]
    atk, model = Square(0.3, "linf", queries=50), Counting(clf)
    adv = atk(model, x, y)
    q = atk.last_queries
    assert q is not None and int(q.max()) <= 51  # the clean evaluation + the search's 50
    with torch.no_grad():
        wrong0 = clf(x).argmax(1) != y
        fooled = clf(adv).argmax(1) != y
    assert bool((q[wrong0] == 1).all())  # misclassified already: only the first evaluation
    assert bool((q[fooled & ~wrong0] < 51).all())  # fooled early: not queried after that
    assert int(fooled.sum()) >= N // 2
    assert model.rows == int(q.sum())  # every model evaluation is accounted for


def test_seeds_repeat_and_targets(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    x, y = x[:8], y[:8]
    a = Square(2.0, "l2", queries=30, seed=5)(clf, x, y)
    b = Square(2.0, "l2", queries=30, seed=5)(clf, x, y)
    c = Square(2.0, "l2", queries=30, seed=6)(clf, x, y)
    assert torch.equal(a, b) and not torch.equal(a, c)
    x, y = small_batch[0][:N], small_batch[1][:N]
    target = random_targets(y, 10, torch.Generator().manual_seed(0))
    adv = Square(0.3, "linf", queries=100)(clf, x, y, target=target)
    with torch.no_grad():
        assert int((clf(adv).argmax(1) == target).sum()) >= N // 4


def test_p_schedule_and_bad_input():
    assert p_schedule(0.8, 0, 10000) == 0.8
    assert p_schedule(0.8, 11, 10000) == 0.4
    assert p_schedule(0.8, 9000, 10000) == pytest.approx(0.8 / 512)
    assert p_schedule(0.8, 30, 5000) == 0.2  # rescaled: iteration 30 of 5,000 is 60 of 10,000
    assert make_attack("square", eps=0.1).uses_gradients is False
    for bad in (0, -5):
        with pytest.raises(ValueError, match="queries must be a positive"):
            Square(0.3, queries=bad)
    with pytest.raises(TypeError, match="queries"):
        Square(0.3, queries=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown norm"):
        Square(0.3, "l0")
    with pytest.raises(ValueError, match="8/255"):
        Square(8)
    with pytest.raises(ValueError, match="p_init"):
        Square(0.3, p_init=0.0)
