"""AutoAttack: the cascade attacks only robust inputs, worst case <= each member, seeds, versions, bad input, CLI."""
from __future__ import annotations

import pytest
import torch
from test_apgd import _CountRows
from test_attacks import assert_same_state, snapshot

from attacks import APGDCE, APGDT, AutoAttack, Report, evaluate, make_attack


def _robust(clf, x, y) -> torch.Tensor:
    with torch.no_grad():
        return clf(x).argmax(1) == y


@pytest.fixture(scope="module")
def batch(mnist):
    _, test = mnist
    return test.images[:64].clone(), test.labels[:64].clone()


def _members():
    return [APGDCE(0.1, steps=10, seed=0), APGDT(0.1, steps=10, n_target_classes=2, seed=0)]


def test_cascade_attacks_only_robust_inputs(trained_tiny_clf, batch):
    x, y = batch
    aa = AutoAttack(0.1, version="custom", attacks=_members())
    seen: list[int] = []
    for _, member in aa.members:  # spy on what each member is given
        run = member.run
        member.run = (lambda r: (lambda m, xs, ys, t: (seen.append(xs.shape[0]), r(m, xs, ys, t))[1]))(run)
    counted = _CountRows(trained_tiny_clf)
    adv = aa(counted, x, y)
    log = dict(aa.last_log)
    assert seen == [log["clean"], log["apgd-ce"]]  # each member gets exactly the inputs still robust
    assert log["apgd-t"] <= log["apgd-ce"] < log["clean"]
    assert max(counted.sizes[2:]) <= log["clean"]  # after the probe and the clean pass: never a broken input
    robust = _robust(trained_tiny_clf, adv, y)
    assert int(robust.sum()) == log["apgd-t"]
    assert torch.equal(adv[robust], x[robust])  # robust inputs return the clean image, as in the reference


def test_worst_case_not_above_any_member(trained_tiny_clf, batch):
    x, y = batch
    loader = [(x[:32], y[:32]), (x[32:], y[32:])]
    members = _members()
    attacks = {"aa": AutoAttack(0.1, version="custom", attacks=_members()), "apgd-ce": members[0], "apgd-t": members[1]}
    rep = evaluate(trained_tiny_clf, loader, attacks, progress=False, sanity_checks=False, grid_images=0)
    worst = rep.worst_case().robust_accuracy
    for name in attacks:
        assert worst <= rep[name].robust_accuracy
    assert rep["aa"].robust_accuracy <= rep["apgd-ce"].robust_accuracy  # the cascade's first member is apgd-ce itself
    assert rep["aa"].robust_accuracy <= rep["apgd-t"].robust_accuracy + 1 / 64


def test_seed_repeats(trained_tiny_clf, batch):
    x, y = batch[0][:24], batch[1][:24]
    a = AutoAttack(0.1, version="custom", attacks=_members(), seed=1)(trained_tiny_clf, x, y)
    b = AutoAttack(0.1, version="custom", attacks=_members(), seed=1)(trained_tiny_clf, x, y)
    assert torch.equal(a, b)


def test_versions_and_names():
    assert [n for n, _ in AutoAttack(0.3).plan] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [n for n, _ in AutoAttack(0.3, version="rand").plan] == ["apgd-ce", "apgd-dlr"]
    assert all(kw["eot"] == 20 for _, kw in AutoAttack(0.3, version="rand").plan)
    assert len(AutoAttack(0.3, version="plus").plan) == 6
    assert make_attack("autoattack:rand", eps=0.3).version == "rand"
    custom = AutoAttack(0.2, version="custom", attacks=["apgd-ce", "apgd-dlr"])
    assert [type(a).__name__ for _, a in custom.members] == ["APGDCE", "APGDDLR"]
    assert all(a.eps == 0.2 for _, a in custom.members)
    assert custom.with_eps(0.1).members[0][1].eps == 0.1


def test_bad_input(trained_tiny_clf, batch):
    with pytest.raises(ValueError, match="standard, plus, rand, custom"):
        AutoAttack(0.3, version="nope")
    with pytest.raises(ValueError, match="needs attacks"):
        AutoAttack(0.3, version="custom")
    with pytest.raises(ValueError, match="unknown attack"):
        AutoAttack(0.3, version="custom", attacks=["apgd-ce", "nope"])
    with pytest.raises(ValueError, match="only used with version='custom'"):
        AutoAttack(0.3, attacks=["apgd-ce"])
    with pytest.raises(ValueError, match="same norm"):
        AutoAttack(0.3, version="custom", attacks=[APGDCE(1.0, "l2")])
    with pytest.raises(ValueError, match="8/255"):
        AutoAttack(8)
    x, y = batch[0][:4], batch[1][:4]
    before = snapshot(trained_tiny_clf)
    with pytest.raises(ValueError, match="does not support targeted"):
        AutoAttack(0.3, version="custom", attacks=["apgd-ce"])(trained_tiny_clf, x, y, target=(y + 1) % 10)
    assert_same_state(trained_tiny_clf, before)


def test_cli(trained_tiny_clf, tmp_path, capsys):
    from advgan.cli import main

    trained_tiny_clf.save(tmp_path / "clf")
    out = tmp_path / "eval"
    rc = main(["evaluate", "--classifier", str(tmp_path / "clf"), "--attack", "apgd-ce", "--eps", "0.1",
               "--max-images", "8", "--batch-size", "8", "--device", "cpu", "--no-progress", "--seed", "4",
               "--out", str(out)])
    assert rc == 0
    rep = Report.from_json(out / "report.json")
    assert set(rep.attacks) == {"apgd-ce"} and rep.n == 8
    assert rep["apgd-ce"].robust_accuracy < rep.clean_accuracy
    from advgan.cli.cmd_evaluate import build_attack

    for spec, cls in (("autoattack", AutoAttack), ("apgd-t", APGDT), ("autoattack:plus", AutoAttack)):
        attack = build_attack(spec, trained_tiny_clf, eps=0.3, norm="linf", steps=40, seed=4)
        assert isinstance(attack, cls) and attack.seed == 4
    rc = main(["evaluate", "--classifier", str(tmp_path / "clf"), "--attack", "autoattack:nope", "--out", str(out)])
    assert rc == 2 and "standard, plus, rand, custom" in capsys.readouterr().err
