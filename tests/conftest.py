"""Shared, session-scoped fixtures: MNIST-5k, a quickly trained tiny target, a small test batch.

Other test files reuse these; keep them fast (the whole suite must fit in minutes on 2 CPU cores).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

TINY_SEED = 0


@pytest.fixture(scope="session")
def mnist():
    """``(train, test)`` ImageDatasets of MNIST-5k (4,000 / 1,000, pixels in [0, 1])."""
    from advgan import data

    return data.load("mnist5k")


def train_tiny(train, *, seed: int = TINY_SEED, epochs: int = 2, batch_size: int = 32, lr: float = 5e-3):
    """A ``tiny_cnn`` Classifier trained with Adam on ``train`` (a few seconds on a CPU)."""
    from attacks import Classifier

    torch.manual_seed(seed)
    clf = Classifier.create("tiny_cnn", 10, in_chans=1)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    x_all, y_all = train.images, train.labels
    with clf.unfrozen():
        for _ in range(epochs):
            perm = torch.randperm(len(y_all), generator=g)
            for i in range(0, len(perm), batch_size):
                idx = perm[i: i + batch_size]
                loss = F.cross_entropy(clf(x_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    for p in clf.parameters():
        p.grad = None
    return clf


@pytest.fixture(scope="session")
def trained_tiny_clf(mnist):
    """``Classifier.create("tiny_cnn", 10, in_chans=1)`` trained on MNIST-5k to > 90 % test accuracy (frozen, eval).

    Session-scoped and shared: tests must not modify it (attacks leave it bit-identical by contract).
    """
    train, test = mnist
    clf = train_tiny(train)
    with torch.no_grad():
        acc = (clf(test.images).argmax(1) == test.labels).float().mean().item()
    assert acc > 0.90, f"tiny target trained to only {acc:.3f} test accuracy"
    clf.test_accuracy = acc
    return clf


@pytest.fixture(scope="session")
def small_batch(mnist):
    """The first 64 MNIST-5k test images ``(x, y)``."""
    _, test = mnist
    return test.images[:64].clone(), test.labels[:64].clone()
