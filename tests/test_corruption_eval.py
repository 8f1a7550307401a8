"""evaluate(corruptions=...): accuracy per corruption and severity, mCE against a baseline, files, CLI, bad input."""
from __future__ import annotations

import json
import math

import pytest
import torch
from test_attacks import assert_same_state, snapshot
from torch.utils.data import DataLoader, TensorDataset

from attacks import CORRUPTIONS, FGSM, Report, corrupt, evaluate
from attacks.corruption_results import CorruptionResults, corruption_error


def loader_of(x, y, bs=32):
    return DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=False)


def test_corruptions_only_match_hand_computation(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    rep = evaluate(clf, loader_of(x, y), {}, corruptions=["brightness", "gaussian_blur", "gaussian_noise"],
                   severities=(1, 5), progress=False)
    assert rep.attacks == [] and rep.worst_own is None
    assert set(rep.corruptions) == {"brightness", "gaussian_blur", "gaussian_noise"}
    assert all(set(row) == {1, 5} for row in rep.corruptions.values())
    with torch.no_grad():  # deterministic corruptions do not depend on the seed: recompute them on the whole batch
        for name in ("brightness", "gaussian_blur"):
            for s in (1, 5):
                want = (clf(corrupt(x, name, s)).argmax(1) == y).float().mean().item()
                assert rep.corruptions[name][s] == pytest.approx(want)
    acc = [a for row in rep.corruptions.values() for a in row.values()]
    assert rep.mean_corruption_accuracy == pytest.approx(sum(acc) / len(acc))
    # stronger blur / noise hurts a clean-trained model
    assert rep.corruptions["gaussian_blur"][5] < rep.corruptions["gaussian_blur"][1]
    assert rep.corruptions["gaussian_noise"][5] < rep.clean_accuracy
    with pytest.raises(ValueError, match="no attacks"):
        rep.worst_case()


def test_corruptions_repeatable_and_attacks_unchanged(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    plain = evaluate(clf, loader_of(x, y), {"fgsm": FGSM(0.1)}, progress=False, sanity_checks=False)
    a = evaluate(clf, loader_of(x, y), {"fgsm": FGSM(0.1)}, corruptions="noise", severities=(3,), progress=False,
                 sanity_checks=False)
    b = evaluate(clf, loader_of(x, y), {"fgsm": FGSM(0.1)}, corruptions="noise", severities=(3,), progress=False,
                 sanity_checks=False)
    assert a.corruptions == b.corruptions  # seeded
    assert a["fgsm"].n_robust == plain["fgsm"].n_robust and a.worst_case().n_robust == plain.worst_case().n_robust
    c = evaluate(clf, loader_of(x, y), {}, corruptions="noise", severities=(3,), seed=1, progress=False)
    assert c.corruptions != a.corruptions or c.corruption_results.correct == a.corruption_results.correct


def test_report_files_and_json(trained_tiny_clf, small_batch, tmp_path):
    clf, (x, y) = trained_tiny_clf, small_batch
    rep = evaluate(clf, loader_of(x[:32], y[:32]), {}, corruptions=["fog", "pixelate"], severities=(2, 4),
                   progress=False, grid_images=0)
    rep.save(tmp_path)
    d = json.loads((tmp_path / "report.json").read_text())
    assert d["corruptions"]["accuracy"]["fog"]["2"] == pytest.approx(rep.corruptions["fog"][2])
    assert d["corruptions"]["mean_accuracy"] == pytest.approx(rep.mean_corruption_accuracy)
    png = (tmp_path / "corruption_heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    md = (tmp_path / "report.md").read_text()
    assert "## Natural corruptions" in md and "| pixelate |" in md
    back = Report.from_json(tmp_path / "report.json")
    assert back.corruptions == rep.corruptions and back.mean_corruption_accuracy == rep.mean_corruption_accuracy


def test_mce_against_baseline():
    base = CorruptionResults(n=100, n_clean_correct=90, correct={"fog": {1: 80, 2: 60}, "snow": {1: 90, 2: 90}})
    model = CorruptionResults(n=100, n_clean_correct=95, correct={"fog": {1: 90, 2: 85}, "snow": {1: 95, 2: 90}})
    ce = corruption_error(model, base)
    assert ce.ce["fog"] == pytest.approx((0.10 + 0.15) / (0.20 + 0.40))
    assert ce.ce["snow"] == pytest.approx((0.05 + 0.10) / (0.10 + 0.10))
    assert ce.mce == pytest.approx((ce.ce["fog"] + ce.ce["snow"]) / 2)
    assert ce.relative_ce["fog"] == pytest.approx((0.05 + 0.10) / (0.10 + 0.30))
    assert ce.relative_ce["snow"] is None  # the baseline loses nothing beyond its clean error under snow
    assert ce.relative_mce == pytest.approx(ce.relative_ce["fog"])
    assert ce.to_dict()["relative_ce"]["snow"] is None
    with pytest.raises(ValueError, match="snow@3"):
        corruption_error(CorruptionResults(100, 95, {"snow": {3: 50}}), base)


def test_report_corruption_error(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    rep = evaluate(clf, loader_of(x, y), {}, corruptions=["shot_noise"], severities=(1, 2), progress=False)
    torch.manual_seed(0)  # the untrained baseline must not depend on the tests run before
    untrained = type(clf).create("tiny_cnn", 10, in_chans=1)
    base = evaluate(untrained, loader_of(x, y), {}, corruptions=["shot_noise"], severities=(1, 2), progress=False)
    ce = rep.corruption_error(base)
    assert ce.mce < 1  # the trained model errs less than a random one under shot noise
    assert rep.corruption_error(rep).mce == pytest.approx(1.0)
    plain = evaluate(clf, loader_of(x, y), {"fgsm": FGSM(0.1)}, progress=False)
    with pytest.raises(ValueError, match="no corruption results"):
        rep.corruption_error(plain)


def test_bad_input_refused_before_work(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    before = snapshot(clf)
    L = loader_of(x, y)
    with pytest.raises(ValueError, match="valid corruptions: gaussian_noise, shot_noise"):
        evaluate(clf, L, {}, corruptions=["fog", "haze"], progress=False)
    with pytest.raises(ValueError, match="unknown corruption or group 'haze'"):
        evaluate(clf, L, {}, corruptions="haze", progress=False)
    for bad in (0, 6):
        with pytest.raises(ValueError, match="severity must be from 1"):
            evaluate(clf, L, {}, corruptions="all", severities=(1, bad), progress=False)
    with pytest.raises(ValueError, match="twice"):
        evaluate(clf, L, {}, corruptions=["fog", "fog"], progress=False)
    with pytest.raises(TypeError, match="unless corruptions= is given"):
        evaluate(clf, L, {}, progress=False)
    with pytest.raises(ValueError, match="no attacks"):
        evaluate(clf, L, {}, corruptions="fog", epsilons=[0.1], progress=False)
    with pytest.raises(ValueError, match="0-255"):
        evaluate(clf, loader_of(x * 255, y), {}, corruptions="fog", progress=False)
    with pytest.raises(ValueError, match="0-255"):
        corrupt(x * 255, "fog", 1)
    assert_same_state(clf, before)
    assert not clf.training and len(CORRUPTIONS) == 19


def test_cli_corruptions(trained_tiny_clf, mnist, tmp_path, capsys):
    from advgan.cli import main

    trained_tiny_clf.save(tmp_path / "clf")
    _, test = mnist  # the baseline: the same model, images, corruptions and seed through the library
    from advgan.data.subsets import stratified_indices

    idx = stratified_indices(test.labels, 32, 0)  # what --max-images 32 takes (seed 0), not the first 32
    base = evaluate(trained_tiny_clf, loader_of(test.images[idx], test.labels[idx]), {}, corruptions=["fog", "brightness"],
                    severities=(1, 3), progress=False)
    base.to_json(tmp_path / "base.json")
    out = tmp_path / "eval"
    common = ["evaluate", "--classifier", str(tmp_path / "clf"), "--max-images", "32", "--device", "cpu", "--no-progress"]
    rc = main([*common, "--corruptions", "fog,brightness", "--severities", "1", "3", "--corruption-baseline",
               str(tmp_path / "base.json"), "--out", str(out)])
    assert rc == 0 and "mCE 1.000" in capsys.readouterr().out
    rep = Report.from_json(out / "report.json")
    assert rep.attacks == [] and rep.corruptions == base.corruptions and set(rep.corruptions["fog"]) == {1, 3}
    assert math.isclose(rep.meta["corruption_error"]["mce"], 1.0)
    assert (out / "corruption_heatmap.png").exists() and "mCE **1.000**" in (out / "report.md").read_text()
    rc = main([*common, "--corruptions", "haze", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "haze" in err and "gaussian_noise" in err
    rc = main([*common, "--corruptions", "all", "--severities", "6", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "severity" in capsys.readouterr().err
    rc = main([*common, "--corruption-baseline", str(tmp_path / "base.json"), "--out", str(tmp_path / "bad")])
    assert rc == 2 and "needs --corruptions" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
