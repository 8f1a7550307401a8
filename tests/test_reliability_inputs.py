"""Bad input everywhere public: a clear ValueError/TypeError (or a non-zero CLI exit) raised before any work.

Every case also checks that nothing changed: the input tensors, the model's parameters, buffers and
train/eval mode, and every file under the folders involved (see ``reliability_helpers.unchanged``).
"""
from __future__ import annotations

import pytest
import torch
from reliability_helpers import unchanged
from torch import nn
from torch.utils.data import TensorDataset

from attacks import CW, FGSM, PGD, Classifier, RandomNoise, evaluate
from attacks.base import make_attack
from attacks.checkpoint import CheckpointError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clf():
    torch.manual_seed(0)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


@pytest.fixture(scope="module")
def batch(mnist):
    _, test = mnist
    return test.images[:16].clone(), test.labels[:16].clone()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, clf, mnist):
    """A saved classifier and a saved (barely trained) AdvGAN attacker of it."""
    from advgan.attacker import AdvGAN, AdvGANConfig

    root = tmp_path_factory.mktemp("saved")
    clf.save(root / "clf")
    train, _ = mnist
    atk = AdvGAN(clf, AdvGANConfig(eps=0.3, width=4, batch_size=32, progress=False, device="cpu"))
    atk.fit(train.subset(64), epochs=1)
    atk.save(root / "atk")
    return root


def _mnist_normalized(x):
    return (x - 0.1307) / 0.3081


