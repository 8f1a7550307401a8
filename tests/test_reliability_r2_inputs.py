"""Reliability round 2 — the inputs real users give (issue 15, categories 1, 3 and 5).

Every refusal asserts the error type, its message, and that nothing changed: the input tensors, the
model's weights, buffers and modes, and the bytes and modes of every file involved. Loading never
reaches a pickle: ``torch.load`` is replaced by a spy that records any call.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import unchanged
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from advgan import data
from attacks import CW, FGSM, PGD, Classifier, evaluate
from attacks.base import NonDifferentiableWarning
from attacks.checkpoint import CheckpointError
from attacks.checks import check_images, check_labels


# ---------------------------------------------------------------------- helpers
def modes(path: Path) -> dict[str, int]:
    """{relative path: st_mode} of everything under ``path``."""
    return {str(p.relative_to(path)): p.stat().st_mode for p in sorted(path.rglob("*"))}


class FilesKept:
    """Bytes (via ``unchanged``) and modes of every file under a folder, compared on exit."""

    def __init__(self, path: Path) -> None:
        self.path, self.before = path, modes(path)

    def check(self) -> None:
        assert modes(self.path) == self.before, "file modes changed"


@pytest.fixture
def torch_load_spy(monkeypatch):
    """Every call of torch.load (and torch.serialization.load) is recorded and refused."""
    calls: list = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setattr(torch.serialization, "load", spy)
    return calls


@pytest.fixture(scope="module")
def batch(mnist):
    train, _ = mnist
    return train.images[:8].clone(), train.labels[:8].clone()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


def _counts(rep) -> tuple:
    own = rep.to_dict()["worst_case"]["own"]
    return rep.n, rep.n_correct, own["n_fooled"], own["n_robust"], round(own["mean_linf"], 6)


def _saved(tmp_path: Path, clf: Classifier) -> Path:
    d = tmp_path / "clf"
    clf.save(d)
    return d


def _edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    for k, v in changes.items():
        if v is _DROP:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))


_DROP = object()


# ====================================================================== category 1: never a pickle
def _pickle_bomb(path: Path, marker: Path) -> None:
    """A torch.save file whose unpickling creates ``marker``."""

    class Bomb:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Bomb()}, path)


CRAFTED_ARCH = {
    "checkpoint_path": lambda bomb: {"source": "timm", "name": "resnet18", "kwargs": {"checkpoint_path": str(bomb)}},
    "pretrained_cfg_overlay": lambda bomb: {"source": "timm", "name": "resnet18",
                                            "kwargs": {"pretrained_cfg_overlay": {"file": str(bomb)}}},
    "pretrained_cfg": lambda bomb: {"source": "timm", "name": "resnet18", "kwargs": {"pretrained_cfg": {"file": str(bomb)}}},
    "pretrained": lambda bomb: {"source": "timm", "name": "resnet18", "kwargs": {"pretrained": True}},
    "path_as_value": lambda bomb: {"source": "timm", "name": "resnet18", "kwargs": {"global_pool": str(bomb)}},
    "hf_hub_name": lambda bomb: {"source": "timm", "name": "hf-hub:timm/resnet18.a1_in1k", "kwargs": {}},
    "local_dir_name": lambda bomb: {"source": "timm", "name": f"local-dir:{bomb.parent}", "kwargs": {}},
    "unknown_source": lambda bomb: {"source": "torch.load", "name": "resnet18", "kwargs": {}},
    "builtin_unknown_kwarg": lambda bomb: {"source": "builtin", "name": "tiny_cnn", "kwargs": {"weights": str(bomb)}},
    "num_classes_in_kwargs": lambda bomb: {"source": "builtin", "name": "tiny_cnn", "kwargs": {"num_classes": 3}},
}


@pytest.mark.parametrize("case", sorted(CRAFTED_ARCH))
def test_crafted_arch_never_reaches_torch_load(tmp_path, tiny, torch_load_spy, case):
    d = _saved(tmp_path, tiny)
    bomb, marker = tmp_path / "evil.pt", tmp_path / "PWNED"
    _pickle_bomb(bomb, marker)
    _edit_config(d, arch=CRAFTED_ARCH[case](bomb))
    kept = FilesKept(tmp_path)
    with unchanged(dirs=[tmp_path]), pytest.raises(CheckpointError, match=r"config\.json: arch") as e:
        Classifier.load(d)
    assert str(d / "config.json") in str(e.value)
    assert torch_load_spy == [] and not marker.exists()
    kept.check()


@pytest.mark.parametrize("kwargs, key", [({"checkpoint_path": "/tmp/w.pt"}, "checkpoint_path"),
                                         ({"pretrained_cfg_overlay": {"file": "/tmp/w.pt"}}, "pretrained_cfg_overlay"),
                                         ({"drop_rate": float("nan")}, "drop_rate"), ({"img_size": "big"}, "img_size")])
def test_create_refuses_what_could_not_be_loaded_again(torch_load_spy, kwargs, key):
    with pytest.raises(ValueError, match=rf"arch\.kwargs\.{key}"):
        Classifier.from_timm("resnet18", 10, in_chans=1, **kwargs)
    with pytest.raises(ValueError, match=r"arch\.kwargs\.depth.*not an allowed"):
        Classifier.create("tiny_cnn", 10, in_chans=1, depth=3)
    assert torch_load_spy == []


def test_allowlisted_kwargs_round_trip_without_torch_load(tmp_path, torch_load_spy, batch):
    clf = Classifier.from_timm("resnet18", 10, in_chans=1, drop_rate=0.1, global_pool="avg")
    clf.save(tmp_path / "r18")
    back = Classifier.load(tmp_path / "r18")
    assert back.arch == {"source": "timm", "name": "resnet18", "kwargs": {"drop_rate": 0.1, "global_pool": "avg"}}
    x, _ = batch
    assert torch.equal(back(x[:2]), clf(x[:2]))
    assert torch_load_spy == []


def test_dependency_floors_are_safe_by_default():
    import re

    from packaging.version import Version

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    floors = dict(re.findall(r'"(torch|timm)>=([\d.]+)"', text))
    assert Version(floors["torch"]) >= Version("2.6"), "torch < 2.6 unpickles by default (weights_only=False)"
    assert Version(floors["timm"]) >= Version("1.0.3")
    assert Version(torch.__version__.split("+")[0]) >= Version("2.6")
    import timm

    assert Version(timm.__version__) >= Version("1.0.3")


# ---------------------------------------------------------------------- malformed config.json (category 5)
MALFORMED_CLASSIFIER = {
    "missing_num_classes": ({"num_classes": _DROP}, r"'num_classes' is missing"),
    "missing_mean": ({"mean": _DROP}, r"'mean' is missing"),
    "num_classes_string": ({"num_classes": "10"}, r"'num_classes' must be an integer"),
    "num_classes_bool": ({"num_classes": True}, r"'num_classes' must be an integer"),
    "mean_string": ({"mean": "0.5"}, r"'mean' must be a non-empty list of finite numbers"),
    "std_nan": ({"std": [float("nan")]}, r"'std' must be a non-empty list"),
    "std_zero": ({"std": [0.0]}, r"std must be positive"),
    "input_size_zero": ({"input_size": [0, 28]}, r"'input_size' must be \[H, W\]"),
    "format_version_2": ({"format_version": 2}, r"'format_version' is 2"),
    "format_version_string": ({"format_version": "1"}, r"'format_version' is '1'"),
    "arch_list": ({"arch": ["tiny_cnn"]}, r"arch must be a JSON object"),
    "extra_list": ({"extra": [1]}, r"'extra' must be a JSON object"),
    "output_path": ({"output": "../x"}, r"'output' must be"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CLASSIFIER))
def test_malformed_classifier_config_names_the_file_and_key(tmp_path, tiny, torch_load_spy, case):
    d = _saved(tmp_path, tiny)
    changes, msg = MALFORMED_CLASSIFIER[case]
    _edit_config(d, **changes)
    kept = FilesKept(tmp_path)
    with unchanged(dirs=[tmp_path]), pytest.raises(CheckpointError, match=msg) as e:
        Classifier.load(d)
    assert str(d / "config.json") in str(e.value)
    kept.check()


@pytest.mark.parametrize("change, msg", [
    ({"format_version": 9}, r"'format_version' is 9"),
    ({"config": [1, 2]}, r"'config' must be a JSON object"),
    ({"nets": "G"}, r"'nets' must be a list"),
    ({"config": "LR"}, r"'config' must be a JSON object"),
    ({"config": {"lr_g": float("inf")}}, r"lr_g must be a positive learning rate"),
    ({"config": {"weight_decay": -1}}, r"weight_decay must be"),
    ({"config": {"bogus": 1}}, r"'config\.bogus' is not a field"),
])
def test_malformed_model_config_names_the_file_and_key(tmp_path, tiny, change, msg):
    from advgan import AdvGAN
    from advgan.attacker.model import AdvGANConfig

    d = tmp_path / "atk"
    AdvGAN(tiny, AdvGANConfig(eps=0.3)).save(d)
    cfg = json.loads((d / "config.json").read_text())
    if isinstance(change.get("config"), dict):
        change = {"config": {**cfg["config"], **change["config"]}}
    (d / "config.json").write_text(json.dumps({**cfg, **change}))
    kept = FilesKept(tmp_path)
    with unchanged(models=[tiny], dirs=[tmp_path]), pytest.raises(CheckpointError, match=msg) as e:
        AdvGAN.load(d, tiny)
    assert str(d / "config.json") in str(e.value)
    kept.check()


# ====================================================================== category 3: imagefolder
def _png(path: Path, size=(8, 8), seed=0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(path)


def _folder(root: Path, classes=("cat", "dog"), n=5) -> Path:
    for c in classes:
        for i in range(n):
            _png(root / c / f"{i}.png", seed=i)
    return root


def test_imagefolder_hidden_folders_and_files_are_not_data(tmp_path):
    root = _folder(tmp_path / "pets")
    _png(root / ".ipynb_checkpoints" / "0-checkpoint.png")
    _png(root / "cat" / ".ipynb_checkpoints" / "x.png")
    _png(root / "__MACOSX" / "cat" / "x.png")
    _png(root / "dog" / "._0.png")
    (root / ".DS_Store").write_bytes(b"\0\1")
    kept = FilesKept(tmp_path)
    with unchanged(dirs=[tmp_path]):
        train, test = data.load("imagefolder", root=root, test_fraction=0.4)
        assert train.base.dataset.classes == ["cat", "dog"] and train.num_classes == 2
        assert len(train) + len(test) == 10
    kept.check()


@pytest.mark.parametrize("present", ["train", "test", "val"])
def test_imagefolder_half_a_train_test_layout_is_refused(tmp_path, present):
    root = tmp_path / "ds"
    _folder(root / present)
    kept = FilesKept(tmp_path)
    with unchanged(dirs=[tmp_path]), pytest.raises(ValueError, match=rf"has a '{present}' folder but no '.*' folder.*point root at"):
        data.load("imagefolder", root=root)
    kept.check()


@pytest.mark.parametrize("fraction, exc", [(-0.1, ValueError), (0, ValueError), (1, ValueError), (1.5, ValueError),
                                           (float("nan"), ValueError), (True, TypeError), ("0.2", TypeError)])
def test_test_fraction_outside_0_1_is_refused(tmp_path, fraction, exc):
    root = _folder(tmp_path / "ds")
    with unchanged(dirs=[tmp_path]), pytest.raises(exc, match=r"test_fraction must be"):
        data.load("imagefolder", root=root, test_fraction=fraction)
    tiny_ds = data.ImageDataset(torch.rand(10, 1, 4, 4), torch.arange(10) % 2, 2)
    with pytest.raises(exc, match=r"test_fraction must be"):
        data.stratified_split(tiny_ds, fraction)


def test_corrupt_image_file_is_named(tmp_path):
    root = _folder(tmp_path / "ds")
    bad = root / "dog" / "3.png"
    bad.write_bytes(b"this is not a png")
    train, test = data.load("imagefolder", root=root, test_fraction=0.5)
    kept = FilesKept(tmp_path)
    with unchanged(dirs=[tmp_path]), pytest.raises(ValueError, match=rf"cannot read image file {bad}.*delete or replace"):
        data.to_image_dataset(train), data.to_image_dataset(test)
    kept.check()


def test_mixed_image_sizes_hint_at_image_size(tmp_path, tiny):
    root = _folder(tmp_path / "ds")
    _png(root / "cat" / "big.png", size=(12, 10))
    train, test = data.load("imagefolder", root=root, channels=1, test_fraction=0.5)
    loaders = [DataLoader(train, batch_size=16), DataLoader(test, batch_size=16)]
    with unchanged(models=[tiny], dirs=[tmp_path]):
        with pytest.raises(ValueError, match=r"different sizes \((8x8 and 12x10|12x10 and 8x8)\).*image_size="):
            data.to_image_dataset(train), data.to_image_dataset(test)
        with pytest.raises(ValueError, match=r"different sizes.*image_size="):
            evaluate(tiny, itertools.chain(*loaders), {"fgsm": FGSM(0.1)}, progress=False)
    fixed, _ = data.load("imagefolder", root=root, channels=1, test_fraction=0.5, image_size=8)
    assert data.to_image_dataset(fixed).images.shape[-2:] == (8, 8)


# ---------------------------------------------------------------------- every training batch is checked
def _late_bad(mnist, kind: str, n: int = 96, at: int = 80):
    train, _ = mnist
    x, y = train.images[:n].clone(), train.labels[:n].clone()
    if kind == "pixels_0_255":
        x[at] = x[at] * 255
    elif kind == "label_12":
        y[at] = 12
    elif kind == "nan":
        x[at, 0, 3, 3] = float("nan")
    return x, y


@pytest.mark.parametrize("kind, msg", [
    ("pixels_0_255", r"batch 6 of epoch 1: images must have pixels in \[0.0, 1.0\].*divide by 255"),
    ("label_12", r"batch 6 of epoch 1: labels must be class indices in \[0, 9\], found values in \[\d, 12\]"),
    ("nan", r"batch 6 of epoch 1: images contains? 1 NaN"),
])
def test_late_bad_batch_is_caught_in_classifier_training(tmp_path, mnist, kind, msg):
    from advgan.training.classifier import train_classifier

    x, y = _late_bad(mnist, kind)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)  # unshuffled: item 80 is in batch 6
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    with unchanged(tensors=[x, y]), pytest.raises(ValueError, match=msg):
        train_classifier(clf, loader, epochs=1, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_late_bad_label_is_caught_in_advgan_training(tmp_path, mnist, tiny):
    from advgan import AdvGAN
    from advgan.attacker.model import AdvGANConfig

    x, y = _late_bad(mnist, "label_12")
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    atk = AdvGAN(tiny, AdvGANConfig(eps=0.3, batch_size=16, progress=False))
    with unchanged(tensors=[x, y], models=[tiny]), warnings.catch_warnings(), \
            pytest.raises(ValueError, match=r"batch 6 of epoch 1: labels .* found values in \[\d, 12\]"):
        warnings.simplefilter("ignore")
        atk.fit(loader, epochs=1, out_dir=tmp_path / "atk")
    assert not (tmp_path / "atk" / "weights.safetensors").exists()


def test_device_check_needs_no_host_sync_and_reports_at_the_sync_point():
    """On an accelerator the guard only queues device ops: shown here on the 'meta' device, where any
    host read would fail; the deferred check (CPU, forced) raises at raise_if_bad naming the first bad batch."""
    from advgan.engine.datacheck import BatchGuard, BatchSpec

    spec = BatchSpec(num_classes=10, channels=1)
    meta = BatchGuard(spec, torch.device("meta"))
    assert meta.deferred
    for i in range(3):
        xb, yb = meta((torch.empty(4, 1, 8, 8, device="meta"), torch.empty(4, dtype=torch.long, device="meta")),
                      epoch=0, index=i)
        assert xb.device.type == "meta" and yb.dtype == torch.long
    guard = BatchGuard(spec, torch.device("cpu"), deferred=True)
    good = (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    bad = (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 12, 3]))
    guard(good, epoch=0, index=0)
    _, clamped = guard(bad, epoch=0, index=1)
    assert int(clamped.max()) == 9  # never reaches a device-side assert
    guard(good, epoch=0, index=2)
    with pytest.raises(ValueError, match=r"batch 2 of epoch 1: labels .* \[0, 12\]"):
        guard.raise_if_bad()
    guard.raise_if_bad()  # read once


def test_deferred_check_stops_before_any_checkpoint_of_the_bad_batch(tmp_path, mnist, monkeypatch):
    import advgan.engine.trainer as trainer_mod
    from advgan.engine.datacheck import BatchGuard
    from advgan.training.classifier import train_classifier

    monkeypatch.setattr(trainer_mod, "BatchGuard", lambda spec, device: BatchGuard(spec, device, deferred=True))
    x, y = _late_bad(mnist, "pixels_0_255")
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    with pytest.raises(ValueError, match=r"batch 6 of epoch 1: images must have pixels.*no checkpoint was written"):
        train_classifier(clf, loader, epochs=1, out_dir=tmp_path / "run", progress=False, checkpoint_every=2, log_every=100)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "checkpoint" / "checkpoint.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["json"])
    assert json.dumps(meta).count('"step": 4') >= 1 and '"step": 6' not in json.dumps(meta)


# ====================================================================== category 5: dtype policy
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("label_dtype", [torch.int8, torch.int16, torch.int32, torch.uint8])
def test_safe_dtypes_are_cast(tiny, batch, dtype, label_dtype):
    x, y = batch
    xd, yd = x.to(dtype), y.to(label_dtype)
    with unchanged(tensors=[xd, yd], models=[tiny]):
        adv = PGD(0.1, steps=2, seed=0)(tiny, xd, yd)
    assert adv.dtype == dtype and adv.shape == x.shape
    tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float64: 1e-7}[dtype]
    assert float((adv.double() - xd.double()).abs().max()) <= 0.1 + tol
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


def test_numpy_inputs_are_accepted(tiny, batch):
    x, y = batch
    xn, yn = x.numpy().astype(np.float64), y.numpy().astype(np.int32)
    xc, yc = xn.copy(), yn.copy()
    adv = FGSM(0.1)(tiny, xn, yn)
    assert isinstance(adv, torch.Tensor) and adv.dtype == torch.float64
    assert np.array_equal(xn, xc) and np.array_equal(yn, yc)
    rep = evaluate(tiny, [(xn, yn)], {"fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert rep.n == 8


UNSAFE = {
    "uint8_images": (lambda x, y: ((x * 255).to(torch.uint8), y), TypeError, r"x.float\(\) / 255"),
    "bool_images": (lambda x, y: (x > 0.5, y), TypeError, r"floating-point tensor"),
    "complex_images": (lambda x, y: (x.to(torch.complex64), y), TypeError, r"floating-point tensor"),
    "object_array": (lambda x, y: (np.array([None] * 8, dtype=object), y), TypeError, r"NumPy array of dtype object"),
    "float_labels": (lambda x, y: (x, y.float()), TypeError, r"integer class indices.*y.long\(\)"),
    "bool_labels": (lambda x, y: (x, y > 4), TypeError, r"integer class indices"),
    "nested_list": (lambda x, y: (x.tolist(), y), TypeError, r"torch.Tensor"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_dtypes_are_refused(tiny, batch, case):
    make, exc, msg = UNSAFE[case]
    x, y = batch
    bx, by = make(x.clone(), y.clone())
    tensors = [t for t in (bx, by) if isinstance(t, torch.Tensor)]
    with unchanged(tensors=tensors, models=[tiny]), pytest.raises(exc, match=msg):
        PGD(0.1, steps=1)(tiny, bx, by)


_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int32,
           torch.int64, torch.bool, torch.complex64]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(_DTYPES), dims=st.lists(st.integers(0, 3), min_size=0, max_size=5),
       scale=st.sampled_from([1.0, 255.0, -1.0, float("nan")]), numpy=st.booleans())
def test_property_image_validator_returns_a_valid_batch_or_a_clear_error(dtype, dims, scale, numpy):
    t = (torch.rand(dims) * scale).to(dtype) if dims else torch.tensor(0.5 * scale).to(dtype)
    src = t.numpy() if numpy and dtype != torch.bfloat16 else t
    before = t.clone()
    try:
        out = check_images(src)
    except (TypeError, ValueError) as e:
        assert str(e) and "x" in str(e)
    else:
        assert out.is_floating_point() and out.dim() == 4 and out.shape[0] > 0
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(torch.nan_to_num(t), torch.nan_to_num(before))


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(_DTYPES), n=st.integers(0, 4), lo=st.integers(-3, 12), hi=st.integers(0, 12))
def test_property_label_validator_casts_integers_or_refuses(dtype, n, lo, hi):
    y = torch.randint(min(lo, hi), max(lo, hi) + 1, (n,)).to(dtype)
    try:
        out = check_labels(y, n, 10)
    except (TypeError, ValueError) as e:
        assert "y" in str(e)
        assert not (not y.is_floating_point() and not y.is_complex() and y.dtype != torch.bool
                    and (n == 0 or (int(y.min()) >= 0 and int(y.max()) < 10)))
    else:
        assert out.dtype == torch.long and out.shape == (n,)


# ---------------------------------------------------------------------- output selector
class _Dict(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return {"logits": self.inner(x), "features": x.mean()}


class _Tuple(_Dict):
    def forward(self, x):
        return self.inner(x), x.mean()


class _HFOutput:
    def __init__(self, logits):
        self.logits, self.hidden_states = logits, None


class _HF(_Dict):
    def forward(self, x):
        return _HFOutput(self.inner(x))


@pytest.mark.parametrize("wrapper, output, name", [(_Dict, "logits", "dict"), (_Tuple, 0, "tuple"), (_HF, "logits", "_HFOutput"),
                                                   (_HF, lambda o: o.logits, "_HFOutput")])
def test_output_selector(tiny, batch, wrapper, output, name):
    x, y = batch
    raw = Classifier(wrapper(tiny.module), 10, 0.5, 0.5)
    with unchanged(tensors=[x, y], models=[raw]), pytest.raises(TypeError, match=rf"the model returned a {name}.*output="):
        PGD(0.1, steps=1)(raw, x, y)
    picked = Classifier(wrapper(tiny.module), 10, 0.5, 0.5, output=output)
    assert torch.equal(picked(x), tiny(x))
    assert torch.equal(PGD(0.1, steps=2, seed=0)(picked, x, y), PGD(0.1, steps=2, seed=0)(tiny, x, y))
    rep = evaluate(picked, [(x, y)], {"fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert rep.n == 8


def test_output_selector_errors_and_persistence(tmp_path, tiny, batch):
    x, _ = batch
    with pytest.raises(TypeError, match=r"output='scores' names a key.*keys \['logits', 'features'\]"):
        Classifier(_Dict(tiny.module), 10, output="scores")(x)
    with pytest.raises(TypeError, match=r"output=5 selects an item by index.*tuple of 2"):
        Classifier(_Tuple(tiny.module), 10, output=5)(x)
    with pytest.raises(TypeError, match=r"picked a Tensor|picked a float|not a logits tensor"):
        Classifier(_HF(tiny.module), 10, output="hidden_states")(x)
    with pytest.raises(TypeError, match=r"output must be None, a key"):
        Classifier(tiny.module, 10, output=True)
    with pytest.raises(ValueError, match=r"output must be a key or attribute name"):
        Classifier(tiny.module, 10, output="a/b")
    saved = Classifier(_Dict(tiny.module), 10, 0.5, 0.5, output="logits")
    saved.save(tmp_path / "d")
    back = Classifier.load(tmp_path / "d", module=_Dict(Classifier.create("tiny_cnn", 10, in_chans=1).module))
    assert back.output == "logits" and torch.equal(back(x), saved(x))
    Classifier(_HF(tiny.module), 10, 0.5, 0.5, output=lambda o: o.logits).save(tmp_path / "c")
    with pytest.raises(CheckpointError, match=r"callable output selector.*output=fn"):
        Classifier.load(tmp_path / "c", module=_HF(tiny.module))
    assert Classifier.load(tmp_path / "c", module=_HF(tiny.module), output=lambda o: o.logits)(x).shape == (8, 10)


# ---------------------------------------------------------------------- non-differentiable models, inference_mode
class _Detached(_Dict):
    def forward(self, x):
        return self.inner(x.detach())


class _ThroughNumpy(_Dict):
    def forward(self, x):
        return self.inner(torch.from_numpy(x.detach().cpu().numpy()))


@pytest.mark.parametrize("wrapper", [_Detached, _ThroughNumpy])
def test_non_differentiable_model_is_flagged_not_a_crash(tiny, batch, wrapper):
    x, y = batch
    model = Classifier(wrapper(tiny.module), 10, 0.5, 0.5)
    with unchanged(tensors=[x, y], models=[model]):
        with pytest.warns(NonDifferentiableWarning, match="gradient masking"):
            adv = PGD(0.1, steps=2)(model, x, y)
        assert float((adv - x).abs().max()) <= 0.1 + 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonDifferentiableWarning)
            rep = evaluate(model, [(x, y)], {"pgd": PGD(0.1, steps=2), "fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert rep.sanity["model_not_differentiable"] is True
    assert any(f.startswith("gradient masking: the model cannot be differentiated") for f in rep.flags)


@pytest.mark.parametrize("make", [lambda: PGD(0.1, steps=3, seed=0), lambda: FGSM(0.1), lambda: CW(2.0, steps=3)])
def test_attacks_work_under_inference_mode(tiny, batch, make):
    x, y = batch
    expected = make()(tiny, x, y)
    with unchanged(tensors=[x, y], models=[tiny]), torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        got = make()(tiny, xi, yi)
    assert torch.equal(got, expected) and not got.requires_grad


def test_evaluate_works_under_inference_mode(tiny, batch):
    x, y = batch
    ref = evaluate(tiny, [(x, y)], {"pgd": PGD(0.1, steps=2, seed=0)}, progress=False, grid_images=0, seed=1)
    with torch.inference_mode():
        got = evaluate(tiny, [(x.clone(), y.clone())], {"pgd": PGD(0.1, steps=2, seed=0)}, progress=False, grid_images=0, seed=1)
    assert _counts(got) == _counts(ref)


# ---------------------------------------------------------------------- iterable and dict datasets
class _Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


class _DictItems(Dataset):
    def __init__(self, x, y, keys=("pixel_values", "labels")):
        self.x, self.y, self.keys = x, y, keys

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {self.keys[0]: self.x[i], self.keys[1]: self.y[i]}


def test_iterable_dataset_training_refused_evaluation_works(tiny, batch):
    from advgan import AdvGAN
    from advgan.attacker.model import AdvGANConfig
    from advgan.training.classifier import train_classifier

    x, y = batch
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    for data_ in (_Stream(x, y), DataLoader(_Stream(x, y), batch_size=4)):
        with unchanged(tensors=[x, y], models=[clf, tiny]):
            with pytest.raises(TypeError, match=r"IterableDataset _Stream: training needs a map-style Dataset.*to_image_dataset"):
                train_classifier(clf, data_, epochs=1, progress=False)
            with pytest.raises(TypeError, match=r"IterableDataset _Stream"):
                AdvGAN(tiny, AdvGANConfig(eps=0.3, progress=False)).fit(data_, epochs=1)
    rep = evaluate(tiny, DataLoader(_Stream(x, y), batch_size=4), {"fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert rep.n == 8
    assert data.to_image_dataset(_Stream(x, y)).images.shape == x.shape


@pytest.mark.parametrize("keys", [("pixel_values", "labels"), ("image", "label"), ("img", "target")])
def test_dict_datasets_work(tiny, batch, keys):
    from advgan.training.classifier import train_classifier

    x, y = batch
    ds = _DictItems(x, y, keys)
    rep = evaluate(tiny, DataLoader(ds, batch_size=4), {"fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    ref = evaluate(tiny, DataLoader(TensorDataset(x, y), batch_size=4), {"fgsm": FGSM(0.1)}, progress=False, grid_images=0)
    assert _counts(rep) == _counts(ref)
    _, hist = train_classifier(Classifier.create("tiny_cnn", 10, in_chans=1), ds, epochs=1, batch_size=4, progress=False)
    assert hist.epochs[-1]["step"] == 2


def test_dict_dataset_with_unknown_keys_names_them(tiny, batch):
    from advgan.training.classifier import train_classifier

    x, y = batch
    ds = _DictItems(x, y, ("pic", "cls"))
    with unchanged(tensors=[x, y], models=[tiny]), pytest.raises(ValueError, match=r"a dict with keys \['cls', 'pic'\].*image key"):
        evaluate(tiny, DataLoader(ds, batch_size=4), {"fgsm": FGSM(0.1)}, progress=False)
    with pytest.raises(ValueError, match=r"a dict with keys \['cls', 'pic'\]"):
        train_classifier(Classifier.create("tiny_cnn", 10, in_chans=1), ds, epochs=1, batch_size=4, progress=False)


# ---------------------------------------------------------------------- config numbers
@pytest.mark.parametrize("field, value, msg", [("lr", math.inf, r"lr must be a positive learning rate"),
                                               ("lr", -1e-3, r"lr must be a positive learning rate"),
                                               ("weight_decay", -1.0, r"weight_decay must be a finite number >= 0"),
                                               ("weight_decay", math.nan, r"weight_decay must be"),
                                               ("seed", 2**64, r"seed must be <= 18446744073709551615"),
                                               ("seed", -1, r"seed must be >= 0")])
def test_config_numbers_are_refused(field, value, msg):
    from advgan.training.classifier import ClassifierConfig
    from defenses.finetune import FinetuneConfig

    for cls in (ClassifierConfig, FinetuneConfig):
        with pytest.raises(ValueError, match=msg):
            cls(**{field: value})


@settings(max_examples=30, deadline=None)
@given(v=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70), st.booleans()))
def test_property_weight_decay_accepts_exactly_finite_non_negative_numbers(v):
    from advgan.training.classifier import ClassifierConfig

    ok = not isinstance(v, bool) and math.isfinite(v) and v >= 0
    try:
        cfg = ClassifierConfig(weight_decay=v)
    except (TypeError, ValueError) as e:
        assert not ok and "weight_decay" in str(e)
    else:
        assert ok and cfg.weight_decay == v


def test_file_modes_helper_sees_a_chmod(tmp_path):
    (tmp_path / "f").write_text("x")
    kept = FilesKept(tmp_path)
    (tmp_path / "f").chmod(stat.S_IRUSR)
    with pytest.raises(AssertionError, match="modes changed"):
        kept.check()
