"""defenses/: adversarial augmentation, robust fine-tuning (4 methods), guard, resume, rounds, report, CLI."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from resume_helpers import assert_resume_exact, same_state, state_of
from torch import nn
from torch.utils.data import Subset

from advgan import data
from attacks import FGSM, PGD, Classifier, RandomNoise
from defenses import AdversarialAugmentation, FinetuneConfig, attack_stats, before_after, finetune, parse_sources

EPS = 0.15  # a budget at which a tiny CNN gains measurable robustness in one short epoch


@pytest.fixture(scope="module")
def loaders(mnist):
    train, test = mnist
    g = torch.Generator().manual_seed(0)
    tr = Subset(train, torch.randperm(len(train), generator=g)[:768].tolist())
    te = Subset(test, torch.randperm(len(test), generator=g)[:256].tolist())  # test split is sorted by label
    return data.loader(tr, 64, shuffle=True, seed=0), data.loader(te, 128, shuffle=False)


@pytest.fixture
def clf(trained_tiny_clf):
    return copy.deepcopy(trained_tiny_clf)  # never mutate the session fixture


def _bn_classifier() -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(16, 10))
    return Classifier(net, 10, mean=(0.5,), std=(0.5,))


# ---------------------------------------------------------------------- augmentation
def test_augmentation_replaces_exact_fraction_and_keeps_alignment(small_batch, trained_tiny_clf):
    x, y = small_batch
    x0 = x.clone()
    aug = AdversarialAugmentation([RandomNoise(eps=0.1, seed=1)], fraction=0.25, seed=3)
    xm, ym = aug(trained_tiny_clf, x, y)
    assert xm.shape == x.shape and torch.equal(ym, y) and torch.equal(x, x0)
    changed = (xm != x).flatten(1).any(1)
    assert int(changed.sum()) == 16  # exactly round(0.25 * 64)
    assert torch.equal(xm[~changed], x[~changed])
    # each replaced item is a perturbation of itself (alignment): within eps of the same index
    assert float((xm - x).abs().amax()) <= 0.1 + 1e-6
    # seeded: same plan on a fresh object; a different seed picks other items
    xm2, _ = AdversarialAugmentation([RandomNoise(eps=0.1, seed=1)], fraction=0.25, seed=3)(trained_tiny_clf, x, y)
    assert torch.equal(xm, xm2)
    xm3, _ = AdversarialAugmentation([RandomNoise(eps=0.1, seed=1)], fraction=0.25, seed=4)(trained_tiny_clf, x, y)
    assert not torch.equal((xm3 != x).flatten(1).any(1), changed)
    assert torch.equal(AdversarialAugmentation([RandomNoise(eps=0.1)], fraction=0.0)(trained_tiny_clf, x, y)[0], x)
    assert bool((AdversarialAugmentation([RandomNoise(eps=0.1)], fraction=1.0)(trained_tiny_clf, x, y)[0] != x).flatten(1).any(1).all())


def test_augmentation_modes_split_between_sources(small_batch, trained_tiny_clf):
    x, y = small_batch
    rr = AdversarialAugmentation([RandomNoise(eps=0.1), FGSM(eps=0.1)], fraction=0.5, mode="round_robin")
    for _ in range(3):
        rr(trained_tiny_clf, x, y)
    assert rr.counts == [48, 48]
    w = AdversarialAugmentation([RandomNoise(eps=0.1), FGSM(eps=0.1)], fraction=1.0, weights=[0.0, 1.0])
    w(trained_tiny_clf, x, y)
    assert w.counts == [0, 64]
    # FGSM items really are adversarial-ish: most of them fool the model
    idx, src = AdversarialAugmentation([FGSM(eps=0.3)], fraction=1.0).plan(64, step=0)
    assert idx.numel() == 64 and bool((src == 0).all())


def test_augmentation_leaves_bn_stats_weights_and_mode_untouched(small_batch):
    x, y = small_batch
    model = _bn_classifier().unfreeze()  # training mode, trainable: as inside a fine-tuning loop
    before = state_of(model)
    aug = AdversarialAugmentation([FGSM(eps=0.1, random_start=True), PGD(eps=0.1, steps=3)], fraction=0.5)
    xm, ym = aug(model, x, y)
    assert same_state(before, state_of(model))  # BatchNorm running stats and weights unchanged
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert not xm.requires_grad and xm.shape == x.shape
    batches = list(aug.wrap([(x[:32], y[:32]), (x[32:], y[32:])], model))
    assert len(batches) == 2 and batches[1][0].shape == (32, 1, 28, 28) and torch.equal(batches[1][1], y[32:])
    assert same_state(before, state_of(model))


def test_augmentation_rejects_bad_sources(trained_tiny_clf):
    with pytest.raises(ValueError, match="empty"):
        AdversarialAugmentation([])
    with pytest.raises(TypeError, match="parse_sources"):
        AdversarialAugmentation(["pgd"])
    with pytest.raises(ValueError, match="fraction"):
        AdversarialAugmentation([RandomNoise(eps=0.1)], fraction=1.5)
    with pytest.raises(ValueError, match="one weight per source"):
        AdversarialAugmentation([RandomNoise(eps=0.1)], weights=[1, 2])
    with pytest.raises(ValueError, match="one norm"):
        AdversarialAugmentation([RandomNoise(eps=0.1), RandomNoise(eps=1.0, norm="l2")])


def test_parse_sources(trained_tiny_clf, tmp_path):
    s = parse_sources(["pgd", "fgsm", "noise"], trained_tiny_clf, eps=0.2, pgd_steps=7)
    assert [a.name for a in s] == ["pgd", "fgsm", "noise"] and s[0].steps == 7 and s[1].random_start
    assert all(a.eps == pytest.approx(0.2) for a in s)
    with pytest.raises(ValueError, match="valid sources"):
        parse_sources(["pgd", "bogus"], trained_tiny_clf, eps=0.2)
    with pytest.raises(ValueError, match="no AdvGAN attacker"):
        parse_sources([f"advgan:{tmp_path}"], trained_tiny_clf, eps=0.2)


# ---------------------------------------------------------------------- config validation
@pytest.mark.parametrize("kw,err,match", [
    ({"method": "madry"}, ValueError, "valid methods: augment, pgd-at, fgsm-rs, trades"),
    ({"eps": 8}, ValueError, "8/255"),
    ({"fraction": 1.5}, ValueError, "fraction"),
    ({"fraction": -0.1}, ValueError, "fraction"),
    ({"optimizer": "rmsprop"}, ValueError, "adamw, sgd"),
    ({"pgd_steps": 0}, ValueError, "pgd_steps"),
    ({"lr": -1.0}, ValueError, "lr"),
    ({"overfit_drop": 0}, ValueError, "overfit_drop"),
])
def test_bad_configs_give_clear_errors(kw, err, match):
    with pytest.raises(err, match=match):
        FinetuneConfig(**kw)


def test_finetune_refuses_bad_input_before_work(clf, loaders, tmp_path):
    train, _ = loaders
    before = state_of(clf)
    with pytest.raises(ValueError, match="source list is empty"):
        finetune(clf, train, FinetuneConfig(method="augment", eps=EPS), sources=[], out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="outside the config's threat model"):
        finetune(clf, train, FinetuneConfig(method="augment", eps=0.1), sources=[PGD(eps=0.3)])
    with pytest.raises(TypeError, match="attacks.Classifier"):
        finetune(nn.Linear(2, 2), train, FinetuneConfig())
    assert same_state(before, state_of(clf)) and not (tmp_path / "x").exists()


# ---------------------------------------------------------------------- the methods raise robustness
@pytest.mark.parametrize("method", ["augment", "pgd-at", "fgsm-rs", "trades"])
def test_each_method_raises_robust_accuracy(method, clf, loaders):
    train, test = loaders
    pgd = PGD(eps=EPS, steps=10, seed=0)
    before = attack_stats(clf, test, pgd)
    sources = [PGD(eps=EPS, steps=5)] if method == "augment" else None
    cfg = FinetuneConfig(method=method, eps=EPS, epochs=1, pgd_steps=5, lr=3e-3, batch_size=64, progress=False,
                         fraction=0.5, trades_beta=3.0)
    robust, hist = finetune(clf, train, cfg, sources=sources)
    after = attack_stats(robust, test, pgd)
    assert after["robust_acc"] > before["robust_acc"] + 0.1, (method, before, after)
    assert after["clean_acc"] > 0.6, (method, after)
    assert len(hist.epochs) == 1 and hist.epochs[0]["train_seconds"] > 0
    assert not robust.training and not any(p.requires_grad for p in robust.parameters())


def test_input_classifier_untouched_and_best_selected(clf, loaders, tmp_path):
    train, test = loaders
    before = state_of(clf)
    cfg = FinetuneConfig(method="fgsm-rs", eps=EPS, epochs=2, lr=3e-3, batch_size=64, progress=False, val_pgd_steps=3,
                         guard_batch_size=64, guard_pgd_steps=3)
    robust, hist = finetune(clf, train, cfg, val_loader=test, out_dir=tmp_path)
    assert same_state(before, state_of(clf)) and not clf.training and not any(p.requires_grad for p in clf.parameters())
    assert not same_state(before, state_of(robust))
    assert all("val_robust_acc" in e and "val_clean_acc" in e and "guard_robust_acc" in e for e in hist.epochs)
    assert all(e["val_select"] == e["val_robust_acc"] for e in hist.epochs)  # no sources: PGD robust accuracy
    best = max(hist.epochs, key=lambda e: (e["val_select"], e["val_clean_acc"]))
    assert best.get("best") is True and sum(bool(e.get("best")) for e in hist.epochs) >= 1
    saved_best = Classifier.load(tmp_path / "best")
    assert same_state(state_of(saved_best), state_of(robust))  # the returned classifier is the best epoch's
    assert same_state(state_of(Classifier.load(tmp_path)), state_of(robust))
    assert saved_best.extra["epoch"] == best["epoch"]


def test_best_epoch_counts_the_sources_robust_accuracy(clf, loaders):
    """augment with a weak source: PGD robust accuracy alone may be flat; the selection averages in the source's."""
    train, test = loaders
    src = FGSM(eps=EPS)
    cfg = FinetuneConfig(method="augment", eps=EPS, epochs=2, lr=3e-3, batch_size=64, progress=False, val_pgd_steps=3)
    robust, hist = finetune(clf, train, cfg, sources=[src], val_loader=test)
    for e in hist.epochs:
        src_acc = [v for k, v in e.items() if k.startswith("val_robust_acc/")]
        assert len(src_acc) == 1 and e["val_select"] == pytest.approx((e["val_robust_acc"] + src_acc[0]) / 2)
    best = max(hist.epochs, key=lambda e: (e["val_select"], e["val_clean_acc"]))
    assert [e["epoch"] for e in hist.epochs if e.get("best")][-1] == best["epoch"]
    final = attack_stats(robust, test, src)
    assert final["robust_acc"] == pytest.approx(best[[k for k in best if k.startswith("val_robust_acc/")][0]])


