"""Pix2Pix: paper defaults, the three modes, the halved D loss, training, save/load, resume, errors, CLI."""
from __future__ import annotations

import json

import pytest
import torch
from advgan.pix2pix import Pix2Pix, Pix2PixConfig

from advgan import losses, pairs
from advgan.cli import main as cli_main

SMALL = dict(g_width=8, d_width=8, batch_size=32, progress=False, device="cpu")


@pytest.fixture(scope="module")
def edge_pairs(mnist):
    train, test = mnist
    return pairs.build("edges", train.subset(256, seed=0)), pairs.build("edges", test.subset(64, seed=0))


def _weights(nets):
    return {f"{n}.{k}": v.clone() for n, m in nets.items() for k, v in m.state_dict().items()}


def test_paper_defaults_and_validation():
    c = Pix2PixConfig()
    assert (c.mode, c.lambda_l1, c.lr_g, c.lr_d, c.betas) == ("l1+cgan", 100.0, 2e-4, 2e-4, (0.5, 0.999))
    with pytest.raises(ValueError, match="mode must be one of l1\\+cgan, l1, cgan"):
        Pix2PixConfig(mode="gan")
    with pytest.raises(ValueError, match="lambda_l1 must be > 0"):
        Pix2PixConfig(mode="l1", lambda_l1=0)
    with pytest.raises(ValueError, match="valid: .*unet"):
        Pix2PixConfig(g_net="resnet_9blocks")
    with pytest.raises(ValueError, match="norm"):
        Pix2PixConfig(norm="group")


def test_modes_choose_players_and_terms(edge_pairs):
    train, _ = edge_pairs
    batch = (train.x[:4], train.y[:4])
    l1_only = Pix2Pix(Pix2PixConfig(mode="l1", **SMALL), 1, 1)
    assert [p.name for p in l1_only.players()] == ["G"] and "D" not in l1_only.nets
    loss, parts = l1_only.loss("G", batch, 0)
    assert "gan" not in parts and loss.item() == pytest.approx(100 * 2 * parts["l1"].item(), rel=1e-5)
    cgan = Pix2Pix(Pix2PixConfig(mode="cgan", **SMALL), 1, 1)
    loss, parts = cgan.loss("G", batch, 0)
    assert loss.item() == pytest.approx(parts["gan"].item(), rel=1e-6)     # no L1 term in the objective
    both = Pix2Pix(Pix2PixConfig(**SMALL), 1, 1)
    assert [p.name for p in both.players()] == ["D", "G"]
    loss, parts = both.loss("G", batch, 0)
    assert loss.item() == pytest.approx(parts["gan"].item() + 100 * 2 * parts["l1"].item(), rel=1e-5)


def test_discriminator_loss_is_halved_and_sees_pairs(edge_pairs):
    train, _ = edge_pairs
    m = Pix2Pix(Pix2PixConfig(**SMALL), 1, 1)
    x, y = train.x[:4], train.y[:4]
    torch.manual_seed(0)
    for net in m.nets.values():
        net.eval()                                                       # deterministic (no dropout / batch stats)
    loss, _ = m.loss("D", (x, y), 0)
    xs, ys = x * 2 - 1, y * 2 - 1
    with torch.no_grad():
        ref = 0.5 * losses.d_loss("non_saturating", m.nets["D"](xs, ys), m.nets["D"](xs, m.nets["G"](xs)))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert m.nets["D"].in_channels == 2                                   # D sees cat(x, y)


def test_fit_reduces_l1_save_load_identical(edge_pairs, tmp_path):
    train, test = edge_pairs
    m = Pix2Pix(Pix2PixConfig(ema_decay=0.5, **SMALL), 1, 1)
    before = (m.translate(test.x) - test.y).abs().mean().item()
    hist = m.fit(train, 1, out_dir=tmp_path / "run")
    after = (m.translate(test.x) - test.y).abs().mean().item()
    assert after < before, (before, after)
    assert len(hist.steps) == 8 and list((tmp_path / "run" / "samples").glob("*.png"))
    m.save(tmp_path / "m")
    loaded = Pix2Pix.load(tmp_path / "m")
    assert torch.equal(loaded.translate(test.x), m.translate(test.x))
    assert loaded.g_ema is not None and loaded.config == m.config


