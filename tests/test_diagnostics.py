"""attacks.diagnostics on known tensors, and AdvGAN's record of them (a trained generator's perturbation depends on x)."""
from __future__ import annotations

import math

import pytest
import torch

from attacks.diagnostics import PerturbationStats, adversarial_class_entropy, entropy_of_counts, shared_energy


def test_shared_energy_of_a_universal_perturbation_is_one_and_of_independent_ones_about_one_over_n():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(1, 1, 28, 28, generator=g)
    assert shared_energy(d.repeat(50, 1, 1, 1)) == pytest.approx(1.0)
    assert shared_energy(torch.randn(400, 1, 28, 28, generator=g)) == pytest.approx(1 / 400, rel=0.2)
    # half the energy shared: delta = u + v_i with ||u||^2 = ||v_i||^2 on average
    u = torch.randn(1, 784, generator=g)
    v = torch.randn(2000, 784, generator=g)
    assert shared_energy(u + v) == pytest.approx(float(u.pow(2).sum() / (u.pow(2).sum() + 784)), abs=0.03)
    assert math.isnan(shared_energy(torch.zeros(4, 3)))


def test_adversarial_class_entropy_counts_only_fooled_inputs():
    pred = torch.tensor([4, 4, 4, 4, 1, 2])
    assert adversarial_class_entropy(pred, torch.tensor([True] * 4 + [False] * 2), 10) == 0.0
    assert adversarial_class_entropy(pred, torch.ones(6, dtype=torch.bool), 10) == pytest.approx(
        -(4 / 6 * math.log(4 / 6) + 2 * (1 / 6) * math.log(1 / 6)))
    assert adversarial_class_entropy(torch.arange(10), torch.ones(10, dtype=torch.bool)) == pytest.approx(math.log(10))
    assert math.isnan(adversarial_class_entropy(pred, torch.zeros(6, dtype=torch.bool)))
    assert math.isnan(entropy_of_counts(torch.zeros(3)))


def test_streaming_stats_equal_the_one_shot_values():
    g = torch.Generator().manual_seed(1)
    d = torch.randn(90, 1, 8, 8, generator=g) + 0.5
    pred = torch.randint(0, 10, (90,), generator=g)
    fooled = torch.rand(90, generator=g) > 0.3
    s = PerturbationStats(10)
    for i in range(0, 90, 32):
        s.update(d[i:i + 32], pred[i:i + 32], fooled[i:i + 32])
    r = s.result()
    assert r["shared_energy"] == pytest.approx(shared_energy(d))
    assert r["adv_class_entropy"] == pytest.approx(adversarial_class_entropy(pred, fooled, 10))
    assert r["max_entropy"] == pytest.approx(math.log(10))


@pytest.mark.parametrize("call, err, msg", [
    (lambda: shared_energy([1.0, 2.0]), TypeError, "torch.Tensor"),
    (lambda: shared_energy(torch.zeros(0, 3)), ValueError, "N >= 1"),
    (lambda: shared_energy(torch.zeros(5)), ValueError, "shape"),
    (lambda: adversarial_class_entropy(torch.rand(3), torch.ones(3, dtype=torch.bool)), TypeError, "integer"),
    (lambda: adversarial_class_entropy(torch.arange(3), torch.ones(3)), TypeError, "bool"),
    (lambda: PerturbationStats(1), ValueError, ">= 2"),
    (lambda: PerturbationStats(3).update(torch.zeros(2, 4), torch.tensor([0, 5]), torch.ones(2, dtype=torch.bool)),
     ValueError, "num_classes is 3"),
])
def test_bad_input_is_refused(call, err, msg):
    with pytest.raises(err, match=msg):
        call()
