"""GAN metrics: Fréchet distance (vs a closed form and scipy), classifier features, mode coverage, D*."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from advgan import data, metrics
from attacks import Classifier


def test_frechet_distance_closed_form_and_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # diagonal Gaussians: FD = |mu_a - mu_b|^2 + sum (sd_a - sd_b)^2, computed on the sample statistics
    b = torch.randn(4000, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5, 1.0]) + torch.tensor([1.0, 0.0, -1.0])
    fd = metrics.frechet_distance(a, b)
    assert fd == pytest.approx(2.0 + 1.0 + 0.25, abs=0.15)
    from scipy.linalg import sqrtm

    A, B = a.numpy(), b.numpy()
    ca, cb = np.cov(A, rowvar=False), np.cov(B, rowvar=False)
    ref = ((A.mean(0) - B.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    assert fd == pytest.approx(float(ref), rel=1e-6)
    with pytest.raises(ValueError, match="feature dimensions"):
        metrics.frechet_distance(a, b[:, :2])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.frechet_distance(a[:1], b)


def test_classifier_features_are_penultimate_and_leave_model_untouched(mnist):
    torch.manual_seed(0)
    clf = Classifier.create("small_cnn", 10, in_chans=1)
    clf.train()
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    x = mnist[1].images[:40]
    f = metrics.classifier_features(clf, x, batch_size=16)
    head = metrics._last_linear(clf)
    assert f.shape == (40, head.in_features)
    with torch.no_grad():
        clf.eval()
        assert torch.allclose(head(f), clf(x), atol=1e-4)                # the head applied to them gives the logits
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())
    fd_same = metrics.classifier_frechet_distance(clf, x[:20], x[:20])
    fd_noise = metrics.classifier_frechet_distance(clf, x[:20], torch.rand(20, 1, 28, 28))
    fd_real = metrics.classifier_frechet_distance(clf, x[:20], x[20:40])      # other digits of the same distribution
    assert fd_same == pytest.approx(0.0, abs=1e-6) and fd_noise > 0
    assert fd_noise > 2 * fd_real > 0, (fd_noise, fd_real)                    # noise is farther than other real digits
    with pytest.raises(ValueError, match=r"\[0"):
        metrics.classifier_features(clf, x * 255)


def test_mode_coverage_pacgan_rule():
    train, _ = data.load("ring8", n_train=10)
    modes, std = train.modes, train.std                          # radius 1, σ = 0.01
    hq = modes[:7].repeat_interleave(10, 0) + 0.029 / math.sqrt(2)   # 70 samples within 2.9σ of 7 modes
    off = modes[7:8] + torch.tensor([[0.0, 0.031]])              # 3.1σ from mode 8: not high quality
    far = torch.zeros(29, 2)                                     # the centre of the ring: no mode
    cov = metrics.mode_coverage(torch.cat([hq, off, far]), modes, std)
    assert cov["modes_captured"] == 7 and cov["num_modes"] == 8
    assert cov["high_quality"] == pytest.approx(70 / 100)
    assert cov["counts"] == [10] * 7 + [0]
    assert cov["reverse_kl"] == pytest.approx(math.log(8 / 7), rel=1e-6)
    assert metrics.mode_coverage(torch.cat([hq, off]), modes, std, min_count=11)["modes_captured"] == 0
    assert metrics.mode_coverage(train.points, modes, std)["high_quality"] > 0.9
    with pytest.raises(ValueError, match="NaN"):
        metrics.mode_coverage(torch.full((3, 2), float("nan")), modes, std)


def test_optimal_discriminator_closed_form():
    x = torch.linspace(-3, 3, 13)
    same = metrics.optimal_discriminator((0.0, 1.0), (0.0, 1.0))
    assert torch.allclose(same(x), torch.full_like(x, 0.5, dtype=torch.float64))
    d = metrics.optimal_discriminator(metrics.gaussian_pdf(0.0, 1.0), (1.0, 1.0))
    # logit D* = log p_data - log p_g = 0.5 - x for these two Gaussians
    assert torch.allclose(torch.logit(d(x)), 0.5 - x.double(), atol=1e-9)
    far = metrics.optimal_discriminator(lambda t: torch.zeros_like(t), lambda t: torch.zeros_like(t))
    assert float(far(torch.tensor([0.0]))) == 0.5
    with pytest.raises(TypeError, match="density"):
        metrics.optimal_discriminator("normal", (0.0, 1.0))