def test_resume_gives_identical_weights(edge_pairs, tmp_path):
    train, _ = edge_pairs
    cfg = Pix2PixConfig(checkpoint_every=3, **SMALL)
    ref = Pix2Pix(cfg, 1, 1)
    ref.fit(train, 2)
    Pix2Pix(cfg, 1, 1).fit(train, 1, out_dir=tmp_path)
    resumed = Pix2Pix(cfg, 1, 1)
    resumed.fit(train, 2, out_dir=tmp_path)
    a, b = _weights(ref.nets), _weights(resumed.nets)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_are_refused_before_work(edge_pairs, mnist):
    train, _ = edge_pairs
    m = Pix2Pix(Pix2PixConfig(**SMALL), 3, 1)
    before = _weights(m.nets)
    with pytest.raises(ValueError, match="in_channels=1, out_channels=1"):
        m.fit(train, 1)
    assert all(torch.equal(before[k], v) for k, v in _weights(m.nets).items())
    with pytest.raises(ValueError, match="pairs"):
        Pix2Pix(Pix2PixConfig(**SMALL), 1, 1).fit(mnist[0].subset(64), 1)        # (image, label), not pairs
    with pytest.raises(ValueError, match="d_layers"):
        Pix2Pix(Pix2PixConfig(d_layers=4, **SMALL), 1, 1).fit(train, 1)         # 28x28 too small for 4 layers
    with pytest.raises(ValueError, match="1-channel inputs"):
        Pix2Pix(Pix2PixConfig(**SMALL), 1, 1).translate(torch.rand(2, 3, 28, 28))


def test_rgb_colorization_shapes():
    rgb = torch.rand(2, 3, 32, 32)
    m = Pix2Pix(Pix2PixConfig(**SMALL), 1, 3)
    assert m.translate(pairs.luminance(rgb)).shape == (2, 3, 32, 32)


@pytest.mark.slow
def test_cli_pix2pix_writes_outputs(tmp_path):
    from attacks import Classifier

    Classifier.create("tiny_cnn", 10, in_chans=1).save(tmp_path / "clf")      # any saved classifier gives features
    out = tmp_path / "p2p"
    rc = cli_main(["pix2pix", "--task", "superres", "--dataset", "mnist5k", "--mode", "l1", "--n-train", "128",
                   "--epochs", "1", "--width", "8", "--classifier", str(tmp_path / "clf"), "--no-progress",
                   "--device", "cpu", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "l1" and 0 <= m["test_l1"] <= 1 and m["frechet_distance"] >= 0
    # the numbers are the saved model's, and training beat the same network untrained (the same seeded init)
    from advgan import data, metrics

    clf = Classifier.load(tmp_path / "clf")
    ptest = pairs.build("superres", data.load("mnist5k")[1], factor=4)
    trained = Pix2Pix.load(out / "model").translate(ptest.x)
    untrained = Pix2Pix(Pix2PixConfig(mode="l1", g_width=8, d_width=8, device="cpu"), 1, 1).translate(ptest.x)
    assert m["test_l1"] == pytest.approx(float((trained - ptest.y).abs().mean()), rel=1e-5)
    assert m["frechet_distance"] == pytest.approx(metrics.classifier_frechet_distance(clf, trained, ptest.y), rel=1e-4)
    assert m["test_l1"] < float((untrained - ptest.y).abs().mean())
    assert m["frechet_distance"] < metrics.classifier_frechet_distance(clf, untrained, ptest.y)
    assert (out / "samples.png").is_file() and (out / "losses.png").is_file() and (out / "model" / "config.json").is_file()


def test_from_pairs_infers_channels():
    rgb = torch.utils.data.TensorDataset(torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long))
    p = pairs.build("colorize", rgb)
    m = Pix2Pix.from_pairs(p, Pix2PixConfig(**SMALL))
    assert (m.in_channels, m.out_channels) == (1, 3)
    with pytest.raises(ValueError, match="pairs"):
        Pix2Pix.from_pairs(rgb)
