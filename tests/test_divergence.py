"""Divergence: a NaN/Inf loss stops training with a message naming the step and the loss, suggesting
remedies, and the last good checkpoint is kept (same bytes, loadable, resumable)."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from advgan.engine import DivergenceError
from attacks import Classifier
from attacks.checkpoint import load_tensors

REMEDIES = r"Remedies: lower the learning rates \(lr_g / lr_d\), add a gradient penalty.*fewer discriminator steps \(d_steps\)"


def _poison(game, player: str, from_step: int, ckpt, seen: dict, value: float = float("nan")):
    """Make ``player``'s loss non-finite from round ``from_step`` on; remember the checkpoint bytes at that moment."""
    loss = game.loss

    def wrapped(p, batch, step):
        out, parts = loss(p, batch, step)
        if p == player and step >= from_step:
            if "bytes" not in seen:
                seen["bytes"] = hashlib.sha256(ckpt.read_bytes()).hexdigest()
                seen["step"] = step
            out = out * value
        return out, parts

    game.loss = wrapped
    return loss


def _check_kept(ckpt, seen):
    assert ckpt.is_file()
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == seen["bytes"], "the last good checkpoint was overwritten"
    tensors = load_tensors(ckpt)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, bad


def test_advgan_divergence_keeps_last_good_checkpoint(tmp_path):
    from advgan.attacker import AdvGAN, AdvGANConfig

    torch.manual_seed(0)
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    ds = TensorDataset(torch.rand(48, 1, 28, 28), torch.arange(48) % 10)
    cfg = AdvGANConfig(width=4, batch_size=8, checkpoint_every=2, log_every=10, progress=False, device="cpu")
    atk = AdvGAN(clf, cfg)
    ckpt = tmp_path / "run" / "checkpoint" / "checkpoint.safetensors"
    seen: dict = {}
    _poison(atk.game, "G", 3, ckpt, seen)
    with pytest.warns(UserWarning), pytest.raises(DivergenceError) as e:
        atk.fit(ds, epochs=1, out_dir=tmp_path / "run")
    msg = str(e.value)
    assert f"training diverged at step {seen['step'] + 1} (epoch 1): G/loss = nan" in msg
    assert f"the last good checkpoint is kept at {ckpt}" in msg
    import re

    assert re.search(REMEDIES, msg)
    _check_kept(ckpt, seen)
    assert not (tmp_path / "run" / "weights.safetensors").exists(), "a diverged attacker must not be saved"
    # the kept checkpoint resumes: a fresh attacker with the same config continues from step 2 and finishes
    atk2 = AdvGAN(clf, cfg)
    with pytest.warns(UserWarning):
        hist = atk2.fit(ds, epochs=1, out_dir=tmp_path / "run")
    assert hist.steps[0]["step"] <= 2 < hist.steps[-1]["step"] == 6
    assert all(math.isfinite(r["G/loss"]) for r in hist.steps)


def test_gan_divergence_names_discriminator_loss(tmp_path):
    from advgan import GAN, GANConfig

    pts = torch.randn(256, 2)
    gan = GAN(GANConfig(g_width=16, d_width=16, z_dim=2, batch_size=32, checkpoint_every=2, log_every=1,
                        progress=False, device="cpu"), data_shape=(2,))
    ckpt = tmp_path / "g" / "checkpoint.safetensors"
    seen: dict = {}
    _poison(gan, "D", 5, ckpt, seen, value=float("inf"))
    with pytest.raises(DivergenceError, match=rf"diverged at step 6 \(epoch 1\): D/loss = inf.*kept at {ckpt}.*{REMEDIES}"):
        gan.fit(TensorDataset(pts, torch.zeros(256, dtype=torch.long)), epochs=1, out_dir=tmp_path / "g")
    _check_kept(ckpt, seen)


def test_exploding_learning_rate_never_writes_a_nonfinite_checkpoint(tmp_path):
    """lr=1e30: the weights blow up; training stops, and no checkpoint with NaN/Inf weights is ever written."""
    from advgan import GAN, GANConfig

    pts = torch.randn(256, 2) * 3
    gan = GAN(GANConfig(g_width=16, d_width=16, z_dim=2, batch_size=32, lr_g=1e30, lr_d=1e30, checkpoint_every=1,
                        log_every=1, progress=False, device="cpu"), data_shape=(2,))
    with pytest.raises(DivergenceError, match=rf"diverged at step \d+ \(epoch \d\): .*(loss|weights).*{REMEDIES}"):
        gan.fit(TensorDataset(pts, torch.zeros(256, dtype=torch.long)), epochs=3, out_dir=tmp_path / "g")
    ckpt = tmp_path / "g" / "checkpoint.safetensors"
    if ckpt.is_file():
        tensors = load_tensors(ckpt)
        assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
