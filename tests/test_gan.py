"""GAN and ConditionalGAN: configs, training on the engine, sampling, save/load, resume, errors, CLI."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from advgan.gan import GAN, ConditionalGAN, ConditionalGANConfig, GANConfig

from advgan import data, metrics
from advgan.cli import main as cli_main
from attacks.checkpoint import CheckpointError

TOY = dict(z_dim=2, g_width=64, d_width=64, batch_size=128, progress=False, device="cpu")


@pytest.fixture(scope="module")
def ring():
    # σ = 0.05 (not the benchmark's 0.01) so that a few hundred steps can land within 3σ of a mode
    return data.load("ring8", n_train=6400, std=0.05)


@pytest.fixture(scope="module")
def mnist_small(mnist):
    train, test = mnist                                             # session fixture (tests/conftest.py)
    return train.subset(256, seed=0), test.subset(100, seed=0)


def _weights(nets):
    return {f"{n}.{k}": v.clone() for n, m in nets.items() for k, v in m.state_dict().items()}


def test_ring8_gan_covers_more_than_one_mode(ring):
    train, _ = ring
    model = GAN(GANConfig(lr_g=1e-3, lr_d=1e-3, **{**TOY, "g_width": 128, "d_width": 128}), (2,))
    hist = model.fit(train, epochs=6)                              # 300 generator steps
    cov = metrics.mode_coverage(model.sample(2500, seed=1), train.modes, train.std)
    assert cov["modes_captured"] > 1, cov
    assert hist.epochs[-1]["modes"] >= 1 and "G/loss" in hist.steps[-1] and "D/real_logit" in hist.steps[-1]


def test_config_validation_lists_valid_names():
    with pytest.raises(ValueError, match="valid: minimax, non_saturating, lsgan, hinge, wasserstein"):
        GANConfig(loss="bce")
    with pytest.raises(ValueError, match="valid: auto, .*dcgan_g"):
        GANConfig(g_net="resnet9")
    with pytest.raises(ValueError, match="Lipschitz"):
        GANConfig(loss="wasserstein")
    with pytest.raises(ValueError, match="gp_weight"):
        GANConfig(gp_weight=-1)
    with pytest.raises(ValueError, match="d_steps"):
        GANConfig(d_steps=0)                                        # inherited engine check
    with pytest.raises(ValueError, match="embed_dim"):
        ConditionalGANConfig(embed_dim=0)
    cfg = GANConfig(loss="ns")
    assert cfg.loss == "non_saturating"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.loss = "hinge"  # type: ignore[misc]


def test_wgan_gp_and_r1_train_and_log_penalties(ring):
    train, _ = ring
    small = torch.utils.data.Subset(train, range(1280))
    m = GAN(GANConfig(loss="wasserstein", gp_weight=10.0, d_steps=5, betas=(0.0, 0.9), **TOY), (2,))
    h = m.fit(small, 1)
    assert "D/gp" in h.steps[-1] and torch.isfinite(torch.tensor(h.steps[-1]["D/loss"]))
    m2 = GAN(GANConfig(loss="hinge", r1_weight=1.0, **TOY), (2,))
    assert "D/r1" in m2.fit(small, 1).steps[-1]


def test_image_gan_uses_no_batchnorm_in_critic_with_gradient_penalty():
    m = GAN(GANConfig(loss="wasserstein", gp_weight=10.0, g_width=8, d_width=8, device="cpu"), (1, 28, 28))
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.nets["D"].modules())
    m2 = GAN(GANConfig(g_width=8, d_width=8, spectral_norm=True, device="cpu"), (3, 32, 32))
    assert any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m2.nets["D"].modules())
    assert m2.sample(3).shape == (3, 3, 32, 32)


def test_wrong_data_shape_is_refused_before_training(ring, mnist_small):
    train, _ = ring
    m = GAN(GANConfig(**TOY), (1, 28, 28))
    before = _weights(m.nets)
    with pytest.raises(ValueError, match=r"shape \(1, 28, 28\).*\(2,\)"):
        m.fit(train, 1)
    assert all(torch.equal(before[k], v) for k, v in _weights(m.nets).items())
    bad = data.ImageDataset(mnist_small[0].images * 255, mnist_small[0].labels, 10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GAN(GANConfig(**TOY), (1, 28, 28)).fit(bad, 1)
    with pytest.raises(ValueError, match="no labels"):
        GAN(GANConfig(**TOY), (2,)).sample(4, labels=torch.zeros(4))


def test_gan_resume_gives_identical_weights(ring, tmp_path):
    train, _ = ring
    small = torch.utils.data.Subset(train, range(1024))
    cfg = GANConfig(ema_decay=0.9, checkpoint_every=3, **TOY)
    ref = GAN(cfg, (2,))
    ref.fit(small, 2)
    part = GAN(cfg, (2,))
    part.fit(small, 1, out_dir=tmp_path)                           # stop after epoch 1 ...
    resumed = GAN(dataclasses.replace(cfg, log_every=5), (2,))     # run-only fields may differ on resume
    resumed.fit(small, 2, out_dir=tmp_path)                        # ... and a fresh process resumes
    a, b = _weights(ref.nets), _weights(resumed.nets)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(ref.sample(16, seed=3), resumed.sample(16, seed=3))   # EMA generator too


def test_cgan_epoch_sample_save_load(mnist_small, tmp_path):
    train, _ = mnist_small
    cfg = ConditionalGANConfig(z_dim=16, g_width=16, d_width=16, batch_size=64, ema_decay=0.9, progress=False, device="cpu")
    model = ConditionalGAN(cfg, (1, 28, 28), 10)
    hist = model.fit(train, 1, out_dir=tmp_path / "run")
    assert len(hist.steps) == 4 and (tmp_path / "run" / "samples").is_dir()
    assert list((tmp_path / "run" / "samples").glob("*.png"))
    x = model.sample(20, torch.arange(20) % 10, seed=0)
    assert x.shape == (20, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert model.sample(5, 3, seed=0).shape == (5, 1, 28, 28)
    model.save(tmp_path / "m")
    loaded = ConditionalGAN.load(tmp_path / "m")
    assert torch.equal(loaded.sample(20, torch.arange(20) % 10, seed=0), x)
    assert loaded.g_ema is not None
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.sample(2, torch.tensor([0, 10]))
    with pytest.raises(CheckpointError):
        GAN.load(tmp_path / "m")                                  # a cgan directory is not a gan
    # labels matter: different classes, different images from the same z
    assert not torch.equal(model.sample(4, 0, seed=1), model.sample(4, 7, seed=1))


def test_cgan_refuses_out_of_range_labels(mnist_small):
    train, _ = mnist_small
    model = ConditionalGAN(ConditionalGANConfig(g_width=8, d_width=8, progress=False, device="cpu"), (1, 28, 28), 5)
    with pytest.raises(ValueError, match="num_classes=5"):
        model.fit(data.ImageDataset(train.images, (train.labels + 5) % 10, 10), 1)


def test_cli_gan_ring8_writes_samples_losses_metrics(tmp_path):
    out = tmp_path / "gan"
    rc = cli_main(["gan", "--dataset", "ring8", "--n-train", "1024", "--epochs", "1", "--width", "32",
                   "--no-progress", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_modes"] == 8 and 0 <= m["high_quality"] <= 1 and len(m["counts"]) == 8
    # the metrics are those of the saved generator (2,500 samples, seed 1), and agree with each other
    train, _ = data.load("ring8", n_train=1024)
    again = metrics.mode_coverage(GAN.load(out / "model").sample(2500, seed=1), train.modes, train.std)
    assert {k: again[k] for k in ("modes_captured", "high_quality", "counts")} == \
        {k: m[k] for k in ("modes_captured", "high_quality", "counts")}
    assert sum(m["counts"]) == round(m["high_quality"] * 2500) and m["modes_captured"] == sum(c > 0 for c in m["counts"])
    for f in ("samples.png", "losses.png", "model/weights.safetensors", "train/checkpoint.safetensors"):
        assert (out / f).is_file(), f
    assert cli_main(["gan", "--dataset", "ring8", "--loss", "bogus", "--out", str(tmp_path / "x")]) == 2


def test_from_dataset_infers_shapes(ring, mnist_small):
    assert GAN.from_dataset(ring[0], GANConfig(**TOY)).data_shape == (2,)
    m = ConditionalGAN.from_dataset(mnist_small[0], ConditionalGANConfig(g_width=8, d_width=8, device="cpu"))
    assert (m.data_shape, m.num_classes) == ((1, 28, 28), 10)
