"""AdvGAN: threat-model guarantees, frozen target, learning, targeted mode, save/load, exact resume, errors."""
from __future__ import annotations

import json
import math

import pytest
import torch
from advgan.generator_attack import GeneratorAttack
from torch import nn

from advgan import data
from advgan.attacker import AdvGAN, AdvGANConfig
from attacks import Classifier, ThreatModel
from attacks.checkpoint import CheckpointError

FAST = dict(progress=False, device="cpu", batch_size=32)


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict(keep_vars=False).items()} | {
        f"buf.{k}": v.clone() for k, v in m.named_buffers()}


def _noise_asr(clf, x, y, eps, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_n = (x + eps * (2 * torch.randint(0, 2, x.shape, generator=g).float() - 1)).clamp(0, 1)
    with torch.no_grad():
        ok = clf(x).argmax(1) == y
        return float(((clf(x_n).argmax(1) != y) & ok).sum() / ok.sum())


@pytest.fixture(scope="module")
def small_sets(mnist):
    train, test = mnist
    return train.subset(1000, seed=0), test.subset(300, seed=0)


@pytest.fixture(scope="module")
def fitted(trained_tiny_clf, small_sets):
    """An untargeted AdvGAN (L-inf 0.3) fitted 2 epochs on 1,000 images; records the classifier before/after."""
    clf = trained_tiny_clf
    train, test = small_sets
    before, mode, flags = _state(clf), clf.training, [p.requires_grad for p in clf.parameters()]
    atk = AdvGAN(clf, AdvGANConfig(eps=0.3, **FAST))
    hist = atk.fit(train, epochs=2, val_loader=test)
    return atk, hist, before, mode, flags


def test_fit_raises_asr_well_above_noise_and_leaves_classifier_bit_identical(fitted, trained_tiny_clf, small_sets):
    atk, hist, before, mode, flags = fitted
    clf = trained_tiny_clf
    after = _state(clf)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), f"classifier {k} changed during AdvGAN.fit"
    assert clf.training == mode and [p.requires_grad for p in clf.parameters()] == flags
    assert all(p.grad is None for p in clf.parameters())
    _, test = small_sets
    x, y = test.images, test.labels
    asr = atk.attack_success_rate(test)
    noise = _noise_asr(clf, x, y, 0.3)
    assert asr > noise + 0.25, f"AdvGAN ASR {asr:.3f} vs random-sign noise {noise:.3f}"
    assert [e["epoch"] for e in hist.epochs] == [1, 2] and all("val_asr" in e for e in hist.epochs)
    assert max(e["val_asr"] for e in hist.epochs) == pytest.approx(asr)  # the best epoch's generator is kept
    for key in ("D/loss", "G/loss", "G/adv", "G/gan", "G/hinge", "G/div"):
        assert key in hist.steps[-1]


def test_trained_generator_perturbation_depends_on_the_input(fitted, small_sets):
    atk, hist, *_ = fitted
    _, test = small_sets
    for e in hist.epochs:  # the diagnostics are in the history, and they are the generator's
        assert 0 < e["val_shared_energy"] < 1 and 0 <= e["val_adv_class_entropy"] <= math.log(10)
    best = max(hist.epochs, key=lambda e: e["val_asr"])
    diag = atk.diagnostics(test)
    assert diag["shared_energy"] == pytest.approx(best["val_shared_energy"], rel=1e-4)
    x = test.images[:64]
    delta = atk.perturb(x) - x
    # a universal perturbation would give shared energy 1 and equal deltas for different inputs
    assert diag["shared_energy"] < 0.8
    pair = (delta[::2] - delta[1::2]).flatten(1).norm(dim=1) / delta[::2].flatten(1).norm(dim=1).clamp(min=1e-8)
    assert float(pair.median()) > 0.3, f"perturbations of different inputs differ by only {float(pair.median()):.2f}"
    assert diag["adv_class_entropy"] > 0.3  # fooled digits go to more than one class


