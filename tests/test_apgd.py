"""APGD / APGD-T: cross-check with the reference (pyautoattack), schedule, seeds, L2, early exit, bad input."""
from __future__ import annotations

import pytest
import torch
from test_attacks import assert_same_state, snapshot

from attacks import APGD, APGDCE, APGDDLR, APGDT, flat_norm, make_attack
from attacks.apgd import checkpoints


def _robust(clf, x, y) -> float:
    with torch.no_grad():
        return (clf(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def batch(mnist):
    _, test = mnist
    return test.images[:100].clone(), test.labels[:100].clone()


def test_checkpoints_are_the_papers():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, Sec. 3.2)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10)[0] == 3 and checkpoints(10)[-1] == 10
    assert checkpoints(1) == [1]


def test_apgd_ce_matches_reference(trained_tiny_clf, batch):
    autopgd = pytest.importorskip("pyautoattack.autopgd_base")
    x, y = batch
    eps, steps = 0.1, 50
    ours = _robust(trained_tiny_clf, APGDCE(eps, steps=steps, seed=0)(trained_tiny_clf, x, y), y)
    ref_attack = autopgd.APGDAttack(trained_tiny_clf, n_iter=steps, norm="Linf", eps=eps, seed=0, device="cpu")
    ref = _robust(trained_tiny_clf, ref_attack.perturb(x, y), y)
    clean = _robust(trained_tiny_clf, x, y)
    assert ref < clean - 0.2  # the budget matters, so the comparison means something
    assert abs(ours - ref) <= 0.03, (ours, ref)


def test_apgd_beats_or_matches_pgd_and_stays_in_the_ball(trained_tiny_clf, batch):
    from attacks import PGD

    x, y = batch
    adv = APGDCE(0.1, steps=30)(trained_tiny_clf, x, y)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    pgd = PGD(0.1, steps=30, seed=0)(trained_tiny_clf, x, y)
    assert _robust(trained_tiny_clf, adv, y) <= _robust(trained_tiny_clf, pgd, y) + 0.02


def test_l2_and_dlr(trained_tiny_clf, batch):
    x, y = batch[0][:48], batch[1][:48]
    clean = _robust(trained_tiny_clf, x, y)
    for attack in (APGDCE(1.5, "l2", steps=20), APGDDLR(1.5, "l2", steps=20)):
        adv = attack(trained_tiny_clf, x, y)
        assert flat_norm(adv - x, "l2").max() <= 1.5 + 1e-4
        assert _robust(trained_tiny_clf, adv, y) < clean - 0.2, attack


class _CountRows(torch.nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.model(x)


def test_seed_repeats_and_only_robust_samples_are_attacked(trained_tiny_clf, batch):
    x, y = batch[0][:40], batch[1][:40]
    a = APGDCE(0.1, steps=15, restarts=2, seed=3)(trained_tiny_clf, x, y)
    b = APGDCE(0.1, steps=15, restarts=2, seed=3)(trained_tiny_clf, x, y)
    assert torch.equal(a, b)
    counted = _CountRows(trained_tiny_clf)
    c = APGDCE(0.1, steps=15, restarts=2, seed=3)(counted, x, y)
    assert torch.equal(a, c)
    with torch.no_grad():
        correct = int((trained_tiny_clf(x).argmax(1) == y).sum())
        robust = int((trained_tiny_clf(a).argmax(1) == y).sum())
    sizes = counted.sizes[1:]  # after the one-image logits probe: the clean pass, then the attack
    assert sizes[0] == 40 and sizes[1] == correct  # misclassified inputs are never attacked
    assert all(s1 >= s2 for s1, s2 in zip(sizes, sizes[1:]))  # fooled rows leave, never come back
    assert sizes[-1] >= robust and sizes[-1] < correct
    assert sum(sizes) < 40 + 2 * 16 * correct


def test_targeted_modes(trained_tiny_clf, batch):
    x, y = batch[0][:32], batch[1][:32]
    t = (y + 1) % 10
    from attacks import PGD

    hits = []
    for attack in (APGD(0.3, steps=30, loss="ce"), PGD(0.3, steps=30, seed=0), APGDT(0.3, steps=30)):
        with torch.no_grad():
            hits.append((trained_tiny_clf(attack(trained_tiny_clf, x, y, target=t)).argmax(1) == t).float().mean().item())
    assert hits[0] >= hits[1] - 1 / 32 and hits[0] > 0.4, hits  # towards given targets, as strong as PGD
    assert hits[2] > 0.25, hits  # the targeted DLR loss of APGD-T aims at misclassification, less at the target
    one = APGDT(0.1, steps=20, n_target_classes=3, seed=1)(trained_tiny_clf, x, y)
    batched = APGDT(0.1, steps=20, n_target_classes=3, target_batch=3, seed=1)(trained_tiny_clf, x, y)
    r1, r3 = _robust(trained_tiny_clf, one, y), _robust(trained_tiny_clf, batched, y)
    assert r1 < _robust(trained_tiny_clf, x, y) and abs(r1 - r3) <= 2 / 32


def test_amp_bf16_runs(trained_tiny_clf, batch):
    x, y = batch[0][:16], batch[1][:16]
    adv = APGDCE(0.15, steps=10, amp=True)(trained_tiny_clf, x, y)
    assert adv.dtype == x.dtype and (adv - x).abs().max() <= 0.15 + 1e-6
    assert _robust(trained_tiny_clf, adv, y) < _robust(trained_tiny_clf, x, y)


def test_registry_names():
    assert type(make_attack("apgd-ce", eps=0.1)) is APGDCE
    assert make_attack("apgd-dlr", eps=0.1).loss == "dlr"
    assert make_attack("apgd-t", eps=0.1).n_target_classes == 9


def test_bad_input_refused_before_work(trained_tiny_clf, batch):
    x, y = batch[0][:8], batch[1][:8]
    with pytest.raises(ValueError, match="ce, dlr"):
        APGD(0.1, loss="x")
    with pytest.raises(ValueError, match="8/255"):
        APGDCE(8)
    with pytest.raises(ValueError, match="steps"):
        APGDCE(0.1, steps=0)
    before, x0 = snapshot(trained_tiny_clf), x.clone()
    with pytest.raises(ValueError, match="n_target_classes <= 9"):
        APGDT(0.1, n_target_classes=10)(trained_tiny_clf, x, y)
    assert_same_state(trained_tiny_clf, before)
    assert torch.equal(x, x0)