def test_sgd_optimizer_and_ramp(clf, loaders):
    train, _ = loaders
    cfg = FinetuneConfig(method="pgd-at", eps=EPS, epochs=1, pgd_steps=2, optimizer="sgd", lr=0.01, eps_ramp_epochs=2,
                         progress=False, batch_size=64)
    robust, hist = finetune(clf, train, cfg)
    eps_seen = [s["C/eps"] for s in hist.steps]
    assert eps_seen == sorted(eps_seen) and eps_seen[-1] < EPS * 0.6 and eps_seen[0] > 0


# ---------------------------------------------------------------------- resume and the guard
def test_resume_gives_identical_weights(clf, mnist, tmp_path, monkeypatch):
    idx = torch.randperm(len(mnist[0]), generator=torch.Generator().manual_seed(1))[:768].tolist()

    def train():  # a fresh loader per run: a reused loader's shuffling generator has moved on
        return data.loader(Subset(mnist[0], idx), 64, shuffle=True, seed=0)

    cfg = FinetuneConfig(method="pgd-at", eps=EPS, epochs=2, pgd_steps=2, eps_ramp_epochs=1, checkpoint_every=5,
                         progress=False, batch_size=64, log_every=1)
    assert_resume_exact(clf, train, cfg, tmp_path, monkeypatch, crash_at=18)


