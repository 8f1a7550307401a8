"""evaluate(): numbers against a hand computation, sanity flags, model untouched, report files, errors, CLI."""
from __future__ import annotations

import json

import pytest
import torch
from test_attacks import assert_same_state, snapshot, trainable
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attacks import FGSM, PGD, Attack, Classifier, FoolboxAttack, RandomNoise, Report, evaluate, image_grid


def loader_of(x, y, bs=32):
    return DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=False)


class Swap(Attack):
    """Replaces every image with the next one of the batch (allowed by an eps=1 L-inf ball)."""

    name = "swap"

    def run(self, model, x, y, target):
        return x.roll(1, dims=0)


class FoolsOnlyAtSmallEps(Attack):
    """Succeeds like Swap below eps 0.5 and does nothing above: success falls with eps."""

    name = "weird"

    def run(self, model, x, y, target):
        return x.roll(1, dims=0) if self.eps < 0.5 else x


def test_matches_hand_computation(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    atk = FGSM(0.1)
    rep = evaluate(clf, loader_of(x, y), {"fgsm": atk}, progress=False)
    with torch.no_grad():
        correct = clf(x).argmax(1) == y
        x_adv = atk(clf, x, y)
        pa = clf(x_adv).argmax(1)
    d = (x_adv - x).flatten(1)
    r = rep["fgsm"]
    assert rep.n == 64 and rep.n_correct == int(correct.sum())
    assert rep.clean_accuracy == pytest.approx(correct.float().mean().item())
    assert r.n_fooled == int((correct & (pa != y)).sum())
    assert r.attack_success_rate == pytest.approx(float((correct & (pa != y)).sum()) / float(correct.sum()))
    assert r.robust_accuracy == pytest.approx((pa == y).float().mean().item())
    assert r.mean_linf == pytest.approx(d.abs().amax(1).mean().item(), rel=1e-5)
    assert r.max_l2 == pytest.approx(d.norm(dim=1).max().item(), rel=1e-5)
    assert r.mean_l2 == pytest.approx(d.norm(dim=1).mean().item(), rel=1e-5)
    assert r.targeted_success_rate is None and r.seconds > 0 and r.images_per_second > 0
    from attacks.diagnostics import adversarial_class_entropy, shared_energy

    assert r.shared_energy == pytest.approx(shared_energy(x_adv - x), rel=1e-5)  # streamed over two batches
    assert r.adv_class_entropy == pytest.approx(adversarial_class_entropy(pa, correct & (pa != y), 10), rel=1e-6)
    assert Report.from_dict(rep.to_dict())["fgsm"].shared_energy == pytest.approx(r.shared_energy)


def test_asr_counts_only_correctly_classified(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    with torch.no_grad():
        pred = clf(x).argmax(1)
    y_bad = y.clone()
    y_bad[:16] = (pred[:16] + 1) % 10  # 16 inputs now misclassified by construction
    rep = evaluate(clf, loader_of(x, y_bad), {"swap": Swap(eps=1.0), "none": RandomNoise(1e-6, seed=0)}, progress=False)
    correct = pred == y_bad
    with torch.no_grad():
        pa = clf(x.roll(1, dims=0)).argmax(1)
    fooled = correct & (pa != y_bad)
    assert rep["swap"].n_correct == int(correct.sum()) <= 48
    assert rep["swap"].attack_success_rate == pytest.approx(float(fooled.sum()) / float(correct.sum()))
    naive = float((pa != y_bad).float().mean())  # what an ASR over all inputs would say
    assert rep["swap"].attack_success_rate != pytest.approx(naive)
    assert rep["none"].attack_success_rate == 0.0  # misclassified inputs are not "successes"
    assert rep["none"].robust_accuracy == pytest.approx(rep.clean_accuracy)


def test_sweep_targeted_files_and_model_untouched(trained_tiny_clf, mnist, tmp_path):
    clf = trained_tiny_clf
    x, y = mnist[1].images[:96], mnist[1].labels[:96]
    attacks = {"pgd": PGD(0.1, steps=5, seed=0), "fgsm": FGSM(0.1), "noise": RandomNoise(0.1, seed=0)}
    with trainable(clf):
        state = snapshot(clf)
        rep = evaluate(clf, loader_of(x, y), attacks, epsilons=[0.05, 0.2, 0.6], targeted=True, channels_last=True,
                       progress=False, grid_images=4)
        assert clf.training and all(p.requires_grad for p in clf.parameters())
        assert all(p.grad is None for p in clf.parameters())
        assert all(p.is_contiguous() for p in clf.parameters())
        assert_same_state(clf, state)
    curve = rep.curve("pgd")
    assert [e for e, _ in curve] == [0.05, 0.1, 0.2, 0.6] and rep["pgd"].eps == 0.1
    assert curve[-1][1].attack_success_rate >= curve[0][1].attack_success_rate
    r = rep["pgd"]
    assert r.targeted_success_rate is not None and 0 <= r.targeted_success_rate <= r.attack_success_rate
    assert rep.sanity["asr_monotone_in_eps"]["pgd"] is True
    assert rep.sanity["large_eps"]["pgd"]["eps"] == 0.6
    assert rep.sanity["pgd_vs_fgsm"] and not any("weaker" in f for f in rep.flags)
    # the same seed gives the same targets and numbers
    rep2 = evaluate(clf, loader_of(x, y), attacks, epsilons=[0.05, 0.2, 0.6], targeted=True, progress=False)
    assert rep2["pgd"].n_target_hits == r.n_target_hits and rep2["fgsm"].n_fooled == rep["fgsm"].n_fooled

    out = rep.save(tmp_path / "rep")
    for f in ("report.json", "report.md", "eps_curve.png", "grid.png"):
        assert (out / f).stat().st_size > 0, f
    d = json.loads((out / "report.json").read_text())
    assert d["attacks"]["pgd"]["attack_success_rate"] == pytest.approx(r.attack_success_rate)
    back = Report.from_json(out / "report.json")
    assert back.attacks == rep.attacks and back["fgsm"] == rep["fgsm"] and back.curve("pgd") == curve
    md = rep.to_markdown()
    assert "| pgd |" in md and "targeted SR" in md and "budget sweep" in md


def test_sanity_flags(small_batch):
    x, y = small_batch
    torch.manual_seed(0)
    # a model returning probabilities, with piecewise-constant input (zero input gradients)
    quant = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1))

    class Rounded(nn.Module):
        def forward(self, z):
            return quant(torch.round(z * 2) / 2)

    clf = Classifier(Rounded(), 10)
    rep = evaluate(clf, loader_of(x, y), {"pgd": PGD(0.1, steps=3, random_start=False)}, epsilons=[0.6], progress=False)
    text = " ".join(rep.flags)
    assert "probabilities" in text and "zero input gradient" in text and "large budget" in text
    assert rep.sanity["zero_gradient_fraction"] == 1.0


