"""Foundation: datasets, Classifier (normalization, timm, channels, resize, save/load), training."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advgan import data
from attacks import CheckpointError, Classifier, ThreatModel


def test_mnist5k_shapes_ranges_and_split_determinism(mnist):
    train, test = mnist
    assert (len(train), len(test)) == (4000, 1000)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.float32
    assert train.labels.dtype == torch.int64
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0 and float(train.images.max()) > 0.9
    assert torch.bincount(test.labels).tolist() == [100] * 10      # stratified
    again, _ = data.load("mnist5k")
    assert torch.equal(again.images, train.images)
    other, _ = data.load("mnist5k", seed=1)
    assert not torch.equal(other.images, train.images)
    # the split is a partition of the 5,000 images: no test image appears in train
    key = lambda imgs: {im.numpy().tobytes() for im in imgs}  # noqa: E731
    assert len(key(train.images) & key(test.images)) == 0


def test_digits_and_upsampling():
    tr, te = data.load("digits", image_size=28)
    assert tr.images.shape[1:] == (1, 28, 28) and len(tr) + len(te) == 1797
    assert float(tr.images.max()) <= 1.0


def test_toy_distributions():
    ring, _ = data.load("ring8", n_train=4000)
    r = ring.points.norm(dim=1)
    assert ring.modes.shape == (8, 2) and abs(float(r.mean()) - 1.0) < 0.01
    grid, _ = data.load("grid25", n_train=1000)
    assert grid.modes.shape == (25, 2) and float(grid.modes.abs().max()) == 4.0


def test_unknown_dataset_lists_valid():
    with pytest.raises(ValueError, match="mnist5k"):
        data.load("imagenet22k")


def test_imagefolder_from_real_pngs(tmp_path, mnist):
    from PIL import Image

    train, _ = mnist
    for i in range(40):
        c = int(train.labels[i])
        d = tmp_path / f"class_{c}"
        d.mkdir(exist_ok=True)
        Image.fromarray((train.images[i, 0] * 255).round().byte().numpy()).save(d / f"{i}.png")
    tr, te = data.load("imagefolder", root=tmp_path, channels=1)
    x, y = tr[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(tr) + len(te) == 40


def test_torchvision_download_failure_is_explained(tmp_path):
    with pytest.raises(RuntimeError, match="mnist5k"):
        data.load("mnist", root=tmp_path, download=False)


def test_normalization_inside_equals_manual():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.rand(2, 3, 8, 8)
    net(x)
    clf = Classifier(net, 5, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(clf(x), net((x - mean) / std), atol=1e-6)


def test_from_timm_config_channels_and_resize():
    clf = Classifier.from_timm("resnet18", 10, in_chans=1)
    assert clf.input_size is None                                  # resnets take 28x28 natively
    assert clf.mean.numel() == 1 and abs(float(clf.mean) - (0.485 + 0.456 + 0.406) / 3) < 1e-6
    vit = Classifier.from_timm("vit_tiny_patch16_224", 10, in_chans=3, data_chans=1)
    assert vit.input_size == (224, 224)                            # fixed-size model: resize inside
    assert vit(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="channel"):
        vit.check_input(torch.rand(2, 3, 28, 28))


def test_classifier_starts_frozen_and_unfreezes():
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    with clf.unfrozen():
        assert clf.training and all(p.requires_grad for p in clf.parameters())
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18"])
def test_save_load_round_trip_identical_logits(tmp_path, name):
    clf = Classifier.create(name, 10, in_chans=1)
    x = torch.rand(3, 1, 28, 28)
    clf.save(tmp_path)
    back = Classifier.load(tmp_path)
    assert torch.equal(clf(x), back(x))
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["kind"] == "classifier" and cfg["num_classes"] == 10


def test_load_custom_module_needs_module(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    Classifier(net, 10, mean=0.5, std=0.5).save(tmp_path)
    with pytest.raises(ValueError, match="module="):
        Classifier.load(tmp_path)
    back = Classifier.load(tmp_path, module=nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    assert torch.equal(back.module[1].weight, net[1].weight)


def test_load_refuses_pickle_and_truncated(tmp_path):
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    clf.save(tmp_path)
    data_bytes = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        Classifier.load(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        Classifier.load(tmp_path / "nope")


@pytest.mark.parametrize("bad, exc, msg", [
    (torch.rand(1, 28, 28), ValueError, "4-D"),
    (torch.rand(2, 3, 28, 28), ValueError, "channel"),
    (torch.rand(2, 1, 28, 28) * 255, ValueError, "255"),
    ((torch.rand(2, 1, 28, 28) - 0.13) / 0.3, ValueError, "normalized"),
    (torch.full((2, 1, 28, 28), float("nan")), ValueError, "NaN"),
    ((torch.rand(2, 1, 28, 28) * 255).to(torch.uint8), TypeError, "255"),
    ([[0.0]], TypeError, "torch.Tensor"),
])
def test_check_input_errors(bad, exc, msg):
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    with pytest.raises(exc, match=msg):
        clf.check_input(bad)


def test_wrong_num_classes_and_probabilities_flagged():
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 7))
    clf = Classifier(net, 10, mean=0.5, std=0.5)
    with pytest.raises(ValueError, match="num_classes"):
        clf.check_output(clf(torch.rand(2, 1, 28, 28)))
    probs = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(1)), 10)
    with pytest.warns(UserWarning, match="probabilities"):
        assert probs.check_output(probs(torch.rand(2, 1, 28, 28))) is True


def test_threat_model_eps_scale_hint():
    with pytest.raises(ValueError, match="8/255"):
        ThreatModel("linf", 8)
    with pytest.raises(ValueError, match="norm"):
        ThreatModel("l3", 0.1)


def test_training_improves_accuracy_and_cli_round_trip(tmp_path, mnist):
    from advgan.cli import main
    from advgan.training import accuracy

    train, test = mnist
    small_tr, small_te = train.subset(800), test.subset(300)
    out = tmp_path / "clf"
    rc = main(["train-classifier", "--model", "tiny_cnn", "--dataset", "digits", "--epochs", "3", "--lr", "0.01",
               "--no-progress", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    clf = Classifier.load(out)
    _, dtest = data.load("digits")
    acc = accuracy(clf, data.loader(dtest, 256))
    assert acc > 0.5                          # chance is 0.1
    # the Python API on real MNIST: accuracy rises from chance
    from advgan.training import train_classifier

    fresh = Classifier.create("tiny_cnn", 10, in_chans=1)
    before = accuracy(fresh, data.loader(small_te, 256))
    trained, hist = train_classifier(fresh, small_tr, small_te, epochs=3, lr=0.01, batch_size=32, progress=False, device="cpu")
    assert hist.epochs[-1]["test_accuracy"] > before + 0.3
    assert not trained.training and not any(p.requires_grad for p in trained.parameters())


def test_cli_rejects_impossible_values(tmp_path, capsys):
    from advgan.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train-classifier", "--epochs", "0", "--out", str(tmp_path)])
    assert e.value.code != 0
    assert main(["train-classifier", "--model", "resnet9000", "--epochs", "1", "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
