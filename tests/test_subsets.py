"""Stratified exactly-n subsets (``advgan evaluate --max-images``): every class in proportion, never the first n."""
from __future__ import annotations

import collections

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from advgan import data
from advgan.data.subsets import dataset_labels, stratified_indices


def _sorted_labels(counts: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((k,), c) for c, k in enumerate(counts)])


@pytest.mark.parametrize("counts, n", [([100] * 10, 300), ([50, 30, 20], 10), ([7, 1, 90], 33), ([3] * 4, 5)])
def test_exactly_n_in_proportion_and_sorted(counts, n):
    labels = _sorted_labels(counts)
    idx = stratified_indices(labels, n, seed=1)
    assert idx.numel() == n == idx.unique().numel() and torch.equal(idx, idx.sort().values)
    got = collections.Counter(labels[idx].tolist())
    for c, k in enumerate(counts):  # each class within one of its proportional share
        assert abs(got.get(c, 0) - n * k / sum(counts)) <= 1.0, (c, got)


def test_seeded_and_not_the_first_n():
    labels = _sorted_labels([100] * 10)
    a, b, c = (stratified_indices(labels, 300, seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(labels[a].tolist()) == set(range(10))  # the first 300 would be digits 0-2 only
    assert torch.equal(stratified_indices(labels, 5000), torch.arange(1000))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_n_is_refused(bad):
    with pytest.raises(ValueError, match="positive integer"):
        stratified_indices(torch.zeros(10, dtype=torch.long), bad)


class _Targets(Dataset):  # torchvision style: a ``targets`` list
    def __init__(self) -> None:
        self.targets = [0] * 6 + [1] * 6

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        raise AssertionError("labels must come from .targets, not from loading images")


def test_labels_from_attributes_or_items():
    assert dataset_labels(_Targets()).tolist() == [0] * 6 + [1] * 6
    ds = TensorDataset(torch.zeros(6, 1, 2, 2), torch.tensor([2, 2, 0, 0, 1, 1]))
    assert dataset_labels(ds).tolist() == [2, 2, 0, 0, 1, 1]
    sub = data.stratified_subset(ds, 3, seed=0)
    assert sorted(int(sub[i][1]) for i in range(3)) == [0, 1, 2]
    assert data.stratified_subset(ds, 6) is ds


def test_mnist5k_test_split_is_class_sorted_and_the_subset_is_not(mnist):
    _, test = mnist
    assert {int(test[i][1]) for i in range(300)} == {0, 1, 2}  # why "the first N" was wrong
    sub = data.stratified_subset(test, 300, seed=0)
    assert len(sub) == 300 and collections.Counter(int(sub[i][1]) for i in range(300)) == {c: 30 for c in range(10)}


def test_cli_evaluate_max_images_is_the_stratified_subset(trained_tiny_clf, mnist, tmp_path):
    from advgan.cli import main
    from attacks import Report

    trained_tiny_clf.save(tmp_path / "clf")
    rc = main(["evaluate", "--classifier", str(tmp_path / "clf"), "--attack", "fgsm", "--eps", "0.1", "--max-images", "40",
               "--seed", "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "eval")])
    assert rc == 0
    rep = Report.from_json(tmp_path / "eval" / "report.json")
    sub = data.stratified_subset(mnist[1], 40, seed=3)
    x = torch.stack([sub[i][0] for i in range(40)])
    y = torch.tensor([int(sub[i][1]) for i in range(40)])
    with torch.no_grad():
        correct = int((trained_tiny_clf.eval()(x).argmax(1) == y).sum())
    assert rep.n == 40 and rep.n_correct == correct