def test_overfit_guard_rolls_back_on_collapse(clf, loaders, monkeypatch):
    ds = loaders[0].dataset

    def train():
        return data.loader(ds, 64, shuffle=True, seed=0)

    import defenses.validation as V

    cfg1 = FinetuneConfig(method="fgsm-rs", eps=EPS, epochs=1, lr=3e-3, lr_schedule="constant", progress=False, batch_size=64,
                          guard_batch_size=32)
    one, _ = finetune(clf, train(), cfg1)
    accs = iter([0.9, 0.05])  # epoch 2: forced collapse of the held-out PGD accuracy
    monkeypatch.setattr(V, "guard_accuracy", lambda *a, **k: next(accs))
    cfg2 = FinetuneConfig(method="fgsm-rs", eps=EPS, epochs=2, lr=3e-3, lr_schedule="constant", progress=False, batch_size=64,
                          guard_batch_size=32)
    with pytest.warns(RuntimeWarning, match="catastrophic overfitting"):
        two, hist = finetune(clf, train(), cfg2)
    assert [e["rolled_back"] for e in hist.epochs] == [False, True]
    assert same_state(state_of(one), state_of(two))  # back to the weights after epoch 1
    # no rollback without a collapse
    accs2 = iter([0.5, 0.45])
    monkeypatch.setattr(V, "guard_accuracy", lambda *a, **k: next(accs2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, hist2 = finetune(clf, train(), cfg2)
    assert [e["rolled_back"] for e in hist2.epochs] == [False, False]
    # a gradual collapse (a few points per epoch, as fgsm-rs collapses on MNIST at eps 0.3) is measured from the
    # peak: epoch 3 is 25 points under epoch 1 but only 15 under epoch 2, and goes back to epoch 1's weights
    accs3 = iter([0.5, 0.4, 0.25])
    monkeypatch.setattr(V, "guard_accuracy", lambda *a, **k: next(accs3))
    cfg3 = FinetuneConfig(method="fgsm-rs", eps=EPS, epochs=3, lr=3e-3, lr_schedule="constant", progress=False, batch_size=64,
                          guard_batch_size=32)
    with pytest.warns(RuntimeWarning, match=r"fell from 50.0% \(its best so far\) to 25.0%; rolled back to epoch 1's"):
        three, hist3 = finetune(clf, train(), cfg3)
    assert [e["rolled_back"] for e in hist3.epochs] == [False, False, True]
    assert same_state(state_of(one), state_of(three))


# ---------------------------------------------------------------------- report, AdvGAN sources, rounds, CLI
def test_before_after_report(clf, loaders, tmp_path):
    train, test = loaders
    robust, hist = finetune(clf, train, FinetuneConfig(method="fgsm-rs", eps=EPS, epochs=1, progress=False, batch_size=64))
    rep = before_after({"before": clf, "after": robust}, test, eps=EPS, pgd_steps=5, histories={"after": hist},
                       clean_epoch_seconds=hist.epochs[0]["train_seconds"] / 2, max_batches=1, out_dir=tmp_path)
    assert rep.rows["after"]["robust_acc_pgd"] > rep.rows["before"]["robust_acc_pgd"]
    assert rep.rows["after"]["epoch_cost_vs_clean"] == pytest.approx(2.0)
    md = rep.to_markdown()
    assert "| after |" in md and "PGD-5" in md
    assert (tmp_path / "defense_report.json").is_file() and (tmp_path / "defense_report.md").is_file()
    for r in rep.rows.values():  # the worst case over PGD and FGSM is at most each of them
        assert r["robust_acc_worst"] <= min(r["robust_acc_pgd"], r["robust_acc_fgsm"])
        assert r["pgd_overestimate"] == pytest.approx(r["robust_acc_pgd"] - r["robust_acc_worst"])


def test_before_after_autoattack_worst_case(clf, loaders):
    _, test = loaders
    with pytest.raises(ValueError, match="version"):  # a bad version fails before any model is evaluated
        before_after({"m": clf}, test, eps=EPS, autoattack="nope")
    with pytest.raises(TypeError, match="autoattack"):
        before_after({"m": clf}, test, eps=EPS, autoattack=1.5)
    rep = before_after({"m": clf}, test, eps=EPS, pgd_steps=2, max_batches=1, autoattack=True)
    r = rep.rows["m"]
    assert r["robust_acc_autoattack"] is not None
    assert r["robust_acc_worst"] <= min(r["robust_acc_pgd"], r["robust_acc_fgsm"], r["robust_acc_autoattack"])
    assert "AutoAttack" in rep.to_markdown() and "worst case" in rep.to_markdown()


@pytest.mark.slow
def test_advgan_source_rounds_and_cli(clf, loaders, tmp_path):
    from advgan.attacker import AdvGAN, AdvGANConfig
    from advgan.cli import main
    from defenses import play_rounds

    train, test = loaders
    atk = AdvGAN(clf, AdvGANConfig(eps=EPS, progress=False))
    atk.fit(train, 1, out_dir=tmp_path / "atk")
    (src,) = parse_sources([f"advgan:{tmp_path / 'atk'}"], clf, eps=EPS)
    assert src.name == "advgan"
    x, y = next(iter(test))
    xm, ym = AdversarialAugmentation([src], fraction=0.5)(clf, x, y)
    assert int((xm != x).flatten(1).any(1).sum()) == 64 and torch.equal(ym, y)
    final, recs = play_rounds(clf, train, FinetuneConfig(method="augment", eps=EPS, epochs=1, progress=False, batch_size=64),
                              rounds=1, val_loader=test, attacker_epochs=1, pgd_steps=5, out_dir=tmp_path / "rounds")
    assert [r["round"] for r in recs] == [0, 1] and 0 <= recs[1]["attacker_asr_after"] <= 1
    # fine-tuning on the round's attacker lowers that attacker's success rate
    assert recs[1]["attacker_asr_after"] < recs[1]["attacker_asr_before"], recs
    assert (tmp_path / "rounds" / "rounds.json").is_file()
    clf.save(tmp_path / "clf")
    rc = main(["finetune", "--classifier", str(tmp_path / "clf"), "--method", "augment", "--source", f"advgan:{tmp_path / 'atk'}",
               "--source", "noise", "--eps", str(EPS), "--epochs", "1", "--train-subset", "256", "--val-batches", "1",
               "--no-progress", "--report", "--out", str(tmp_path / "cli")])
    assert rc == 0 and (tmp_path / "cli" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "cli" / "defense_report.md").is_file()


def test_cli_rejects_bad_arguments(tmp_path, capsys, trained_tiny_clf):
    from advgan.cli import main

    trained_tiny_clf.save(tmp_path / "clf")
    assert main(["finetune", "--classifier", str(tmp_path / "clf"), "--method", "augment", "--out", str(tmp_path / "o")]) == 2
    assert "needs at least one --source" in capsys.readouterr().err
    assert main(["finetune", "--classifier", str(tmp_path / "clf"), "--method", "pgd-at", "--eps", "8", "--out", str(tmp_path / "o")]) == 2
    assert "8/255" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
