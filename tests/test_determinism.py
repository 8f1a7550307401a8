"""Determinism: the same seed gives the same results on the same machine (and another seed does not)."""
from __future__ import annotations

import pytest
import torch

from attacks import FGSM, PGD, Classifier, FoolboxAttack, RandomNoise, evaluate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def clf():
    torch.manual_seed(0)
    return Classifier.create("tiny_cnn", 10, in_chans=1)


@pytest.fixture(scope="module")
def batch(mnist):
    _, test = mnist
    idx = torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(0))[:16]  # mixed classes
    return test.images[idx].clone(), test.labels[idx].clone()


def _equal_states(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("make", [
    lambda s: PGD(eps=0.3, steps=3, seed=s),
    lambda s: PGD(eps=1.0, norm="l2", steps=3, restarts=2, seed=s),
    lambda s: FGSM(eps=0.2, random_start=True, seed=s),
    lambda s: RandomNoise(eps=0.3, seed=s),
    lambda s: FoolboxAttack("LinfPGD", eps=0.3, steps=3, seed=s),
], ids=["pgd", "pgd-l2-restarts", "fgsm-rs", "noise", "foolbox-pgd"])
def test_random_start_attacks_are_seeded(make, clf, batch):
    x, y = batch
    a1, a2, b = make(1)(clf, x, y), make(1)(clf, x, y), make(2)(clf, x, y)
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, b)


def test_unseeded_attacks_follow_the_global_seed(clf, batch):
    x, y = batch
    torch.manual_seed(5)
    a1 = PGD(eps=0.3, steps=2)(clf, x, y)
    torch.manual_seed(5)
    a2 = PGD(eps=0.3, steps=2)(clf, x, y)
    assert torch.equal(a1, a2)


def test_evaluate_same_seed_same_report(clf, batch):
    x, y = batch
    loader = [(x[:8], y[:8]), (x[8:], y[8:])]

    def run(seed):
        r = evaluate(clf, loader, {"pgd": PGD(eps=0.1, steps=2)}, targeted=True, seed=seed, progress=False, grid_images=0)
        res = r["pgd"]
        return (r.clean_accuracy, res.attack_success_rate, res.robust_accuracy, res.mean_linf, res.mean_l2)

    assert repr(run(3)) == repr(run(3))  # repr: NaN-safe exact comparison


def test_advgan_fit_same_seed_same_generator(mnist):
    from advgan.attacker import AdvGAN, AdvGANConfig

    torch.manual_seed(0)
    target = Classifier.create("tiny_cnn", 10, in_chans=1)
    ds = mnist[0].subset(24)

    def fit(seed):
        atk = AdvGAN(target, AdvGANConfig(width=4, batch_size=8, seed=seed, progress=False, device="cpu"))
        atk.fit(ds, epochs=1)
        return atk

    a, b, c = fit(0), fit(0), fit(1)
    assert _equal_states(a.G, b.G) and _equal_states(a.D, b.D)
    assert not _equal_states(a.G, c.G)
    x = ds.images[:4]
    assert torch.equal(a.perturb(x), b.perturb(x))


def test_train_classifier_same_seed_same_weights(mnist):
    from advgan.training import train_classifier

    ds = mnist[0].subset(96)

    def train(seed):
        torch.manual_seed(123)  # the same initial weights; the config seed drives shuffling and training
        clf = Classifier.create("tiny_cnn", 10, in_chans=1)
        return train_classifier(clf, ds, epochs=1, batch_size=32, seed=seed, progress=False, device="cpu")[0]

    a, b, c = train(0), train(0), train(1)
    assert _equal_states(a, b)
    assert not _equal_states(a, c)


def test_finetune_same_seed_same_weights(mnist):
    from defenses import finetune

    torch.manual_seed(0)
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    ds = mnist[0].subset(64)

    def ft(seed):
        return finetune(clf, ds, method="augment", sources=[PGD(eps=0.3, steps=2), FGSM(eps=0.3, random_start=True)],
                        epochs=1, batch_size=32, seed=seed, progress=False, device="cpu")[0]

    a, b, c = ft(0), ft(0), ft(1)
    assert _equal_states(a, b)
    assert not _equal_states(a, c)


def test_data_splits_and_loaders_are_seeded():
    from advgan import data

    tr1, te1 = data.load("digits")
    tr2, te2 = data.load("digits")
    tr3, _ = data.load("digits", seed=1)
    assert torch.equal(tr1.images, tr2.images) and torch.equal(te1.labels, te2.labels)
    assert not torch.equal(tr1.labels, tr3.labels)
    s1, s2 = tr1.subset(100, seed=4), tr1.subset(100, seed=4)
    assert torch.equal(s1.images, s2.images)
    a, b = data.stratified_split(tr1, 0.3, seed=2), data.stratified_split(tr1, 0.3, seed=2)
    assert torch.equal(a[0].labels, b[0].labels) and torch.equal(a[1].images, b[1].images)

    def order(seed):
        return torch.cat([y for _, y in data.loader(tr1, 64, shuffle=True, seed=seed)])

    assert torch.equal(order(7), order(7))
    assert not torch.equal(order(7), order(8))
    g1, g2 = data.load("ring8", n_train=500), data.load("ring8", n_train=500)
    assert torch.equal(g1[0].points, g2[0].points)


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet10t"])
def test_create_with_seed_same_weights_in_any_process(name):
    """``Classifier.create(seed=)`` initialises from the seed whatever the global RNG holds (torch's own start
    is random per process), and leaves the global RNG where it was."""
    torch.seed()                                   # another process: a random global RNG
    a = Classifier.create(name, 10, in_chans=1, seed=3)
    torch.seed()
    state = torch.random.get_rng_state()
    b = Classifier.create(name, 10, in_chans=1, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    c = Classifier.create(name, 10, in_chans=1, seed=4)
    assert _equal_states(a, b)
    assert not _equal_states(a, c)


@pytest.mark.parametrize("seed, err", [("0", TypeError), (True, TypeError), (1.5, TypeError), (2 ** 64, ValueError)])
def test_create_refuses_a_bad_seed(seed, err):
    state = torch.random.get_rng_state()
    with pytest.raises(err, match="seed"):
        Classifier.create("tiny_cnn", 10, in_chans=1, seed=seed)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_cli_train_classifier_same_seed_same_model(tmp_path):
    """`advgan train-classifier --seed S` twice gives the same weights, also when the global RNG starts elsewhere
    (as it does in every new process), because the seed also sets the initial weights."""
    from advgan.cli import main

    def run(seed: int, out: str) -> Classifier:
        torch.seed()
        rc = main(["train-classifier", "--model", "tiny_cnn", "--dataset", "digits", "--epochs", "1", "--seed", str(seed),
                   "--no-progress", "--out", str(tmp_path / out), "--device", "cpu"])
        assert rc == 0
        return Classifier.load(tmp_path / out)

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert _equal_states(a, b)
    assert not _equal_states(a, c)
