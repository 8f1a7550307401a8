"""AugMix (ops, views, JSD loss, the finetune method), corruptions as an augment source, the defense report's
corruption columns."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from attacks import PGD, Classifier, corrupt
from defenses import (
    AdversarialAugmentation,
    AugMix,
    CorruptionSource,
    FinetuneConfig,
    augmix_loss,
    before_after,
    finetune,
    jensen_shannon,
    parse_sources,
)
from defenses.augmix_ops import OPS, posterize, solarize, translate_x


def test_jensen_shannon_by_hand():
    torch.manual_seed(0)
    a, b, c = torch.randn(3, 5, 4).unbind(0)
    assert jensen_shannon(a, a, a).item() == pytest.approx(0.0, abs=1e-7)
    ps = [F.softmax(z, 1) for z in (a, b, c)]
    m = sum(ps) / 3
    want = sum((p * (p.log() - m.log())).sum(1).mean() for p in ps) / 3
    got = jensen_shannon(a, b, c)
    assert got.item() == pytest.approx(want.item(), rel=1e-5) and got.item() > 0
    assert jensen_shannon(c, a, b).item() == pytest.approx(got.item(), rel=1e-6)  # symmetric
    with pytest.raises(ValueError, match="two"):
        jensen_shannon(a)


def test_augmix_loss_terms_and_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 3, (6,))
    v1, v2 = torch.rand(6, 1, 4, 4), torch.rand(6, 1, 4, 4)
    loss, parts = augmix_loss(net, x, y, [v1, v2], 12.0)
    ce = F.cross_entropy(net(x), y)
    js = jensen_shannon(net(x), net(v1), net(v2))
    assert loss.shape == () and parts["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert parts["jsd"].item() == pytest.approx(js.item(), rel=1e-5)
    assert loss.item() == pytest.approx(ce.item() + 12 * js.item(), rel=1e-5)
    assert augmix_loss(net, x, y, [v1, v2], 0.0)[0].item() == pytest.approx(ce.item(), rel=1e-5)
    loss.backward()
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0


def test_ops_shape_range_and_meaning():
    x = torch.rand(4, 3, 12, 12)
    lv, sg = torch.full((4,), 3.0), torch.ones(4)
    for name, op in OPS.items():
        out = op(x, lv, sg)
        assert out.shape == x.shape and out.dtype == x.dtype, name
        assert out.min() >= 0 and out.max() <= 1, name
    q = (x * 255).round()
    # level 3: 4 - int(1.2) = 3 bits kept; threshold 256 - int(76.8) = 180
    assert torch.equal((posterize(x, lv, sg) * 255).round(), torch.floor(q / 32) * 32)
    assert torch.equal((solarize(x, lv, sg) * 255).round(), torch.where(q >= 180, 255 - q, q))
    shifted = translate_x(x, torch.full((4,), 7.5), sg)  # int(7.5 * 4 / 10) = 3 pixels
    assert torch.allclose(shifted[..., :-3], x[..., 3:], atol=1e-5) and shifted[..., -3:].abs().max() < 1e-6


def test_augmix_views():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    x0 = x.clone()
    am = AugMix(seed=3)
    rng = torch.get_rng_state()
    v = am.views(x, 2, step=5)
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG untouched
    assert torch.equal(x, x0) and len(v) == 2
    for t in v:
        assert t.shape == x.shape and t.dtype == x.dtype and t.min() >= 0 and t.max() <= 1
        assert (t - x).abs().mean() > 1e-3
    assert not torch.equal(v[0], v[1])
    assert all(torch.equal(a, b) for a, b in zip(v, AugMix(seed=3).views(x, 2, step=5)))  # (seed, step): exact resume
    assert not torch.equal(v[0], AugMix(seed=3).views(x, 2, step=6)[0])
    with_c = AugMix(seed=3, corruptions=["gaussian_noise"], width=1, depth=1)
    assert with_c.pool[-1] == ("corruption", "gaussian_noise") and with_c(x, step=0).shape == x.shape
    for kw, msg in (({"width": 0}, "width"), ({"severity": 11}, "severity"), ({"alpha": 0}, "alpha"),
                    ({"depth": 0}, "depth"), ({"jsd_lambda": -1}, "jsd_lambda")):
        with pytest.raises(ValueError, match=msg):
            AugMix(**kw)
    with pytest.raises(ValueError, match="valid corruptions"):
        AugMix(corruptions=["haze"])
    with pytest.raises(ValueError, match="0-255"):
        am(x * 255)


def test_finetune_augmix(mnist):
    train, test = mnist
    torch.manual_seed(0)
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    sub = TensorDataset(train.images[:64], train.labels[:64])
    robust, hist = finetune(clf, sub, method="augmix", epochs=1, batch_size=64, progress=False)
    assert len(hist.epochs) == 1 and hist.epochs[0]["train_seconds"] > 0
    assert any(not torch.equal(u, v) for u, v in zip(robust.state_dict().values(), clf.state_dict().values()))
    with pytest.raises(ValueError, match="valid corruptions"):
        FinetuneConfig(method="augmix", augmix_corruptions="fog,haze")
    with pytest.raises(ValueError, match="augmix_depth"):
        FinetuneConfig(method="augmix", augmix_depth=0)


def test_corruption_source_in_augment(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    srcs = parse_sources(["pgd", "corruption:fog+brightness@3"], clf, eps=0.1, pgd_steps=2)
    assert isinstance(srcs[1], CorruptionSource) and srcs[1].names == ("fog", "brightness") and srcs[1].severities == (3,)
    aug = AdversarialAugmentation(srcs, fraction=1.0, mode="round_robin", seed=0)
    assert aug.eps == 0.1 and aug.norm == "linf"
    out, yy = aug(clf, x, y, step=0)
    idx, src = aug.plan(x.shape[0], step=0)
    corr = idx[src == 1]
    adv = idx[src == 0]
    assert torch.equal(yy, y) and aug.counts == [32, 32]
    assert (out[adv] - x[adv]).abs().amax() <= 0.1 + 1e-6  # PGD items inside the ball
    d = (out[corr] - x[corr]).flatten(1).abs().amax(1)
    assert (d > 0.1).all()  # corrupted items: fog / brightness, outside any small Lp ball
    bright = (corrupt(x[corr], "brightness", 3) - out[corr]).flatten(1).abs().amax(1) < 1e-6  # deterministic one
    assert 0 < int(bright.sum()) < corr.numel()  # each item drew its own corruption: some brightness, some fog
    rng = torch.get_rng_state()
    torch.manual_seed(1)
    a1 = srcs[1](clf, x)
    torch.manual_seed(1)
    assert torch.equal(a1, srcs[1](clf, x))  # global RNG: exact resume under the engine's checkpoints
    torch.set_rng_state(rng)
    only = AdversarialAugmentation([CorruptionSource("noise", (1, 2))], fraction=0.5)
    assert only.eps == 0.0 and only.norm is None
    for bad, msg in (("corruption:haze", "corruption names: gaussian_noise"), ("corruption:all@0", "1 <= A <= B <= 5"),
                     ("corruption:all@2-6", "1 <= A <= B <= 5"), ("corruption:", "needs corruptions")):
        with pytest.raises(ValueError, match=msg):
            parse_sources(["pgd", bad], clf, eps=0.1)


def test_finetune_augment_with_corruption_source(trained_tiny_clf, mnist):
    train, _ = mnist
    sub = TensorDataset(train.images[:128], train.labels[:128])
    srcs = [PGD(0.1, steps=1), CorruptionSource("blur", (2,))]
    robust, hist = finetune(trained_tiny_clf, sub, method="augment", eps=0.1, epochs=1, batch_size=64, fraction=0.5,
                            sources=srcs, progress=False)
    assert len(hist.epochs) == 1 and robust is not trained_tiny_clf


def test_defense_report_corruptions(trained_tiny_clf, mnist, tmp_path):
    _, test = mnist
    untrained = Classifier.create("tiny_cnn", 10, in_chans=1)
    loader = DataLoader(TensorDataset(test.images[:64], test.labels[:64]), batch_size=64)
    rep = before_after({"before": untrained, "after": trained_tiny_clf}, loader, eps=0.1, pgd_steps=2,
                       corruptions=["gaussian_noise", "fog"], severities=(1, 3), out_dir=tmp_path)
    b, a = rep.rows["before"], rep.rows["after"]
    assert b["mce"] == pytest.approx(1.0) and a["mce"] < 1  # against the first model
    assert a["mean_corruption_acc"] > b["mean_corruption_acc"] and a["robust_acc_pgd"] is not None
    assert set(rep.corruptions["after"]) == {"gaussian_noise", "fog"} and set(rep.corruptions["after"]["fog"]) == {1, 3}
    md = (tmp_path / "defense_report.md").read_text()
    assert "Natural corruptions" in md and "| fog |" in md and "robust acc (PGD-2)" in md
    assert '"mean_corruption_acc"' in (tmp_path / "defense_report.json").read_text()
    with pytest.raises(ValueError, match="severity must be from 1"):
        before_after({"m": trained_tiny_clf}, loader, eps=0.1, corruptions="all", severities=(6,))