def test_monotonicity_and_pgd_vs_fgsm_flags(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    rep = evaluate(clf, loader_of(x, y), {"weird": FoolsOnlyAtSmallEps(eps=0.3)}, epsilons=[0.7], progress=False)
    assert any("decreases" in f for f in rep.flags) and rep.sanity["asr_monotone_in_eps"]["weird"] is False
    weak = PGD(0.1, steps=1, step_size=1e-4, random_start=False)
    rep = evaluate(clf, loader_of(x, y), {"pgd": weak, "fgsm": FGSM(0.1)}, progress=False, crosscheck_foolbox=True)
    assert any("weaker than fgsm" in f for f in rep.flags)
    assert rep.sanity["pgd_vs_fgsm"][0]["fgsm_only_fooled"] > 0
    assert "crosscheck_foolbox_asr" in rep.sanity


def test_amp_and_max_batches(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    rep = evaluate(clf, loader_of(x, y, bs=16), {"fgsm": FGSM(0.1)}, amp=True, max_batches=2, progress=False)
    assert rep.n == 32 and rep.meta["amp"] is True


def test_bad_inputs(trained_tiny_clf, small_batch):
    clf, (x, y) = trained_tiny_clf, small_batch
    state = snapshot(clf)
    ok = {"fgsm": FGSM(0.1)}
    with pytest.raises(ValueError, match="empty"):
        evaluate(clf, loader_of(x[:0], y[:0]), ok, progress=False)
    bad = x.clone()
    bad[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="batch 0.*NaN"):
        evaluate(clf, loader_of(bad, y), ok, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        evaluate(clf, loader_of(x, y + 10), ok, progress=False)
    with pytest.raises(ValueError, match="must match"):
        evaluate(clf, [(x, y[:5])], ok, progress=False)
    with pytest.raises(TypeError, match="floating-point"):
        evaluate(clf, [((x * 255).long(), y)], ok, progress=False)
    with pytest.raises(ValueError, match="8/255"):
        evaluate(clf, loader_of(x, y), ok, epsilons=[8], progress=False)
    with pytest.raises(ValueError, match="does not support targeted"):
        evaluate(clf, loader_of(x, y), {"fb": FoolboxAttack("FGSM", eps=0.1)}, targeted=True, progress=False)
    with pytest.raises(TypeError, match="non-empty dict"):
        evaluate(clf, loader_of(x, y), {}, progress=False)
    with pytest.raises(ValueError, match="pair"):
        evaluate(clf, [x], ok, progress=False)
    assert_same_state(clf, state)


def test_image_grid_public(tmp_path, small_batch):
    x, y = small_batch
    p = image_grid(x[:4], (x[:4] + 0.1).clamp(0, 1), y[:4], y[:4], tmp_path / "g.png", amplify=5.0)
    assert p.stat().st_size > 0
    with pytest.raises(ValueError, match="same shape"):
        image_grid(x[:4], x[:3], None, None, tmp_path / "h.png")


def test_cli_evaluate(trained_tiny_clf, tmp_path, capsys):
    from advgan.cli import main

    trained_tiny_clf.save(tmp_path / "clf")
    out = tmp_path / "eval"
    rc = main(["evaluate", "--classifier", str(tmp_path / "clf"), "--attack", "pgd", "--attack", "fgsm",
               "--attack", "foolbox:LinfPGD", "--eps", "0.1", "--eps-sweep", "0.05", "--steps", "3",
               "--max-images", "48", "--batch-size", "24", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert rc == 0
    assert "foolbox:LinfPGD" in capsys.readouterr().out
    rep = Report.from_json(out / "report.json")
    assert rep.n == 48 and set(rep.attacks) == {"pgd", "fgsm", "foolbox:LinfPGD"}
    assert (out / "grid.png").exists() and (out / "eps_curve.png").exists()
    rc = main(["evaluate", "--classifier", str(tmp_path / "clf"), "--attack", "foolbox:Nope", "--out", str(out)])
    assert rc == 2 and "Nope" in capsys.readouterr().err
    rc = main(["evaluate", "--classifier", str(tmp_path / "clf"), "--attack", "advgan:" + str(tmp_path / "missing"),
               "--out", str(out)])
    assert rc == 2
