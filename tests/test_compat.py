"""advgan 0.1 compatibility: the old module paths import, 0.1 training checkpoints resume bit-identically,
and ``advgan.load`` reads any saved model by its kind.

``tests/data/v0_1`` holds one-epoch runs written by advgan 0.1 (commit 1c3890a; ``tests/make_v01_checkpoints.py``
re-creates them). The current code writes the same first epoch (weights, optimizer state, RNG: the same
tensors), and resuming either checkpoint for a second epoch gives the same weights, tensor for tensor.
The fixtures were written on one CPU; another CPU's float kernels (oneDNN picks them per instruction set) can
differ in the last bits. Where the first epoch is not bit-identical to the fixture, the comparisons fall back to
a tolerance (Adam turns last-bit gradient differences into steps of up to ~lr on near-zero parameters).
(The runs are one epoch, then resumed to two: the LR schedule of a run depends on its total length.)
"""
from __future__ import annotations

import importlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from attacks import Classifier
from attacks.checkpoint import CheckpointError, load_tensors

V01 = Path(__file__).parent / "data" / "v0_1"
COMMON = dict(batch_size=32, seed=3, device="cpu", progress=False)

OLD_PATHS = ["advgan.attacker", "advgan.blackbox", "advgan.gan", "advgan.pix2pix", "advgan.training", "advgan.generator_attack",
             "advgan.engine", "advgan.losses", "advgan.metrics", "advgan.pairs", "advgan.nets", "advgan.data", "advgan.history",
             "advgan.distributed", "advgan.modelio", "advgan.figures", "advgan.gan_utils", "advgan.nets.common",
             "advgan.nets.patchgan", "advgan.engine_checkpoint", "advgan.engine_optim"]


@pytest.mark.parametrize("path", OLD_PATHS)
def test_old_module_paths_import(path):
    mod = importlib.import_module(path)
    assert mod is not None


def test_old_paths_are_the_new_modules():
    from advgan.nets.patchgan import receptive_field

    import advgan
    from advgan.gans import gan, nets

    assert importlib.import_module("advgan.gan") is gan and advgan.nets is nets
    assert receptive_field is importlib.import_module("advgan.gans.nets.patchgan").receptive_field
    from advgan.blackbox import BlackBox, BlackBoxAdvGAN  # noqa: F401
    from advgan.gan import batch_loader  # noqa: F401

    from advgan.attacker import AdvGAN, AdvGANConfig, AdvGANGame  # noqa: F401
    from advgan.engine import DivergenceError, MinMaxGame, MinMaxTrainer, Player, TrainConfig  # noqa: F401
    from advgan.training import ClassifierConfig, accuracy, train_classifier  # noqa: F401


@pytest.fixture(scope="module")
def ds(mnist):
    from advgan import data

    train, _ = mnist
    return data.ImageDataset(train.images[:96], train.labels[:96], 10, "mnist5k-96")