# ---------------------------------------------------------------------- images
IMAGE_CASES = {
    "3d": (lambda x: x[:, 0], ValueError, r"4-D \(N, C, H, W\).*unsqueeze"),
    "2d_flattened": (lambda x: x.flatten(1), ValueError, r"4-D.*Reshape"),
    "wrong_channels": (lambda x: x.repeat(1, 2, 1, 1), ValueError, r"2 channel\(s\).*takes 1"),
    "normalized": (_mnist_normalized, ValueError, r"looks normalized with mean/std: pass raw pixels"),
    "nan": (lambda x: torch.where(torch.arange(x.numel()).view_as(x) == 5, torch.nan, x), ValueError, r"NaN/Inf"),
    "inf": (lambda x: torch.where(torch.arange(x.numel()).view_as(x) == 7, torch.inf, x), ValueError, r"NaN/Inf"),
    "uint8_0_255": (lambda x: (x * 255).round().to(torch.uint8), TypeError, r"0-255 integer pixels: pass x.float\(\) / 255"),
    "float_0_255": (lambda x: x * 255, ValueError, r"0-255 pixels: divide by 255"),
    "not_a_tensor": (lambda x: x.tolist(), TypeError, r"torch.Tensor.*torch.as_tensor"),
    "empty_batch": (lambda x: x[:0], ValueError, r"empty batch"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
@pytest.mark.parametrize("attack", ["pgd", "fgsm", "cw", "noise"])
def test_attack_rejects_bad_images(clf, batch, case, attack):
    make, exc, msg = IMAGE_CASES[case]
    x, y = batch
    bad = make(x.clone())
    atk = {"pgd": PGD(eps=0.3, steps=2), "fgsm": FGSM(eps=0.3), "cw": CW(steps=2), "noise": RandomNoise(eps=0.3)}[attack]
    yy = y[: bad.shape[0]] if hasattr(bad, "shape") and bad.ndim >= 1 else y
    tensors = [bad, yy] if isinstance(bad, torch.Tensor) else [yy]
    with unchanged(tensors=tensors, models=[clf]), pytest.raises(exc, match=msg):
        atk(clf, bad, yy)


# ---------------------------------------------------------------------- labels / targets
LABEL_CASES = {
    "out_of_range": (lambda y: y + 10, ValueError, r"class indices in \[0, 9\].*num_classes"),
    "negative": (lambda y: y - 100, ValueError, r"class indices in \[0, 9\]"),
    "float_dtype": (lambda y: y.float(), TypeError, r"integer class indices.*y.long\(\)"),
    "one_hot": (lambda y: torch.nn.functional.one_hot(y, 10), ValueError, r"1-D.*view\(-1\)"),
    "batch_size": (lambda y: y[:-3], ValueError, r"13 labels but the image batch has 16 images"),
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_attack_rejects_bad_labels(clf, batch, case):
    make, exc, msg = LABEL_CASES[case]
    x, y = batch
    bad = make(y.clone())
    with unchanged(tensors=[x, bad], models=[clf]), pytest.raises(exc, match=msg):
        PGD(eps=0.3, steps=2)(clf, x, bad)


def test_targeted_attack_target_equal_to_label(clf, batch):
    x, y = batch
    t = y.clone()
    t[1:] = (y[1:] + 1) % 10  # one target equals its label
    with unchanged(tensors=[x, y, t], models=[clf]), \
            pytest.raises(ValueError, match=r"target equals the true label for 1 of 16.*random_targets"):
        PGD(eps=0.3, steps=2)(clf, x, y, target=t)


def test_targeted_attack_target_out_of_range(clf, batch):
    x, y = batch
    t = (y + 1) % 10 + 10
    with unchanged(tensors=[x, y, t], models=[clf]), pytest.raises(ValueError, match=r"target must be class indices in \[0, 9\]"):
        FGSM(eps=0.1)(clf, x, y, target=t)


def test_model_not_a_module(batch):
    x, y = batch
    with unchanged(tensors=[x, y]), pytest.raises(TypeError, match=r"torch.nn.Module"):
        PGD(eps=0.3)(lambda t: t, x, y)


# ---------------------------------------------------------------------- budgets and names
@pytest.mark.parametrize("eps, norm, exc, msg", [
    (0.0, "linf", ValueError, r"positive finite number, got 0"),
    (-0.1, "l2", ValueError, r"positive finite number"),
    (float("nan"), "linf", ValueError, r"positive finite number"),
    (8, "linf", ValueError, r"did you mean 8/255 = 0.0314"),
    (0.3, "l3", ValueError, r"unknown norm 'l3'; choose one of linf, l2"),
    ("0.3", "linf", TypeError, r"eps must be a number"),
])
@pytest.mark.parametrize("attack", [PGD, FGSM, RandomNoise])
def test_attack_rejects_bad_eps_and_norm(eps, norm, exc, msg, attack):
    with pytest.raises(exc, match=msg):
        attack(eps=eps, norm=norm)


def test_config_rejects_eps_of_wrong_scale():
    from advgan.attacker import AdvGANConfig
    from defenses import FinetuneConfig

    with pytest.raises(ValueError, match=r"8/255"):
        AdvGANConfig(eps=8)
    with pytest.raises(ValueError, match=r"8/255"):
        FinetuneConfig(eps=8)
    with pytest.raises(ValueError, match=r"unknown norm 'l1'; valid choices: linf, l2"):
        AdvGANConfig(norm="l1")


def test_unknown_attack_name_lists_valid():
    with pytest.raises(ValueError, match=r"unknown attack 'pgdd'; valid: .*fgsm.*pgd.*foolbox:<AttackName>"):
        make_attack("pgdd")


def test_unknown_foolbox_attack_name():
    from attacks import FoolboxAttack

    with pytest.raises(ValueError, match=r"LinfPGD"):
        FoolboxAttack("NoSuchAttack", eps=0.3)


def test_unknown_gan_loss_lists_valid():
    from advgan.gan import GANConfig

    from advgan.attacker import AdvGANConfig

    with pytest.raises(ValueError, match=r"non_saturating.*hinge|hinge.*non_saturating"):
        GANConfig(loss="wgan-foo")
    with pytest.raises(ValueError, match=r"lsgan"):
        AdvGANConfig(gan_loss="nope")


def test_unknown_architecture_lists_valid():
    with pytest.raises(ValueError, match=r"tiny_cnn"):
        Classifier.create("tiny_cnnn", 10, in_chans=1)
    from advgan.gan import GANConfig

    with pytest.raises(ValueError, match=r"unknown g_net 'nope'; valid: auto, .*dcgan"):
        GANConfig(g_net="nope")


def test_unknown_dataset_lists_valid(tmp_path):
    from advgan import data

    with unchanged(dirs=[tmp_path]), pytest.raises(ValueError, match=r"unknown dataset 'mnist6k'; valid names: .*mnist5k"):
        data.load("mnist6k")


def test_unknown_finetune_method_lists_valid():
    from defenses import FinetuneConfig

    with pytest.raises(ValueError, match=r"unknown method 'adv'; valid methods: .*pgd-at.*trades"):
        FinetuneConfig(method="adv")


# ---------------------------------------------------------------------- classifiers that misbehave
class _Softmaxed(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


def test_probability_outputs_are_flagged(clf, batch):
    x, y = batch
    probs = Classifier(_Softmaxed(clf.module), 10, mean=(0.5,), std=(0.5,))
    with unchanged(tensors=[x], models=[probs]):
        with torch.no_grad():
            out = probs(x)
        with pytest.warns(UserWarning, match=r"probabilities, not logits.*remove the final softmax"):
            assert probs.check_output(out) is True
        with torch.no_grad():
            assert clf.check_output(clf(x)) is False
        report = evaluate(probs, [(x, y)], {"fgsm": FGSM(eps=0.1)}, progress=False, grid_images=0)
    assert report.sanity["outputs_look_like_probabilities"] is True
    assert any("probabilit" in f for f in report.flags)


def test_advgan_refuses_a_probability_classifier(mnist, tmp_path):
    from advgan.attacker import AdvGAN, AdvGANConfig

    torch.manual_seed(0)
    probs = Classifier(_Softmaxed(Classifier.create("tiny_cnn", 10, in_chans=1).module), 10, mean=(0.5,), std=(0.5,))
    train, _ = mnist
    ds = train.subset(32)
    atk = AdvGAN(probs, AdvGANConfig(width=4, progress=False, device="cpu"))
    with unchanged(tensors=[ds.images, ds.labels], models=[probs, atk.G, atk.D], dirs=[tmp_path]), \
            pytest.raises(ValueError, match=r"returns probabilities.*needs logits.*Remove the final softmax"):
        atk.fit(ds, epochs=1, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


class _FiveLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_wrong_number_of_classes(batch, mnist, tmp_path):
    from advgan.attacker import AdvGAN, AdvGANConfig
    from advgan.training import train_classifier

    x, y = batch
    torch.manual_seed(0)
    bad = Classifier(_FiveLogits(), 10)
    train, _ = mnist
    ds = train.subset(32)
    with unchanged(tensors=[x, y, ds.images], models=[bad], dirs=[tmp_path]):
        with pytest.raises(ValueError, match=r"returned shape \(16, 5\) but the Classifier declares num_classes=10"):
            with torch.no_grad():
                bad.check_output(bad(x))
        with pytest.raises(ValueError, match=r"returned shape \(16, 5\).*\(N, num_classes\) logits"):
            evaluate(bad, [(x, y)], {"fgsm": FGSM(eps=0.1)}, progress=False, grid_images=0)
        with pytest.raises(ValueError, match=r"returned shape \(\d+, 5\) but declares num_classes=10"):
            AdvGAN(bad, AdvGANConfig(width=4, progress=False, device="cpu")).fit(ds, epochs=1, out_dir=tmp_path / "atk")
        with pytest.raises(ValueError, match=r"returned shape .*5\) but the Classifier declares num_classes=10"):
            train_classifier(bad, ds, epochs=1, out_dir=tmp_path / "clf", progress=False, device="cpu")
    assert not any(tmp_path.iterdir())


def test_classifier_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2"):
        Classifier(nn.Linear(4, 1), 1)
    with pytest.raises(ValueError, match=r"std must be positive"):
        Classifier(nn.Linear(4, 2), 2, mean=(0.5,), std=(0.0,))
    with pytest.raises(TypeError, match=r"torch.nn.Module"):
        Classifier("resnet18", 10)


# ---------------------------------------------------------------------- datasets
def test_empty_dataset_everywhere(clf, tmp_path):
    from advgan import data
    from advgan.attacker import AdvGAN, AdvGANConfig
    from advgan.training import train_classifier
    from defenses import finetune

    empty = data.ImageDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long), 10, "empty")
    with unchanged(models=[clf], dirs=[tmp_path]):
        with pytest.raises(ValueError, match=r"empty"):
            data.loader(empty, 8)
        with pytest.raises(ValueError, match=r"empty"):
            AdvGAN(clf, AdvGANConfig(width=4, progress=False)).fit(empty, epochs=1, out_dir=tmp_path / "a")
        with pytest.raises(ValueError, match=r"empty"):
            train_classifier(clf, empty, epochs=1, out_dir=tmp_path / "c", progress=False)
        with pytest.raises(ValueError, match=r"empty"):
            finetune(clf, empty, method="clean", epochs=1, out_dir=tmp_path / "f", progress=False)
        with pytest.raises(ValueError, match=r"empty"):
            evaluate(clf, [], {"fgsm": FGSM(eps=0.1)}, progress=False)
    assert not any(tmp_path.iterdir())


def test_training_data_with_bad_pixels_or_labels(clf, mnist, tmp_path):
    """AdvGAN, train_classifier and finetune check their data before training (nothing written)."""
    from advgan import data
    from advgan.attacker import AdvGAN, AdvGANConfig
    from advgan.training import train_classifier
    from defenses import finetune

    train, _ = mnist
    sub = train.subset(64)
    scaled = data.ImageDataset(sub.images * 255, sub.labels.clone(), 10, "x255")
    badlab = data.ImageDataset(sub.images.clone(), sub.labels + 10, 10, "y+10")
    rgb = data.ImageDataset(sub.images.repeat(1, 3, 1, 1), sub.labels.clone(), 10, "rgb")
    tensors = [scaled.images, badlab.labels, rgb.images]
    with unchanged(tensors=tensors, models=[clf], dirs=[tmp_path]):
        for ds, msg in ((scaled, r"divide by 255"), (badlab, r"class indices in \[0, 9\]"), (rgb, r"3 channel\(s\)")):
            with pytest.raises(ValueError, match=msg):
                AdvGAN(clf, AdvGANConfig(width=4, progress=False, device="cpu")).fit(ds, epochs=1, out_dir=tmp_path / "a")
            with pytest.raises(ValueError, match=msg):
                train_classifier(clf, ds, epochs=1, out_dir=tmp_path / "c", progress=False, device="cpu")
            with pytest.raises(ValueError, match=msg):
                finetune(clf, ds, method="clean", epochs=1, out_dir=tmp_path / "f", progress=False, device="cpu")
    assert not any(tmp_path.iterdir())


def test_conditional_gan_label_out_of_range(tmp_path):
    from advgan.gan import ConditionalGANConfig

    from advgan import ConditionalGAN

    x = torch.rand(16, 1, 28, 28)
    y = torch.full((16,), 12, dtype=torch.long)
    gan = ConditionalGAN(ConditionalGANConfig(g_width=8, d_width=8, z_dim=8, progress=False, device="cpu"),
                         (1, 28, 28), num_classes=10)
    with unchanged(tensors=[x, y], models=list(gan.nets.values()), dirs=[tmp_path]), \
            pytest.raises(ValueError, match=r"label 12 is out of range for num_classes=10"):
        gan.fit(TensorDataset(x, y), epochs=1, out_dir=tmp_path / "g")


def test_gan_data_of_wrong_shape(tmp_path):
    from advgan.gan import GANConfig

    from advgan import GAN

    pts = torch.randn(32, 3)
    gan = GAN(GANConfig(g_width=8, d_width=8, z_dim=2, progress=False, device="cpu"), data_shape=(2,))
    with unchanged(tensors=[pts], models=list(gan.nets.values()), dirs=[tmp_path]), \
            pytest.raises(ValueError, match=r"built for samples of shape \(2,\), the data has \(3,\)"):
        gan.fit(TensorDataset(pts, torch.zeros(32, dtype=torch.long)), epochs=1, out_dir=tmp_path / "g")


# ---------------------------------------------------------------------- AdvGAN use
def test_targeted_advgan_needs_targets(clf, batch):
    from advgan.attacker import AdvGAN, AdvGANConfig

    x, y = batch
    atk = AdvGAN(clf, AdvGANConfig(width=4, targeted=True))
    with unchanged(tensors=[x, y], models=[clf, atk.G]):
        with pytest.raises(ValueError, match=r"trained targeted: pass target="):
            atk.perturb(x)
        with pytest.raises(ValueError, match=r"target must be class indices in \[0, 9\]"):
            atk.perturb(x, target=y + 10)
        with pytest.raises(ValueError, match=r"target equals the true label"):
            atk.as_attack()(clf, x, y, target=y)
    untargeted = AdvGAN(clf, AdvGANConfig(width=4))
    with pytest.raises(ValueError, match=r"untargeted.*without target="):
        untargeted.perturb(x, target=(y + 1) % 10)


def test_advgan_rejects_a_plain_module(batch):
    from advgan.attacker import AdvGAN

    with pytest.raises(TypeError, match=r"wrap your Linear: Classifier\(module"):
        AdvGAN(nn.Linear(784, 10))


def test_augmentation_and_finetune_arguments(clf, batch):
    from defenses import AdversarialAugmentation, FinetuneConfig, finetune

    x, y = batch
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got 1.5"):
        AdversarialAugmentation([FGSM(eps=0.1)], fraction=1.5)
    with pytest.raises(ValueError, match=r"source list is empty"):
        AdversarialAugmentation([])
    with pytest.raises(ValueError, match=r"weights has 1 entries but there are 2 sources"):
        AdversarialAugmentation([FGSM(eps=0.1), PGD(eps=0.1)], weights=[1.0])
    with pytest.raises(ValueError, match=r"one norm"):
        AdversarialAugmentation([FGSM(eps=0.1), PGD(eps=1.0, norm="l2")])
    aug = AdversarialAugmentation([FGSM(eps=0.1)], fraction=0.5)
    with unchanged(tensors=[x, y], models=[clf]), pytest.raises(ValueError, match=r"looks normalized"):
        aug(clf, _mnist_normalized(x), y)
    with unchanged(models=[clf]), pytest.raises(ValueError, match=r"outside the config's threat model"):
        finetune(clf, TensorDataset(x, y), FinetuneConfig(method="augment", eps=0.1, epochs=1, progress=False),
                 sources=[PGD(eps=0.3, steps=2)])
    with pytest.raises(TypeError, match=r"must be an attacks.Classifier"):
        finetune(clf.module, TensorDataset(x, y))


@pytest.mark.parametrize("field, value, msg", [
    ("lr_g", 0.0, r"lr_g must be a positive learning rate"),
    ("batch_size", 0, r"batch_size must be >= 1"),
    ("d_steps", -1, r"d_steps must be >= 1"),
    ("lr_schedule", "step", r"unknown lr_schedule 'step'; valid choices: constant, linear, cosine"),
    ("ema_decay", 1.5, r"ema_decay must be in \(0, 1\)"),
])
def test_engine_config_rejects_impossible_values(field, value, msg):
    from advgan.attacker import AdvGANConfig

    with pytest.raises(ValueError, match=msg):
        AdvGANConfig(**{field: value})


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_directory_missing(tmp_path, clf):
    from advgan.attacker import AdvGAN

    with unchanged(models=[clf], dirs=[tmp_path]):
        with pytest.raises(CheckpointError, match=r"does not exist; train one with `advgan train-classifier`"):
            Classifier.load(tmp_path / "nope")
        with pytest.raises(CheckpointError, match=r"advgan directory .* does not exist"):
            AdvGAN.load(tmp_path / "nope", clf)
    assert not (tmp_path / "nope").exists()


def test_checkpoint_truncated(tmp_path, saved, clf):
    import shutil

    from advgan.attacker import AdvGAN

    clf_dir, atk_dir = tmp_path / "clf", tmp_path / "atk"
    shutil.copytree(saved / "clf", clf_dir)
    shutil.copytree(saved / "atk", atk_dir)
    w = clf_dir / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    aw = atk_dir / "weights.safetensors"
    aw.write_bytes(aw.read_bytes()[:100])
    with unchanged(models=[clf], dirs=[tmp_path]):
        with pytest.raises(CheckpointError, match=r"not a valid safetensors file \(truncated or corrupted\?\)"):
            Classifier.load(clf_dir)
        with pytest.raises(CheckpointError, match=r"not a valid safetensors file"):
            AdvGAN.load(atk_dir, clf)
        cfg = clf_dir / "config.json"
        text = cfg.read_text()
    cfg.write_text(text[: len(text) // 2])
    with unchanged(dirs=[tmp_path]), pytest.raises(CheckpointError, match=r"not valid JSON \(truncated or corrupted\?\)"):
        Classifier.load(clf_dir)


def test_checkpoint_from_another_component(saved, clf, tmp_path):
    from advgan.gan import GAN

    from advgan.attacker import AdvGAN

    with unchanged(models=[clf], dirs=[saved]):
        with pytest.raises(CheckpointError, match=r"holds a advgan checkpoint, expected classifier.*wrong directory"):
            Classifier.load(saved / "atk")
        with pytest.raises(CheckpointError, match=r"holds a classifier checkpoint, expected advgan"):
            AdvGAN.load(saved / "clf", clf)
        with pytest.raises(CheckpointError, match=r"holds a (advgan|classifier) checkpoint, expected gan"):
            GAN.load(saved / "atk")


def test_advgan_for_another_classifier(saved):
    from advgan.attacker import AdvGAN

    other = Classifier.create("tiny_cnn", 5, in_chans=1)
    with unchanged(models=[other], dirs=[saved]), pytest.raises(ValueError, match=r"attacker for 10 classes.*this classifier has 5"):
        AdvGAN.load(saved / "atk", other)


def test_weights_of_another_architecture(saved, tmp_path):
    import json
    import shutil

    d = tmp_path / "clf"
    shutil.copytree(saved / "clf", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["arch"]["name"] = "small_cnn"
    (d / "config.json").write_text(json.dumps(cfg))
    with unchanged(dirs=[tmp_path]), pytest.raises(CheckpointError, match=r"do not fit this architecture.*another model"):
        Classifier.load(d)


def test_training_out_dir_of_another_component(saved, mnist, tmp_path):
    """Resuming into a folder holding another kind of training checkpoint is refused; the file is kept."""
    import shutil

    from advgan.attacker import AdvGAN, AdvGANConfig
    from advgan.training import train_classifier

    train, _ = mnist
    ds = train.subset(64)
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    torch.manual_seed(0)
    c = Classifier.create("tiny_cnn", 10, in_chans=1)
    train_classifier(c, ds, epochs=1, out_dir=tmp_path / "clfrun", progress=False, device="cpu", batch_size=32)
    shutil.copy(tmp_path / "clfrun" / "checkpoint" / "checkpoint.safetensors", run / "checkpoint" / "checkpoint.safetensors")
    atk = AdvGAN(c, AdvGANConfig(width=4, progress=False, device="cpu", batch_size=32))
    with unchanged(models=[c, atk.G, atk.D], dirs=[tmp_path]), \
            pytest.raises(CheckpointError, match=r"is a classifier-training checkpoint; this is a advgan"):
        atk.fit(ds, epochs=1, out_dir=run)


# ---------------------------------------------------------------------- CLI
def _cli(argv, capsys):
    from advgan.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv, msg", [
    (["train-classifier", "--epochs", "0", "--out", "{tmp}/o"], r"argument --epochs: expected a positive integer, got 0"),
    (["train-classifier", "--lr", "-1", "--out", "{tmp}/o"], r"argument --lr: expected a positive finite number"),
    (["train-classifier", "--batch-size", "abc", "--out", "{tmp}/o"], r"argument --batch-size: expected a positive integer"),
    (["train-classifier", "--dataset", "mnist6k", "--out", "{tmp}/o"], r"unknown dataset 'mnist6k'; valid names"),
    (["train-classifier", "--model", "tiny_cnnn", "--dataset", "digits", "--out", "{tmp}/o"], r"tiny_cnn"),
    (["train-classifier", "--device", "cuda:7", "--model", "tiny_cnn", "--dataset", "digits", "--out", "{tmp}/o"], r"device|CUDA"),
    (["evaluate", "--classifier", "{tmp}/missing", "--out", "{tmp}/o"], r"does not exist"),
    (["evaluate", "--classifier", "{saved}/clf", "--eps", "8", "--attack", "fgsm", "--out", "{tmp}/o"], r"8/255"),
    (["evaluate", "--classifier", "{saved}/clf", "--attack", "pgdd", "--out", "{tmp}/o"], r"pgdd"),
    (["evaluate", "--classifier", "{saved}/atk", "--attack", "fgsm", "--out", "{tmp}/o"],
     r"holds a advgan checkpoint, expected classifier"),
    (["finetune", "--classifier", "{saved}/clf", "--fraction", "1.5", "--out", "{tmp}/o"],
     r"argument --fraction: expected a number in \[0, 1\]"),
    (["finetune", "--classifier", "{saved}/clf", "--method", "nope", "--out", "{tmp}/o"], r"invalid choice: 'nope'"),
])
def test_cli_impossible_values(argv, msg, capsys, tmp_path, saved):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{saved}", str(saved)) for a in argv]
    with unchanged(dirs=[tmp_path, saved]):
        code, err = _cli(argv, capsys)
    assert code != 0
    import re

    assert re.search(msg, err), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("attack", [lambda: PGD(eps=0.3, steps=2), lambda: FGSM(eps=0.1), lambda: CW(steps=2),
                                    lambda: RandomNoise(eps=0.3)], ids=["pgd", "fgsm", "cw", "noise"])
def test_attack_on_a_classifier_with_the_wrong_number_of_classes(attack, batch):
    x, y = batch
    torch.manual_seed(0)
    bad = Classifier(_FiveLogits(), 10)
    with unchanged(tensors=[x, y], models=[bad]), \
            pytest.raises(ValueError, match=r"returned \(1, 5\) for one image but declares num_classes=10"):
        attack()(bad, x, y)
