"""measure(): the one accuracy-under-attack kernel, checked against a hand count."""
from __future__ import annotations

import pytest
import torch

from advgan import data
from attacks import FGSM, PGD, measure


def _hand_count(clf, x, y, x_adv, t=None):
    with torch.no_grad():
        ok = clf(x).argmax(1) == y
        pa = clf(x_adv).argmax(1)
    hits = int((ok & (pa == t)).sum()) if t is not None else None
    return len(y), int(ok.sum()), int((pa == y).sum()), int((ok & (pa != y)).sum()), hits


def test_measure_matches_a_hand_count(trained_tiny_clf, mnist):
    _, test = mnist
    x, y = test.images[:96], test.labels[:96]
    loader = data.loader(data.ImageDataset(x, y, 10), 32)
    atk = FGSM(eps=0.15)
    m = measure(trained_tiny_clf, loader, atk)
    x_adv = torch.cat([atk(trained_tiny_clf, x[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)])
    n, correct, robust, fooled, _ = _hand_count(trained_tiny_clf, x, y, x_adv)
    assert (m.n, m.n_correct, m.n_robust, m.n_fooled) == (n, correct, robust, fooled)
    assert 0 < m.attack_success_rate < 1 and m.robust_accuracy < m.clean_accuracy
    clean = measure(trained_tiny_clf, loader)
    assert clean.n_correct == correct and clean.n_robust == correct and clean.n_fooled == 0


def test_measure_targeted_counts_hits_and_is_seeded(trained_tiny_clf, mnist):
    _, test = mnist
    loader = data.loader(data.ImageDataset(test.images[:64], test.labels[:64], 10), 32)
    atk = PGD(eps=0.3, steps=10, seed=0)
    a = measure(trained_tiny_clf, loader, atk, targeted=True, seed=3)
    b = measure(trained_tiny_clf, loader, atk, targeted=True, seed=3)
    assert a == b and a.n_target_hits is not None and a.n_target_hits > 0
    assert a.n_target_hits <= a.n_fooled  # a target hit is also a misclassification


def test_measure_bad_input_is_refused_before_work(trained_tiny_clf):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        measure("model", [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no batches"):
        measure(trained_tiny_clf, [])
    with pytest.raises(ValueError, match="0, 1"):
        measure(trained_tiny_clf, [(torch.full((2, 1, 28, 28), 255.0), torch.zeros(2, dtype=torch.long))])
