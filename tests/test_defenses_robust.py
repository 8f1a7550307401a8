"""defenses: MART, AWP and N-FGSM (losses, weight perturbation, config, CLI, resume, timm)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from resume_helpers import assert_resume_exact, same_state, state_of
from torch import nn
from torch.utils.data import Subset

from advgan import data
from attacks import PGD, Classifier
from attacks.threat import ThreatModel
from defenses import FinetuneConfig, attack_stats, finetune
from defenses import losses_robust as R
from defenses import methods as M
from defenses.finetune import FinetuneGame

EPS = 0.15


def _bn_classifier() -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(16, 10))
    return Classifier(net, 10, mean=(0.5,), std=(0.5,))


@pytest.fixture
def clf(trained_tiny_clf):
    return copy.deepcopy(trained_tiny_clf)


@pytest.fixture(scope="module")
def loaders(mnist):
    train, test = mnist
    g = torch.Generator().manual_seed(0)
    tr = Subset(train, torch.randperm(len(train), generator=g)[:512].tolist())
    te = Subset(test, torch.randperm(len(test), generator=g)[:256].tolist())
    return data.loader(tr, 64, shuffle=True, seed=0), data.loader(te, 128, shuffle=False)


# ---------------------------------------------------------------------- MART
def test_mart_loss_matches_the_paper_formula_and_stays_finite(small_batch, clf):
    x, y = small_batch[0][:16], small_batch[1][:16]
    x_adv = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    loss, parts = R.mart_loss(clf, x, x_adv, y, beta=6.0)
    with torch.no_grad():  # float64 recomputation of BCE + beta * KL * (1 - p_y)
        p, pa = F.softmax(clf(x).double(), 1), F.softmax(clf(x_adv).double(), 1)
        wrong = pa.clone()
        wrong[torch.arange(16), y] = 0
        bce = -torch.log(pa[torch.arange(16), y]) - torch.log(1 - wrong.amax(1))
        kl = (p * (p.log() - pa.log())).sum(1)
        ref = bce.mean() + 6.0 * (kl * (1 - p[torch.arange(16), y])).mean()
    assert loss.shape == () and abs(float(loss) - float(ref)) < 1e-4
    assert set(parts) == {"bce", "kl", "acc", "adv_acc"}

    class Saturated(nn.Module):  # a confidently wrong net: log(1 - max wrong prob) would be -inf without the clamp
        def forward(self, z):
            out = torch.zeros(z.shape[0], 10)
            out[:, 0] = 1e4 * z.flatten(1).mean(1)
            return out

    z = torch.rand(4, 1, 28, 28, requires_grad=True)
    loss, _ = R.mart_loss(Saturated(), z, z, torch.full((4,), 3), beta=6.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


# ---------------------------------------------------------------------- N-FGSM
def test_nfgsm_examples_leave_the_ball_and_the_model_alone(small_batch, clf):
    x, y = small_batch
    before = state_of(clf)
    th = ThreatModel("linf", 0.1)
    torch.manual_seed(0)
    adv = R.nfgsm_examples(clf, x, y, th, k=2.0)
    d = (adv - x).abs().flatten(1).amax(1)
    assert adv.shape == x.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float(d.max()) > 0.1 + 1e-3 and float(d.max()) <= 0.3 + 1e-6  # no projection: up to (k + 1) eps
    assert same_state(before, state_of(clf)) and not clf.training
    # k = 0: exactly FGSM with step eps from x
    x1 = x.clone().requires_grad_(True)
    g = torch.autograd.grad(F.cross_entropy(clf(x1), y, reduction="sum"), x1)[0]
    assert torch.equal(R.nfgsm_examples(clf, x, y, th, k=0.0), (x + 0.1 * g.sign()).clamp(0, 1))


# ---------------------------------------------------------------------- AWP
def test_awp_perturbation_size_gradient_and_exact_restore(small_batch):
    x, y = small_batch[0][:32], small_batch[1][:32]
    clf = _bn_classifier()
    clf.unfreeze()  # as during fine-tuning: train mode, trainable weights
    before = state_of(clf)  # weights and BatchNorm statistics
    v = R.awp_perturbation(clf, lambda f: F.cross_entropy(f(x), y), 0.01)
    weights = R.perturbable(clf)
    assert len(v) == len(weights) == 2 and same_state(before, state_of(clf))  # the proxy moved nothing, BN stats included
    assert all(p.grad is None for p in clf.parameters())
    for _, w in weights:
        assert abs(float(v[id(w)].norm() / w.detach().norm()) - 0.01) < 1e-5
    # the training loss is evaluated at w + v; the gradient reaching w is the gradient at w + v
    fwd = R.PerturbedForward(clf, v)
    loss = F.cross_entropy(fwd(x), y)
    loss.backward()
    assert same_state({k: t for k, t in before.items() if "running" not in k and "num_batches" not in k},
                 {k: t for k, t in state_of(clf).items() if "running" not in k and "num_batches" not in k})
    ref = copy.deepcopy(clf)
    ref.load_state_dict(before)
    with torch.no_grad():
        for (_, w), (_, wr) in zip(weights, R.perturbable(ref)):
            wr.add_(v[id(w)])
    ref.zero_grad()
    ref_loss = F.cross_entropy(ref(x), y)
    ref_loss.backward()
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    for p, q in zip(clf.parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_awp_gamma_zero_is_the_base_method_and_negative_is_refused(small_batch, clf):
    x, y = small_batch[0][:16], small_batch[1][:16]
    th = ThreatModel("linf", EPS)
    with clf.unfrozen():
        torch.manual_seed(1)
        a, _ = M.batch_loss("awp", clf, clf, x, y, threat=th, pgd_steps=2, pgd_step_size=None, trades_beta=6.0, awp_gamma=0.0)
        torch.manual_seed(1)
        b, _ = M.batch_loss("pgd-at", clf, clf, x, y, threat=th, pgd_steps=2, pgd_step_size=None, trades_beta=6.0)
        torch.manual_seed(1)
        c, _ = M.batch_loss("awp", clf, clf, x, y, threat=th, pgd_steps=2, pgd_step_size=None, trades_beta=6.0, awp_gamma=0.05,
                            awp_base="trades")
        assert torch.equal(a, b) and torch.isfinite(c)
        with pytest.raises(ValueError, match="awp_gamma must be >= 0"):
            R.awp_perturbation(clf, lambda f: f(x).sum(), -0.1)
    with pytest.raises(ValueError, match="awp_gamma must be >= 0"):
        FinetuneConfig(method="awp", awp_gamma=-0.01)
    with pytest.raises(ValueError, match="pgd-at, trades"):
        FinetuneConfig(method="awp", awp_base="mart")
    with pytest.raises(ValueError, match="valid methods: .*mart, awp, n-fgsm"):
        FinetuneConfig(method="awp-trades")


def test_awp_warmup_turns_the_perturbation_on_after_the_warmup(clf):
    game = FinetuneGame(clf, FinetuneConfig(method="awp", awp_gamma=0.01, awp_warmup_epochs=1.5), aug=None, steps_per_epoch=4)
    assert [game.awp_gamma(s) for s in range(8)] == [0.0] * 6 + [0.01] * 2


# ---------------------------------------------------------------------- fine-tuning end to end
@pytest.mark.parametrize("method", ["mart", "awp", "n-fgsm"])
def test_new_methods_raise_robust_accuracy(method, clf, loaders):
    train, test = loaders
    pgd = PGD(eps=EPS, steps=10, seed=0)
    before = attack_stats(clf, test, pgd)
    cfg = FinetuneConfig(method=method, eps=EPS, epochs=1, pgd_steps=3, lr=3e-3, batch_size=64, progress=False, awp_gamma=0.01)
    robust, hist = finetune(clf, train, cfg)
    after = attack_stats(robust, test, pgd)
    assert after["robust_acc"] > before["robust_acc"] + 0.1, (method, before, after)
    assert after["clean_acc"] > 0.6, (method, after)
    assert len(hist.epochs) == 1


@pytest.mark.parametrize("method", ["awp", "n-fgsm"])
def test_resume_is_exact(method, clf, mnist, tmp_path, monkeypatch):
    idx = torch.randperm(len(mnist[0]), generator=torch.Generator().manual_seed(1))[:384].tolist()

    def train():
        return data.loader(Subset(mnist[0], idx), 64, shuffle=True, seed=0)

    cfg = FinetuneConfig(method=method, eps=EPS, epochs=2, pgd_steps=2, checkpoint_every=4, progress=False, batch_size=64,
                         log_every=1, awp_gamma=0.01, awp_warmup_epochs=0.5)
    assert_resume_exact(clf, train, cfg, tmp_path, monkeypatch, crash_at=10)


def test_timm_model_with_awp_and_mart():
    timm_clf = Classifier.from_timm("resnet18", 10, in_chans=1, pretrained=False)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
    before = state_of(timm_clf)
    for method in ("awp", "mart"):
        robust, hist = finetune(timm_clf, torch.utils.data.TensorDataset(x, y), method=method, eps=0.03, epochs=1,
                                pgd_steps=1, batch_size=8, progress=False)
        assert torch.isfinite(torch.tensor(hist.steps[-1]["C/loss"]))
        assert not same_state(state_of(robust), before)
    assert same_state(state_of(timm_clf), before)


# ---------------------------------------------------------------------- CLI
def test_cli_runs_the_new_methods_and_refuses_bad_flags(tmp_path, capsys, trained_tiny_clf):
    from advgan.cli import main

    trained_tiny_clf.save(tmp_path / "clf")
    common = ["finetune", "--classifier", str(tmp_path / "clf"), "--train-subset", "128", "--epochs", "1", "--eps", "0.1",
              "--pgd-steps", "1", "--val-batches", "1"]
    for bad, says in ((["--method", "awp", "--awp-gamma", "-1"], "--awp-gamma: expected a finite number >= 0"),
                      (["--method", "madry"], "mart"), (["--method", "awp", "--awp-base", "mart"], "pgd-at")):
        with pytest.raises(SystemExit) as exc:
            main([*common, *bad, "--out", str(tmp_path / "o")])
        assert exc.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main([*common, "--method", "n-fgsm", "--nfgsm-k", "1", "--out", str(tmp_path / "nf")]) == 0
    saved = Classifier.load(tmp_path / "nf")
    assert isinstance(saved, Classifier)
    assert main([*common, "--method", "awp", "--awp-base", "trades", "--awp-gamma", "0.02", "--out", str(tmp_path / "aw")]) == 0
    import json

    cfg = json.loads((tmp_path / "aw" / "config.json").read_text())
    fc = cfg.get("finetune_config") or cfg.get("extra", {}).get("finetune_config")
    assert fc["method"] == "awp" and fc["awp_base"] == "trades" and fc["awp_gamma"] == 0.02


# ---------------------------------------------------------------------- the demo's defense report
def test_demo_defense_summary_says_what_it_bought_and_cost():
    from advgan.cli.demo import FINETUNE_METHODS, DemoConfig, finetune_stage
    from advgan.cli.demo_report import _defense_lines, defense_summary

    assert {"mart", "awp", "n-fgsm"} <= set(FINETUNE_METHODS) and "clean" not in FINETUNE_METHODS
    for method, trained_on in (("n-fgsm", []), ("augment", ["advgan"])):
        cfg = DemoConfig(finetune_method=method, classifier_epochs=4, finetune_epochs=3)
        stage = finetune_stage(cfg)
        s = {"timings_seconds": {"train target classifier": 40.0, stage: 60.0, "evaluate defended model": 100.0},
             "clean_accuracy": {"before": 0.97, "after": 0.95},
             "before": {"pgd-40": {"robust_accuracy": 0.0}, "advgan": {"robust_accuracy": 0.01}},
             "after": {"pgd-40": {"robust_accuracy": 0.4}, "advgan": {"robust_accuracy": 0.9},
                       "advgan-retrained": {"robust_accuracy": 0.7}}}
        d = defense_summary(s, cfg, stage)
        assert d["trained_on"] == trained_on and d["seconds"] == 60.0
        assert d["clean_epochs_equivalent"] == pytest.approx(6.0) and d["share_of_demo_time"] == pytest.approx(0.3)
        assert d["worst_unseen"] == {"before": 0.0, "after": 0.4}
        assert ("advgan" in d["robust_accuracy_unseen_attacks"]) == (method != "augment")
        assert d["robust_accuracy_unseen_attacks"]["advgan-retrained"]["before"] is None
        text = "\n".join(_defense_lines(d))
        assert "60 s" in text and "6.0 epochs" in text and "40.0%" in text
