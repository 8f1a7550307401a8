"""evaluate() the field can trust: the per-sample worst case, AutoAttack-style flags, SSIM, per-class grids,
verified attack outputs, and transfer() — each against a hand computation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_attacks import assert_same_state, snapshot
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attacks import FGSM, PGD, Attack, Classifier, RandomNoise, Report, evaluate, ssim, transfer


@pytest.fixture(scope="module")
def mixed_batch(mnist):
    """64 test images of every class (the first 64 of MNIST-5k's test split are all zeros)."""
    _, test = mnist
    return test.images[::15][:64].clone(), test.labels[::15][:64].clone()


def loader_of(x, y, bs=32):
    return DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=False)


def _by_batch(atk, clf, x, y, bs=32):
    return torch.cat([atk(clf, x[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs)])


def _preds(clf, z):
    with torch.no_grad():
        return clf(z).argmax(1)


# ---------------------------------------------------------------------- worst case
def test_worst_case_is_the_per_sample_and_of_every_attack(trained_tiny_clf, mixed_batch, tmp_path):
    clf, (x, y) = trained_tiny_clf, mixed_batch
    attacks = {"fgsm": FGSM(0.1), "pgd": PGD(0.1, steps=2, seed=0), "noise": RandomNoise(0.1, seed=0)}
    rep = evaluate(clf, loader_of(x, y), attacks, epsilons=[0.05], progress=False, grid_images=0)
    for eps in (0.1, 0.05):
        advs = [_by_batch(a.with_eps(eps), clf, x, y) for a in attacks.values()]
        correct = _preds(clf, x) == y
        robust = correct.clone()
        broken = torch.zeros_like(correct)
        linf = torch.zeros(len(y))
        for adv in advs:
            ok = _preds(clf, adv) == y
            first = correct & ~ok & ~broken
            linf = torch.where(first, (adv - x).flatten(1).abs().amax(1), linf)
            broken |= correct & ~ok
            robust &= ok
        w = rep.worst_case() if eps == 0.1 else rep.worst_case(0.05)
        assert w.n_robust == int(robust.sum()) and w.n_fooled == int((correct & ~robust).sum()), eps
        assert w.robust_accuracy <= min(r.robust_accuracy for r in (rep.results[n][eps] for n in attacks))
        assert w.mean_linf == pytest.approx(linf.mean().item(), rel=1e-5)
    assert 0 < rep.worst_case().robust_accuracy < rep["noise"].robust_accuracy  # the AND is not one attack's number
    assert rep.worst_case(0.1) == rep.worst_case() and rep.worst_case(0.1, norm="linf") == rep.worst_case()
    with pytest.raises(ValueError, match=r"no worst case at eps=0.3.*linf 0.05, linf 0.1"):
        rep.worst_case(0.3)
    # first in the Markdown and the JSON; survives a round trip
    md = rep.to_markdown()
    assert md.index("Worst case over all attacks") < md.index("| fgsm |") and "| worst case |" in md
    rep.save(tmp_path)
    text = (tmp_path / "report.json").read_text()
    assert text.index('"worst_case"') < text.index('"attacks"')
    back = Report.from_json(tmp_path / "report.json")
    assert back.worst_case() == rep.worst_case() and back.worst_case(0.05) == rep.worst_case(0.05)
    assert (tmp_path / "eps_curve.png").stat().st_size > 0


class _GradientFreeGray(Attack):
    """A stand-in for a score-based search: replaces each image by a gray one (inside an eps=1 L-inf ball)."""

    name = "gf-gray"
    uses_gradients = False

    def run(self, model, x, y, target):
        return torch.full_like(x, 0.5)


def test_gradient_masking_flag_counts_inputs_broken_only_by_gradient_free_attacks(trained_tiny_clf, mixed_batch):
    clf, (x, y) = trained_tiny_clf, mixed_batch
    weak = PGD(1.0, steps=1, step_size=1e-4, random_start=False)  # a gradient attack that barely moves
    rep = evaluate(clf, loader_of(x, y), {"pgd": weak, "square": _GradientFreeGray(eps=1.0)}, progress=False,
                   grid_images=0)
    correct = _preds(clf, x) == y
    by_pgd = correct & (_preds(clf, _by_batch(weak, clf, x, y)) != y)
    by_free = correct & (_preds(clf, torch.full_like(x, 0.5)) != y)
    k = int((by_free & ~by_pgd).sum())
    assert k > 10 and rep.sanity["gradient_free_only"]["own"] == k
    assert any("only by gradient-free attacks (square)" in f and f"{k} inputs" in f and "gradient masking" in f
               for f in rep.flags)
    # random noise is not a search: it never raises the flag
    rep = evaluate(clf, loader_of(x, y), {"pgd": weak, "noise": RandomNoise(1.0, seed=0)}, progress=False, grid_images=0)
    assert rep.sanity["gradient_free_only"] == {} and not any("only by gradient-free" in f for f in rep.flags)


class _MCDropout(nn.Module):
    """Dropout that stays on in eval mode (a randomised defense)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, z):
        return self.inner(F.dropout(z, p=0.3, training=True))


def test_randomised_model_flag(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    rand = Classifier(_MCDropout(clf.module), 10, mean=(0.5,), std=(0.5,))
    rep = evaluate(rand, loader_of(x, y), {"fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert rep.sanity["model_is_randomized"] is True and any("version='rand'" in f for f in rep.flags)
    rep = evaluate(clf, loader_of(x, y), {"fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert rep.sanity["model_is_randomized"] is False and not any("randomised" in f for f in rep.flags)


# ---------------------------------------------------------------------- SSIM
def _ssim_by_hand(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, win: int = 11) -> float:
    """Wang et al. (2004), one channel, written out with loops over the valid window positions."""
    r = np.arange(win) - (win - 1) / 2
    g1 = np.exp(-r ** 2 / (2 * sigma ** 2))
    w = np.outer(g1, g1)
    w /= w.sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = a[i:i + win, j:j + win], b[i:i + win, j:j + win]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_against_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, 13, 14, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert ssim(a, b).item() == pytest.approx(_ssim_by_hand(a[0, 0].numpy(), b[0, 0].numpy()), rel=1e-10)
    assert torch.allclose(ssim(a, a), torch.ones(1, dtype=torch.float64))
    x = torch.rand(4, 3, 28, 28, generator=g)
    noise = torch.randn(x.shape, generator=g)
    levels = [ssim(x, (x + s * noise).clamp(0, 1)).mean().item() for s in (0.01, 0.05, 0.2, 0.5)]
    assert levels == sorted(levels, reverse=True) and levels[0] < 1.0
    assert ssim(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)).shape == (2,)  # smaller than the window


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 20, 20, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ref = [metrics.structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, channel_axis=0) for i in range(2)]
    assert ssim(a, b).tolist() == pytest.approx(ref, rel=1e-9)


def test_report_ssim_is_the_mean_per_image(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    atk = RandomNoise(0.1, seed=0)
    rep = evaluate(clf, loader_of(x, y), {"noise": atk, "fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert rep["noise"].mean_ssim == pytest.approx(ssim(x, _by_batch(atk, clf, x, y)).mean().item(), rel=1e-5)
    assert 0 < rep["noise"].mean_ssim < 1 and "mean SSIM" in rep.to_markdown()


# ---------------------------------------------------------------------- grids
def test_grid_shows_one_image_per_class_on_a_class_sorted_loader(trained_tiny_clf, mnist, tmp_path):
    _, test = mnist
    idx = torch.cat([torch.nonzero(test.labels == c)[:3, 0] for c in range(10)])  # sorted by class
    x, y = test.images[idx], test.labels[idx]
    rep = evaluate(trained_tiny_clf, loader_of(x, y, bs=4), {"fgsm": FGSM(0.1)}, progress=False, grid_images=10)
    g = rep.grids
    assert g["labels"].tolist() == list(range(10))
    for c in range(10):
        assert torch.equal(g["clean"][c], x[3 * c])  # the first image of each class
    assert g["adv"]["fgsm"].shape == g["clean"].shape and g["preds_adv"]["fgsm"].shape == (10,)
    rep.save(tmp_path)
    assert (tmp_path / "grid.png").stat().st_size > 0
    few = evaluate(trained_tiny_clf, loader_of(x, y, bs=4), {"fgsm": FGSM(0.1)}, progress=False, grid_images=4)
    assert few.grids["labels"].tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------------- output verification
class _Fn:
    """A user's attack function object (not an Attack subclass): ``eps``, ``norm`` and a call."""

    def __init__(self, fn, eps=0.1, norm="linf"):
        self.fn, self.eps, self.norm = fn, eps, norm

    def __call__(self, model, x, y, target=None):
        return self.fn(x)


def test_outputs_outside_the_threat_model_or_not_finite_count_as_failures(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    state = snapshot(clf)

    def half_leaves(z):
        out = z.clone()
        out[::2] = 1 - out[::2]  # far outside an eps=0.1 ball (still inside the pixel bounds)
        return out

    def one_nan(z):
        out = z.clone()
        out[0, 0, 0, 0] = float("nan")
        return out

    attacks = {"leaves": _Fn(half_leaves), "nan": _Fn(one_nan), "unclamped": _Fn(lambda z: z + 0.05),
               "fine": FGSM(0.1)}
    rep = evaluate(clf, loader_of(x, y), attacks, progress=False, grid_images=0)
    correct = _preds(clf, x) == y
    lv = rep["leaves"]
    assert lv.n_invalid == 32 and lv.max_linf <= 1e-9  # invalid samples were replaced by the clean input
    valid_part = correct[1::2]  # samples 1, 3, ... returned unchanged: not fooled either
    assert lv.n_fooled == 0 and lv.n_robust == int(correct.sum()) and valid_part.any()
    assert rep["nan"].n_invalid == 2 and rep["unclamped"].n_invalid == 64 and rep["fine"].n_invalid == 0
    assert rep.worst_case().n_invalid == 32 + 2 + 64
    text = "\n".join(rep.flags)
    assert "attack 'leaves' (eps=0.1) returned 32 of 64 outputs" in text and "linf distance up to" in text
    assert "attack 'nan'" in text and "not finite" in text
    assert "attack 'unclamped'" in text and "outside the bounds" in text
    assert rep.sanity["invalid_outputs"]["leaves@0.1"]["invalid"] == 32
    assert_same_state(clf, state)


@pytest.mark.parametrize("fn,msg", [
    (lambda z: z[:, :, :-1], r"attack 'bad' returned a tensor of shape \(32, 1, 27, 28\) instead of \(32, 1, 28, 28\)"),
    (lambda z: z.double(), r"attack 'bad' returned a tensor of dtype torch.float64 instead of torch.float32"),
    (lambda z: z.numpy(), r"attack 'bad' returned a ndarray, not a tensor"),
    (lambda z: None, r"attack 'bad' returned a NoneType, not a tensor"),
])
def test_outputs_of_the_wrong_kind_are_refused(fn, msg, trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    state = snapshot(clf)
    with pytest.raises(ValueError, match=msg):
        evaluate(clf, loader_of(x, y), {"bad": _Fn(fn)}, progress=False, grid_images=0)
    assert_same_state(clf, state) and not clf.training


# ---------------------------------------------------------------------- transfer
def test_transfer_against_a_hand_count(trained_tiny_clf, mnist):
    from conftest import train_tiny

    train, test = mnist
    other = train_tiny(train, seed=1, epochs=1)
    x, y = test.images[:64], test.labels[:64]
    atk = PGD(0.15, steps=5, seed=0, momentum=1.0, diversity=0.5)
    res = transfer(trained_tiny_clf, other, atk, loader_of(x, y))
    adv = _by_batch(atk, trained_tiny_clf, x, y)
    for model, m in ((other, res.target), (trained_tiny_clf, res.surrogate)):
        ok, pa = _preds(model, x) == y, _preds(model, adv)
        assert (m.n, m.n_correct, m.n_robust, m.n_fooled) == (64, int(ok.sum()), int((pa == y).sum()),
                                                               int((ok & (pa != y)).sum()))
    ok_t, ok_s = _preds(other, x) == y, _preds(trained_tiny_clf, x) == y
    fooled_s = ok_s & (_preds(trained_tiny_clf, adv) != y)
    both = ok_t & fooled_s
    assert res.n_fooled_surrogate_both_correct == int(both.sum())
    assert res.n_transferred == int((both & (_preds(other, adv) != y)).sum())
    assert res.attack_success_rate == res.target.attack_success_rate < res.surrogate.attack_success_rate
    assert res.targeted_success_rate is None and json.dumps(res.to_dict())
    with pytest.raises(TypeError, match="surrogate must be a torch.nn.Module"):
        transfer("clf", other, atk, loader_of(x, y))
    with pytest.raises(ValueError, match="5 classes but the target 10"):
        transfer(Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 5)), 5), other, atk, loader_of(x, y))