@pytest.fixture(autouse=True)
def _one_thread():
    """The fixtures were written with one intra-op thread: more threads change float reductions in the last bits."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _clf():
    torch.manual_seed(0)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


def _resume(tmp_path, name):
    d = tmp_path / "resumed"
    shutil.copytree(V01 / name, d)
    return d


def _same_checkpoint(old: Path, new: Path, **loose: Any) -> bool:
    """The 0.1 checkpoint and the current one of the same run hold the same tensors (the current one adds callbacks').

    Returns whether they are bit-identical (else they agree within the cross-CPU tolerance; ``loose``: see ``_same``)."""
    a = load_tensors(old)
    b = {k: v for k, v in load_tensors(new).items() if not k.startswith("cb.")}
    exact = _bitwise(a, b)
    _same(a, b, exact=exact, **loose)
    return exact


def _bitwise(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _same(a: dict, b: dict, *, exact: bool = True, loose: frozenset[str] = frozenset(), loose_atol: float = 0.0) -> None:
    """``a`` and ``b`` hold the same tensors: bitwise when ``exact``, else within the cross-CPU tolerance; keys ending
    in one of ``loose`` (see :func:`_adam_params`) only within ``loose_atol``."""
    assert a.keys() == b.keys() and a
    if exact:
        assert not [k for k in a if not torch.equal(a[k], b[k])]
        return
    # integer tensors (RNG states, step counters, loader generators) must match exactly on any CPU
    assert not [k for k in a if not a[k].is_floating_point() and not torch.equal(a[k], b[k])]

    def close(k: str) -> bool:
        if any(k == s or k.endswith("." + s) for s in loose):
            return bool((a[k] - b[k]).abs().max() <= loose_atol)
        return torch.allclose(a[k], b[k], rtol=1e-2, atol=2e-3)

    far = [k for k in a if a[k].is_floating_point() and not close(k)]
    assert not far, f"tensors differ beyond the cross-CPU tolerance: {far[:5]}"


def _adam_params(nets: dict[str, torch.nn.Module]) -> frozenset[str]:
    """The names of the networks' parameters, as ``NET.path``.

    Adam's step is about its learning rate whatever the gradient's size, so where a gradient is tiny (a bias feeding a
    normalisation layer has an exactly zero one) a round-off difference of another CPU or torch build becomes a
    difference of up to ~lr per step. Against fixtures written by another build these parameters can agree only within
    ``lr`` x steps; optimiser moments, RNG states and counters keep the tight or exact checks."""
    return frozenset(f"{name}.{p}" for name, net in nets.items() for p, _ in net.named_parameters())


def test_v01_classifier_checkpoint_resumes_bit_identical(ds, tmp_path):
    from advgan.training import train_classifier

    d = _resume(tmp_path, "classifier")
    now = tmp_path / "now"
    train_classifier(_clf(), ds, epochs=1, out_dir=now, **COMMON)
    exact = _same_checkpoint(d / "checkpoint" / "checkpoint.safetensors", now / "checkpoint" / "checkpoint.safetensors")
    resumed, hist = train_classifier(_clf(), ds, epochs=2, out_dir=d, **COMMON)
    again, _ = train_classifier(_clf(), ds, epochs=2, out_dir=now, **COMMON)
    assert hist.steps[0]["step"] == 1 and hist.steps[-1]["step"] == 6  # epoch 1 (0.1) + epoch 2 (now)
    _same(resumed.state_dict(), again.state_dict(), exact=exact)


def test_v01_advgan_checkpoint_resumes_bit_identical(ds, tmp_path):
    from advgan import AdvGAN, AdvGANConfig

    # the 0.1 defaults (round 2 changed beta, g_steps, div_weight, spread_weight, ema_decay)
    cfg = AdvGANConfig(eps=0.3, width=4, beta=1.0, g_steps=1, div_weight=0.0, spread_weight=0.0, ema_decay=None, **COMMON)
    d, now = _resume(tmp_path, "advgan"), tmp_path / "now"
    with pytest.warns(UserWarning, match="is it trained"):
        m = AdvGAN(_clf(), cfg)
        # G's and D's weights: within Adam's ~lr per step of each other (2 epochs x 3 batches) unless bit-identical
        loose = dict(loose=_adam_params(m.nets), loose_atol=2 * max(cfg.lr_g, cfg.lr_d) * 2 * 3)
        m.fit(ds, epochs=1, out_dir=now)
        exact = _same_checkpoint(d / "checkpoint" / "checkpoint.safetensors", now / "checkpoint" / "checkpoint.safetensors",
                                 **loose)
        AdvGAN(_clf(), cfg).fit(ds, epochs=2, out_dir=d)
        AdvGAN(_clf(), cfg).fit(ds, epochs=2, out_dir=now)
    _same(load_tensors(d / "weights.safetensors"), load_tensors(now / "weights.safetensors"), exact=exact, **loose)


def test_v01_finetune_checkpoint_resumes_bit_identical(ds, tmp_path):
    from defenses import FinetuneConfig, finetune

    # method "clean" with the guard on: the weights do not depend on attack numerics (attacks' projections changed
    # by ulps after 0.1), while the guard and the best-epoch choice still have to pick up from the 0.1 history
    cfg = FinetuneConfig(method="clean", overfit_guard=True, epochs=2, **COMMON)
    d, now = _resume(tmp_path, "finetune"), tmp_path / "now"
    finetune(_clf(), ds, replace(cfg, epochs=1), val_loader=ds, out_dir=now)
    exact = _same_checkpoint(d / "checkpoint" / "checkpoint.safetensors", now / "checkpoint" / "checkpoint.safetensors")
    resumed, hist = finetune(_clf(), ds, cfg, val_loader=ds, out_dir=d)      # the 0.1 run: guard and best from its history
    straight, ref = finetune(_clf(), ds, cfg, val_loader=ds, out_dir=now)
    assert [e["epoch"] for e in hist.epochs] == [1, 2] and all("guard_robust_acc" in e for e in hist.epochs)
    assert [e.get("best") for e in hist.epochs] == [e.get("best") for e in ref.epochs]  # best epoch chosen alike
    _same(resumed.state_dict(), straight.state_dict(), exact=exact)


def test_v01_gan_checkpoint_resumes_bit_identical(tmp_path):
    from advgan import GAN, GANConfig, data

    pts = data.load("ring8", n_train=256)[0]
    cfg = GANConfig(z_dim=2, g_width=16, d_width=16, ema_decay=0.9, **COMMON)
    d, now = _resume(tmp_path, "gan"), tmp_path / "now"
    GAN(cfg, (2,)).fit(pts, 1, out_dir=now)
    exact = _same_checkpoint(d / "checkpoint.safetensors", now / "checkpoint.safetensors")
    a, b = GAN(cfg, (2,)), GAN(cfg, (2,))
    a.fit(pts, 2, out_dir=d)
    b.fit(pts, 2, out_dir=now)
    _same({k: v for n in a.nets for k, v in a.nets[n].state_dict().items()},
          {k: v for n in b.nets for k, v in b.nets[n].state_dict().items()}, exact=exact)
    sa, sb = a.sample(8, seed=0), b.sample(8, seed=0)             # the EMA generator too
    assert torch.equal(sa, sb) if exact else torch.allclose(sa, sb, rtol=1e-2, atol=2e-3)


def test_v01_checkpoint_with_other_settings_is_refused_naming_the_field(ds, tmp_path):
    from advgan.training import train_classifier

    d = _resume(tmp_path, "classifier")
    before = (d / "checkpoint" / "checkpoint.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match=r"different configuration \(train.lr: checkpoint 0.002 vs now 0.001\)"):
        train_classifier(_clf(), ds, epochs=2, out_dir=d, lr=1e-3, **COMMON)
    assert (d / "checkpoint" / "checkpoint.safetensors").read_bytes() == before


def test_load_dispatches_on_the_kind(ds, tmp_path):
    import advgan
    from advgan import GAN, AdvGAN, AdvGANConfig, GANConfig, Pix2Pix, Pix2PixConfig

    clf = _clf()
    clf.save(tmp_path / "clf")
    assert isinstance(advgan.load(tmp_path / "clf"), Classifier)
    AdvGAN(clf, AdvGANConfig(width=4, device="cpu")).save(tmp_path / "atk")
    with pytest.raises(TypeError, match=r"bound to the classifier it attacks.*classifier=clf"):
        advgan.load(tmp_path / "atk")
    atk = advgan.load(tmp_path / "atk", classifier=clf)
    assert isinstance(atk, AdvGAN) and atk.classifier is clf
    GAN(GANConfig(g_width=8, d_width=8, z_dim=2, device="cpu"), (2,)).save(tmp_path / "gan")
    assert isinstance(advgan.load(tmp_path / "gan"), GAN)
    Pix2Pix(Pix2PixConfig(g_width=8, d_width=8, device="cpu")).save(tmp_path / "p2p")
    assert isinstance(advgan.load(tmp_path / "p2p"), Pix2Pix)
    assert advgan.modelio.kinds() == ["advgan", "cgan", "classifier", "gan", "pix2pix"]
    with pytest.raises(CheckpointError, match="does not exist"):
        advgan.load(tmp_path / "missing")


def test_generator_is_a_property_everywhere(trained_tiny_clf):
    from advgan import GAN, AdvGAN, AdvGANConfig, GANConfig, Pix2Pix, Pix2PixConfig, data

    gan = GAN(GANConfig(z_dim=2, g_width=8, d_width=8, ema_decay=0.5, batch_size=64, progress=False, device="cpu"), (2,))
    assert gan.generator is gan.nets["G"]                     # before training: G itself
    gan.fit(data.load("ring8", n_train=128)[0], 1)
    assert gan.generator is gan.g_ema and gan.generator is not gan.nets["G"]   # after: the EMA copy
    p2p = Pix2Pix(Pix2PixConfig(g_width=8, d_width=8, device="cpu"))
    assert p2p.generator is p2p.nets["G"]
    atk = AdvGAN(trained_tiny_clf, AdvGANConfig(width=4, device="cpu"))
    assert atk.generator is atk.G and atk.nets == {"D": atk.D, "G": atk.G}


@pytest.mark.parametrize("name,config", [("classifier/checkpoint", "advgan.training.classifier:ClassifierConfig"),
                                         ("advgan/checkpoint", "advgan:AdvGANConfig"),
                                         ("finetune/checkpoint", "defenses:FinetuneConfig"), ("gan", "advgan:GANConfig")])
def test_every_field_added_since_0_1_says_how_old_checkpoints_resume(name, config):
    """A setting added after 0.1 is absent from 0.1 checkpoints: ``ADDED_FIELDS`` must give the value that
    reproduces the old behaviour, or every old checkpoint is refused as "a different configuration"."""
    import json

    from safetensors import safe_open

    from advgan.engine.checkpoint import ADDED_FIELDS, comparable_config

    module, cls = config.split(":")
    with safe_open(str(V01 / name / "checkpoint.safetensors"), "pt") as f:
        stored = json.loads(f.metadata()["json"])["config"]["train"]
    now = comparable_config(getattr(importlib.import_module(module), cls)(), {})["train"]
    missing = sorted(k for k in set(now) - set(stored) if k not in ADDED_FIELDS)
    assert not missing, f"add these to advgan.engine.checkpoint.ADDED_FIELDS: {missing}"