def test_as_attack_is_an_attack_inside_threat_model_one_forward_per_batch(fitted, trained_tiny_clf, small_sets):
    atk, *_ = fitted
    _, test = small_sets
    x, y = test.images[:100], test.labels[:100]
    attack = atk.as_attack(batch_size=40)
    assert isinstance(attack, GeneratorAttack)
    calls = []
    attack.generator.register_forward_hook(lambda *a: calls.append(1))
    x_in = x.clone()
    x_adv = attack(trained_tiny_clf, x, y)
    assert len(calls) == 3  # ceil(100 / 40) generator forwards, nothing else
    assert torch.equal(x, x_in)
    assert bool(ThreatModel("linf", 0.3).contains(x, x_adv).all())
    assert torch.allclose(x_adv, atk.perturb(x))
    with pytest.raises(ValueError, match="untargeted"):
        attack(trained_tiny_clf, x, y, target=(y + 1) % 10)
    with pytest.raises(ValueError, match="untargeted"):
        atk.perturb(x, target=(y + 1) % 10)
    # with_eps rescales the same generator to a smaller budget
    small = attack.with_eps(0.1)(trained_tiny_clf, x, y)
    assert bool(ThreatModel("linf", 0.1).contains(x, small).all())


@pytest.mark.parametrize("norm, eps, generator", [("linf", 0.1, "resnet"), ("l2", 1.5, "resnet"), ("linf", 0.2, "unet")])
def test_every_output_is_inside_the_threat_model(trained_tiny_clf, small_batch, norm, eps, generator):
    x, y = small_batch
    atk = AdvGAN(trained_tiny_clf, AdvGANConfig(eps=eps, norm=norm, generator=generator, width=4, **FAST))
    with torch.no_grad():  # blow the generator's pre-activations up: still inside the ball
        for p in atk.G.parameters():
            p.mul_(50.0)
    tm = ThreatModel(norm, eps)
    for x_adv in (atk.perturb(x), atk.as_attack()(trained_tiny_clf, x, y)):
        assert bool(tm.contains(x, x_adv).all())
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_l2_fit_runs_and_stays_in_ball(trained_tiny_clf, mnist):
    train, _ = mnist
    sub = train.subset(128, seed=1)
    atk = AdvGAN(trained_tiny_clf, AdvGANConfig(eps=2.0, norm="l2", width=4, **FAST))
    hist = atk.fit(sub, epochs=1)
    assert len(hist.steps) == -(-len(sub) // 32)
    x = sub.images[:32]
    assert bool(ThreatModel("l2", 2.0).contains(x, atk.perturb(x)).all())


def test_targeted_hits_targets_more_often_than_chance(trained_tiny_clf, mnist, small_sets):
    train, _ = mnist                     # the targeted game needs ~250 steps to take off (4,000 images x 2 epochs)
    _, test = small_sets
    atk = AdvGAN(trained_tiny_clf, AdvGANConfig(eps=0.3, targeted=True, g_steps=1, **FAST))
    hist = atk.fit(train, epochs=2)
    x, y = test.images[:300], test.labels[:300]
    t = (y + 1 + torch.arange(len(y)) % 9) % 10
    x_adv = atk.as_attack()(trained_tiny_clf, x, y, target=t)
    with torch.no_grad():
        hit = float((trained_tiny_clf(x_adv).argmax(1) == t).float().mean())
    assert hit > 0.3, f"targeted hit rate {hit:.3f} (chance 0.1)"
    assert atk.attack_success_rate(test) > 0.3
    assert hist.steps[-1]["G/asr"] > 0.1
    with pytest.raises(ValueError, match="target"):
        atk.perturb(x)  # a targeted generator needs targets for perturb
    untargeted_call = atk.as_attack()(trained_tiny_clf, x, y)  # random targets drawn
    assert bool(ThreatModel("linf", 0.3).contains(x, untargeted_call).all())


def test_target_curriculum_draws_missed_targets_more_often_and_never_the_label(trained_tiny_clf):
    atk = AdvGAN(trained_tiny_clf, AdvGANConfig(eps=0.3, targeted=True, target_curriculum=4.0, **FAST))
    game = atk.game
    game.miss = torch.zeros(10)
    game.miss[7] = 1.0                      # target 7 is always missed: weight 5 against 1
    torch.manual_seed(0)
    y = torch.randint(0, 10, (20000,))
    t = game.draw_targets(y)
    assert not bool((t == y).any())
    share = float((t[y != 7] == 7).float().mean())
    assert share == pytest.approx(5 / 13, abs=0.02)  # 5 / (5 + 8 other targets of weight 1)
    game._track_misses(torch.tensor([3, 3, 7]), torch.tensor([True, False, True]))
    assert float(game.miss[3]) == pytest.approx(0.05) and float(game.miss[7]) == pytest.approx(0.9)
    assert float(game.miss[0]) == 0.0      # classes absent from the batch keep their rate


def test_aux_classifier_on_d_adds_its_target_loss_to_g_and_learns_labels_and_targets(trained_tiny_clf, mnist, tmp_path):
    train, _ = mnist
    sub = data.ImageDataset(train.images[:256], train.labels[:256], 10)
    with pytest.raises(ValueError, match="needs targeted=True"):
        AdvGANConfig(aux_weight=1.0)
    atk = AdvGAN(trained_tiny_clf, AdvGANConfig(eps=0.3, targeted=True, aux_weight=0.5, width=4, g_steps=1, **FAST))
    assert atk.D.aux is not None and atk.D.aux.out_features == 10
    x, y = sub.images[:64], sub.labels[:64]
    # G's loss is the plain targeted loss plus aux_weight times D's cross-entropy on x_adv's targets (same draws)
    plain = AdvGANConfig(eps=0.3, targeted=True, width=4, g_steps=1, **FAST)
    from advgan.attacker.game import AdvGANGame
    base = AdvGANGame(plain, atk.G, atk.D, trained_tiny_clf, num_classes=10, in_chans=1)
    torch.manual_seed(3)
    l_aux, parts = atk.game.loss("G", atk.nets, (x, y), 0)
    torch.manual_seed(3)
    l_plain, _ = base.loss("G", atk.nets, (x, y), 0)
    assert float(parts["aux"]) > 0
    assert float((l_aux - l_plain).detach()) == pytest.approx(0.5 * float(parts["aux"]), rel=1e-4)
    l_aux.backward()
    assert atk.G.net[1].weight.grad.abs().sum() > 0
    atk.G.zero_grad(set_to_none=True)
    atk.D.zero_grad(set_to_none=True)
    # D's step trains the head: on real images against the labels, on x_adv against the targets
    hist = atk.fit(sub, epochs=3)
    d_aux = [r["D/aux"] for r in hist.steps]
    assert "G/aux" in hist.steps[-1]
    assert sum(d_aux[-4:]) / 4 < sum(d_aux[:4]) / 4, "D's auxiliary classifier did not learn"
    with torch.no_grad():
        _, c = atk.D(x, with_aux=True)
    assert float((c.argmax(1) == y).float().mean()) > 0.2  # chance: 0.1
    atk.save(tmp_path / "aux")
    again = AdvGAN.load(tmp_path / "aux", trained_tiny_clf)
    assert again.config.aux_weight == 0.5
    assert all(torch.equal(a, b) for a, b in zip(again.D.state_dict().values(), atk.D.state_dict().values()))


def test_save_load_round_trip_and_refusals(fitted, trained_tiny_clf, small_batch, tmp_path):
    atk, *_ = fitted
    x, _ = small_batch
    atk.save(tmp_path / "atk")
    meta = json.loads((tmp_path / "atk" / "config.json").read_text())
    assert meta["kind"] == "advgan" and meta["config"]["eps"] == 0.3
    again = AdvGAN.load(tmp_path / "atk", trained_tiny_clf)
    assert again.config == atk.config
    assert torch.equal(again.perturb(x), atk.perturb(x))
    other = Classifier.create("tiny_cnn", 5, in_chans=1)
    with pytest.raises(ValueError, match="5 classes"):
        AdvGAN.load(tmp_path / "atk", other)
    trained_tiny_clf.save(tmp_path / "clf")
    with pytest.raises(CheckpointError):
        AdvGAN.load(tmp_path / "clf", trained_tiny_clf)
    with pytest.raises(CheckpointError, match="does not exist"):
        AdvGAN.load(tmp_path / "missing", trained_tiny_clf)


def test_sample_grid_writes_png(fitted, small_batch, tmp_path):
    atk, *_ = fitted
    x, y = small_batch
    p = atk.sample_grid(tmp_path / "grid.png", x, y)
    assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG"


def _weights(atk):
    return {f"{n}.{k}": v.clone() for n, m in (("G", atk.G), ("D", atk.D)) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("targeted", [False, True])
def test_resume_after_interruption_equals_uninterrupted(trained_tiny_clf, mnist, tmp_path, targeted):
    train, _ = mnist
    sub = data.ImageDataset(train.images[:192], train.labels[:192], 10)  # 6 steps per epoch
    # targeted: with the per-target curriculum, whose running miss rates must resume too
    cfg = AdvGANConfig(eps=0.2, targeted=targeted, target_curriculum=2.0 if targeted else 0.0, width=4, checkpoint_every=4, **FAST)
    ref = AdvGAN(trained_tiny_clf, cfg)
    ref.fit(sub, epochs=3)

    class Stop(Exception):
        pass

    first = AdvGAN(trained_tiny_clf, cfg)
    orig = first.game.loss

    def loss(player, batch, step):
        if step == 9 and player == "D":   # checkpoints at steps 4, 6 (epoch end), 8
            raise Stop
        return orig(player, batch, step)

    first.game.loss = loss
    with pytest.raises(Stop):
        first.fit(sub, epochs=3, out_dir=tmp_path)
    resumed = AdvGAN(trained_tiny_clf, cfg)
    hist = resumed.fit(sub, epochs=3, out_dir=tmp_path)
    a, b = _weights(ref), _weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in hist.steps] == list(range(1, 19))
    # the finished run saved the attacker; re-running the same fit is a no-op resume
    assert (tmp_path / "config.json").is_file()
    again = AdvGAN(trained_tiny_clf, cfg)
    again.fit(sub, epochs=3, out_dir=tmp_path)
    assert all(torch.equal(v, _weights(again)[k]) for k, v in a.items())


@pytest.mark.parametrize("kwargs, exc, msg", [
    ({"eps": 8}, ValueError, "8/255"),
    ({"norm": "l3"}, ValueError, "linf, l2"),
    ({"gan_loss": "gauss"}, ValueError, "lsgan"),
    ({"generator": "vgg"}, ValueError, "resnet, unet"),
    ({"kappa": -1.0}, ValueError, "kappa"),
    ({"alpha": float("nan")}, ValueError, "alpha"),
    ({"c": -0.5}, ValueError, "hinge"),
    ({"targeted": "yes"}, TypeError, "targeted"),
    ({"width": 0}, ValueError, "width"),
    ({"lr_g": 0.0}, ValueError, "lr_g"),
])
def test_bad_config(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        AdvGANConfig(**kwargs)


class _Softmax(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


def test_bad_classifier_and_data_refused_before_any_work(trained_tiny_clf, mnist, tmp_path):
    train, _ = mnist
    sub = train.subset(64, seed=3)
    probs = Classifier(_Softmax(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))), 10)
    atk = AdvGAN(probs, AdvGANConfig(**FAST))
    g_before = _weights(atk)
    with pytest.raises(ValueError, match="logits"):
        atk.fit(sub, epochs=1, out_dir=tmp_path / "p")
    assert not (tmp_path / "p").exists() and all(torch.equal(v, _weights(atk)[k]) for k, v in g_before.items())
    wrong = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 5)), 10)
    with pytest.raises(ValueError, match=r"\(N, 10\) logits"):
        AdvGAN(wrong, AdvGANConfig(**FAST)).fit(sub, epochs=1)
    with pytest.raises(TypeError, match="Classifier"):
        AdvGAN(nn.Linear(784, 10))
    with pytest.raises(TypeError, match="AdvGANConfig"):
        AdvGAN(trained_tiny_clf, {"eps": 0.3})
    atk = AdvGAN(trained_tiny_clf, AdvGANConfig(**FAST))
    bad = data.ImageDataset(sub.images * 255, sub.labels, 10)
    with pytest.raises(ValueError, match="255"):
        atk.fit(bad, epochs=1)
    with pytest.raises(ValueError, match="channel"):
        atk.perturb(torch.rand(2, 3, 28, 28))
    with pytest.raises(TypeError, match="Dataset"):
        atk.fit([1, 2, 3], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        atk.fit(sub, epochs=0)


def test_diversity_weight_defaults_by_mode_and_an_explicit_value_wins():
    assert AdvGANConfig().diversity_weight == 0.5                  # untargeted: counters the collapse onto one class
    assert AdvGANConfig(targeted=True).diversity_weight == 0.0     # targeted: the targets already spread the classes
    assert AdvGANConfig(targeted=True, div_weight=0.25).diversity_weight == 0.25
    assert AdvGANConfig(div_weight=0.0).diversity_weight == 0.0
    with pytest.raises(ValueError, match="div_weight"):
        AdvGANConfig(div_weight=-1.0)


def test_class_spread_term_is_log_k_for_one_class_and_its_gradient_spreads_the_classes():
    from advgan.attacker.game import class_spread

    y = torch.arange(8) % 10
    one = torch.zeros(8, 10)
    one[:, 3] = 6.0
    one[y == 3, 4] = 6.0  # inputs of class 3 go to class 4: still (almost) one adversarial class
    assert class_spread(one, y).item() > 0.5 * math.log(10)
    logits = one.clone().requires_grad_(True)
    opt = torch.optim.SGD([logits], lr=5.0)
    before = class_spread(logits, y).item()
    for _ in range(200):
        opt.zero_grad()
        class_spread(logits, y).backward()
        opt.step()
    after = class_spread(logits, y).item()
    assert after < before / 2 and after >= 0.0
    with pytest.raises(ValueError, match="spread_weight"):
        AdvGANConfig(spread_weight=-0.5)


def test_spread_floor_is_a_hinge_on_the_entropy_that_stops_pushing_once_met():
    from advgan.attacker.game import class_spread

    torch.manual_seed(0)
    y = torch.arange(16) % 10
    collapsed = torch.zeros(16, 10)
    collapsed[:, 2] = 8.0
    collapsed[y == 2, 5] = 8.0
    full = class_spread(collapsed, y)
    h = math.log(10) - full.item()                               # the batch's entropy, from the plain term
    assert class_spread(collapsed, y, floor=h + 0.5).item() == pytest.approx(0.5, abs=1e-5)
    below = collapsed.clone().requires_grad_(True)
    class_spread(below, y, floor=h + 0.5).backward()
    assert below.grad is not None and below.grad.abs().sum() > 0  # under the floor: the same push as the plain term
    spread = torch.randn(16, 10) * 0.01                           # nearly uniform: entropy near log 9
    above = spread.clone().requires_grad_(True)
    term = class_spread(above, y, floor=1.0)
    term.backward()
    assert term.item() == 0.0 and above.grad is not None and above.grad.abs().sum() == 0  # met: no push at all
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="spread_floor"):
            AdvGANConfig(spread_floor=bad)
    with pytest.raises(TypeError, match="spread_floor"):
        AdvGANConfig(spread_floor="high")  # type: ignore[arg-type]
    assert (AdvGANConfig().spread_weight, AdvGANConfig().spread_floor) == (1.0, 1.5)      # the default: on, with the floor
    assert AdvGANConfig(spread_weight=0.0).spread_floor is None                           # no term, no floor
    assert (AdvGANConfig(targeted=True).spread_weight, AdvGANConfig(targeted=True).spread_floor) == (0.0, None)


def test_spread_weight_adds_the_logged_class_spread_term_to_the_generator_loss(trained_tiny_clf, mnist):
    sub = mnist[0].subset(96, seed=5)
    runs = {}
    for w in (0.0, 1.0):
        cfg = AdvGANConfig(eps=0.3, width=4, g_steps=1, spread_weight=w, log_every=1, **FAST)
        runs[w] = AdvGAN(trained_tiny_clf, cfg).fit(sub, epochs=2).steps
    assert all("G/spread" not in s for s in runs[0.0])
    spreads = [s["G/spread"] for s in runs[1.0]]
    assert all(0.0 <= v <= math.log(10) + 1e-5 for v in spreads)
    assert min(spreads) < math.log(10) - 0.1  # once inputs are fooled, the term measures their classes
    # same init, same first batch, same D step: the first G losses differ by exactly the term
    assert runs[1.0][0]["G/loss"] - runs[0.0][0]["G/loss"] == pytest.approx(spreads[0], rel=1e-4, abs=1e-5)
