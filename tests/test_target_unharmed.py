"""The target model is never harmed: after attacks, evaluation, AdvGAN training and adversarial
augmentation its parameters and buffers (BatchNorm running statistics included) are bit-identical and
its train/eval mode and ``requires_grad`` flags are what they were, whether it came in training or frozen."""
from __future__ import annotations

import pytest
import torch
from reliability_helpers import assert_same_state, modes_snapshot, state_snapshot
from torch import nn

from attacks import CW, FGSM, PGD, Classifier, FoolboxAttack, RandomNoise, evaluate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def bn_cnn() -> Classifier:
    """A small CNN with BatchNorm (running statistics) and Dropout: both behave differently in train mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * 49, 10),
    )
    clf = Classifier(net, 10, mean=(0.1307,), std=(0.3081,))
    with clf.unfrozen(), torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            clf(torch.rand(32, 1, 28, 28))
    return clf


@pytest.fixture(scope="module")
def batch(mnist):
    _, test = mnist
    return test.images[:16].clone(), test.labels[:16].clone()


def _set_mode(clf: Classifier, mode: str) -> None:
    if mode == "train":
        clf.unfreeze()          # train mode, trainable parameters (as in a user's training loop)
    elif mode == "mixed":
        clf.unfreeze()
        clf.module[1].eval()    # one BatchNorm frozen by the user, one conv without gradients
        clf.module[4].requires_grad_(False)
    else:
        clf.freeze()


def _check(clf: Classifier, fn) -> None:
    state, modes = state_snapshot(clf), modes_snapshot(clf)
    fn()
    assert_same_state(state, clf, "target classifier")
    assert modes_snapshot(clf) == modes, "train/eval mode or requires_grad flags not restored"
    assert all(p.grad is None for p in clf.parameters()), "gradients were accumulated into the target's parameters"


ATTACKS = {
    "fgsm": lambda: FGSM(eps=0.1, random_start=True, seed=0),
    "pgd": lambda: PGD(eps=0.3, steps=3, seed=0),
    "pgd-l2": lambda: PGD(eps=1.5, norm="l2", steps=3, seed=0),
    "cw": lambda: CW(steps=3, binary_search_steps=2),
    "noise": lambda: RandomNoise(eps=0.3, seed=0),
    "foolbox": lambda: FoolboxAttack("LinfPGD", eps=0.3, steps=3),
}


@pytest.mark.parametrize("name, mode", [(n, m) for n in sorted(ATTACKS) for m in ("train", "frozen")] + [("pgd", "mixed")])
def test_attacks_leave_target_unharmed(name, mode, batch):
    clf = bn_cnn()
    _set_mode(clf, mode)
    x, y = batch
    x0 = x.clone()
    out = {}
    _check(clf, lambda: out.setdefault("adv", ATTACKS[name]()(clf, x, y)))
    assert torch.equal(x, x0)
    assert out["adv"].shape == x.shape and not out["adv"].requires_grad
    # targeted too (where supported)
    if name not in ("noise",):
        t = (y + 1) % 10
        _check(clf, lambda: ATTACKS[name]()(clf, x, y, target=t))


@pytest.mark.parametrize("mode", ["train", "frozen"])
def test_evaluate_leaves_target_unharmed(mode, batch):
    clf = bn_cnn()
    _set_mode(clf, mode)
    x, y = batch
    loader = [(x[:8], y[:8]), (x[8:], y[8:])]
    _check(clf, lambda: evaluate(clf, loader, {"fgsm": FGSM(eps=0.1), "pgd": PGD(eps=0.1, steps=2)},
                                 epsilons=[0.05], progress=False, grid_images=4))
    _check(clf, lambda: evaluate(clf, loader, {"pgd": PGD(eps=0.1, steps=2)}, targeted=True, progress=False, grid_images=0))


@pytest.mark.parametrize("mode", ["train", "frozen"])
def test_advgan_training_leaves_target_unharmed(mode, mnist, tmp_path):
    from advgan.attacker import AdvGAN, AdvGANConfig

    clf = bn_cnn()
    _set_mode(clf, mode)
    ds = mnist[0].subset(20)
    atk = AdvGAN(clf, AdvGANConfig(width=4, batch_size=8, progress=False, device="cpu"))
    _check(clf, lambda: atk.fit(ds, epochs=1, out_dir=tmp_path / "atk"))
    _check(clf, lambda: atk.as_attack()(clf, ds.images[:8], ds.labels[:8]))
    _check(clf, lambda: AdvGAN.load(tmp_path / "atk", clf).perturb(ds.images[:8]))


@pytest.mark.parametrize("mode", ["train", "frozen"])
def test_augmentation_leaves_target_unharmed(mode, batch):
    from defenses import AdversarialAugmentation

    clf = bn_cnn()
    _set_mode(clf, mode)
    x, y = batch
    aug = AdversarialAugmentation([PGD(eps=0.3, steps=2, seed=0), FGSM(eps=0.3), RandomNoise(eps=0.3, seed=0)],
                                  fraction=0.75, seed=0)
    _check(clf, lambda: aug(clf, x, y))
    _check(clf, lambda: list(aug.wrap([(x, y)], clf)))


def test_finetune_never_touches_the_callers_classifier(mnist):
    from defenses import finetune

    clf = bn_cnn()
    ds = mnist[0].subset(32)
    _check(clf, lambda: finetune(clf, ds, method="augment", sources=[FGSM(eps=0.3)], epochs=1, batch_size=16,
                                 progress=False, device="cpu"))


def test_timm_resnet18_with_batchnorm_in_train_mode(batch):
    clf = Classifier.from_timm("resnet18", 10, in_chans=1, pretrained=False)
    clf.unfreeze()
    x, y = batch
    x, y = x[:4], y[:4]
    _check(clf, lambda: PGD(eps=0.3, steps=2, seed=0)(clf, x, y))
    _check(clf, lambda: evaluate(clf, [(x, y)], {"fgsm": FGSM(eps=0.1)}, progress=False, grid_images=0))
