"""advgan-at: fine-tuning against a generator trained online (the three-player game C, D, G, and the default: G as C's
gradient-reversal partner)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from advgan import data
from advgan.attacker import AdvGAN, AdvGANConfig
from attacks import Classifier
from attacks.threat import ThreatModel
from defenses import FinetuneConfig, finetune
from defenses.advgan_at import GAN_GAME, AdvGANATGame, NoisyGenerator

EPS = 0.3


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def idx(mnist):
    return torch.randperm(len(mnist[0]), generator=torch.Generator().manual_seed(3))[:192].tolist()


def _loader(mnist, idx):  # a fresh loader per run: a reused loader's shuffling generator has moved on
    return data.loader(Subset(mnist[0], idx), 64, shuffle=True, seed=0)


@pytest.fixture
def clf(trained_tiny_clf):
    return copy.deepcopy(trained_tiny_clf)


def _cfg(**kw) -> FinetuneConfig:
    """The D-and-G game (the earlier defaults, GAN_GAME) with noise, an fgsm-rs share and the KL term."""
    base = dict(method="advgan-at", eps=EPS, epochs=1, batch_size=64, progress=False, log_every=1, **GAN_GAME, gen_noise=2,
                gen_mix=0.5, gen_kl=1.0, eps_ramp_epochs=1.0)
    return FinetuneConfig(**{**base, **kw})


def test_three_players_train_c_d_and_g(clf, mnist, idx):
    game = AdvGANATGame(clf, _cfg())
    assert [p.name for p in game.players()] == ["C", "D", "G"] and isinstance(game.nets["G"], NoisyGenerator)
    assert game.players()[0].frozen_mode == "eval"  # D and G attack C as it is evaluated
    before = {n: _state(net) for n, net in game.nets.items()}
    from advgan.engine import Run

    Run(game, _cfg()).train(_loader(mnist, idx), 1)
    for name, net in game.nets.items():
        assert not _same(before[name], _state(net)), f"{name} did not change"
    # through finetune: the caller's classifier is untouched; C, D and G all log losses; eps ramps up
    ref = _state(clf)
    robust, hist = finetune(clf, _loader(mnist, idx), _cfg(gen_steps=2))
    assert _same(ref, _state(clf)) and not _same(ref, _state(robust))
    keys = hist.steps[-1].keys()
    assert {"C/loss", "C/kl", "D/loss", "G/loss", "G/asr"} <= set(keys)
    eps_seen = [s["C/eps"] for s in hist.steps]
    assert eps_seen == sorted(eps_seen) and eps_seen[0] < EPS and len(hist.steps) == 3
    # without a discriminator (gen_alpha=0) the game has two players
    assert [p.name for p in AdvGANATGame(clf, _cfg(gen_alpha=0.0)).players()] == ["C", "G"]


def test_resume_equals_uninterrupted(clf, mnist, idx, tmp_path, monkeypatch):
    cfg = _cfg(epochs=2, checkpoint_every=2)
    full, hist_full = finetune(clf, _loader(mnist, idx), cfg, out_dir=tmp_path / "a")
    real = AdvGANATGame.classifier_loss
    calls = {"n": 0}

    def crash(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # second epoch, after the checkpoint at step 4
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(AdvGANATGame, "classifier_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        finetune(clf, _loader(mnist, idx), cfg, out_dir=tmp_path / "b")
    monkeypatch.setattr(AdvGANATGame, "classifier_loss", real)
    resumed, hist_res = finetune(clf, _loader(mnist, idx), cfg, out_dir=tmp_path / "b")
    assert _same(_state(full), _state(resumed))
    assert [s["G/loss"] for s in hist_full.steps] == [s["G/loss"] for s in hist_res.steps]
    from safetensors.torch import load_file

    ckpt = {k for f in (tmp_path / "b" / "checkpoint").rglob("*.safetensors") for k in load_file(f)}
    assert any(k.startswith("G") or "/G" in k or ".G" in k for k in ckpt), sorted(ckpt)[:5]


def test_generator_of_another_eps_is_refused(clf, mnist, idx):
    ref = _state(clf)
    atk = AdvGAN(clf, AdvGANConfig(eps=0.2, progress=False))
    with pytest.raises(ValueError, match=r"eps=0.2.*eps=0.3"):
        finetune(clf, _loader(mnist, idx), _cfg(gen_noise=0), generator=atk)
    with pytest.raises(ValueError, match="eps=0.2"):
        finetune(clf, _loader(mnist, idx), _cfg(gen_noise=0), generator=atk.as_attack())
    with pytest.raises(ValueError, match="only by method 'advgan-at'"):
        finetune(clf, _loader(mnist, idx), FinetuneConfig(method="pgd-at", eps=0.2, progress=False), generator=atk)
    with pytest.raises(TypeError, match="AdvGAN"):
        finetune(clf, _loader(mnist, idx), _cfg(gen_noise=0), generator=nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="noise input"):
        finetune(clf, _loader(mnist, idx), _cfg(eps=0.2, gen_noise=2), generator=atk)
    assert _same(ref, _state(clf))
    # a generator at the same eps warm-starts G (and D): their weights are the AdvGAN's
    same = AdvGAN(clf, AdvGANConfig(eps=EPS, progress=False, seed=5))
    game_g = _warm_game(clf, same)
    assert _same(_state(game_g.nets["G"]), _state(same.G)) and game_g.nets["G"] is not same.G


def test_gradient_input_generator(clf, mnist, idx):
    """gen_grad: G reads (x, sign of C's input gradient); the direction follows the classifier, C's state is untouched
    by computing it, the game trains, and a warm-start generator (images only) is refused."""
    game = AdvGANATGame(clf, _cfg(gen_grad=True, gen_noise=0))
    x = mnist[0].images[:8]
    ref = _state(clf)
    g = game.gradient_direction(x)
    assert g.shape == x.shape and set(g.unique().tolist()) <= {-1.0, 0.0, 1.0} and g.abs().sum() > 0
    assert _same(ref, _state(clf)) and all(p.grad is None for p in clf.parameters())
    other = copy.deepcopy(clf)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5 * torch.randn_like(p))
    assert not torch.equal(AdvGANATGame(other, _cfg(gen_grad=True, gen_noise=0)).gradient_direction(x), g)
    # the first conv reads 2 channels (image + gradient); with noise, 2 + noise
    first = next(m for m in game.nets["G"].modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 2
    noisy = AdvGANATGame(clf, _cfg(gen_grad=True, gen_noise=2)).nets["G"]
    assert next(m for m in noisy.modules() if isinstance(m, nn.Conv2d)).in_channels == 4
    x_adv, delta = game.adversarial(x, None)
    assert x_adv.shape == x.shape and delta.abs().max() <= EPS + 1e-6
    robust, hist = finetune(clf, _loader(mnist, idx), _cfg(gen_grad=True))
    assert not _same(ref, _state(robust)) and {"C/loss", "G/loss"} <= set(hist.steps[-1])
    with pytest.raises(ValueError, match="gen_grad"):
        finetune(clf, _loader(mnist, idx), _cfg(gen_grad=True, gen_noise=0),
                 generator=AdvGAN(clf, AdvGANConfig(eps=EPS, progress=False)))
    with pytest.raises(TypeError, match="gen_grad"):
        _cfg(gen_grad=1)
    assert _same(ref, _state(clf))


def _warm_game(clf, atk):
    from defenses.finetune import _game

    return _game(clf, _cfg(gen_noise=0), None, atk)


@pytest.mark.parametrize("bad, match", [({"gen_steps": 0}, "gen_steps"), ({"gen_mix": 1.5}, "gen_mix"),
                                        ({"gen_clean": 1.0}, "gen_clean"), ({"gen_kl": -1.0}, "gen_kl"),
                                        ({"gen_noise": -1}, "gen_noise")])
def test_config_refuses_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**bad)


def test_cli_flags_and_timm_model(tmp_path, capsys, trained_tiny_clf, mnist, idx):
    from advgan.cli import main

    trained_tiny_clf.save(tmp_path / "clf")
    common = ["finetune", "--classifier", str(tmp_path / "clf"), "--method", "advgan-at", "--no-progress"]
    with pytest.raises(SystemExit) as e:
        main(common + ["--gen-steps", "0", "--out", str(tmp_path / "bad")])
    assert e.value.code == 2 and "gen-steps" in capsys.readouterr().err
    rc = main(common + ["--epochs", "1", "--train-subset", "128", "--val-batches", "1", "--gen-noise", "1", "--gen-mix", "0.25",
                        "--gen-init", "--batch-size", "64", "--out", str(tmp_path / "cli")])
    assert rc == 0 and (tmp_path / "cli" / "best" / "model.safetensors").is_file()
    import json

    assert '"gen_init": true' in json.dumps(json.loads((tmp_path / "cli" / "config.json").read_text()))  # the flag reached the config
    saved = Classifier.load(tmp_path / "cli")
    assert not _same(_state(saved), _state(trained_tiny_clf))
    # a random-init timm model fine-tunes too (C has BatchNorm: D and G see it in eval mode)
    timm_clf = Classifier.from_timm("test_efficientnet", 10, in_chans=1, pretrained=False)
    ref = _state(timm_clf)
    robust, hist = finetune(timm_clf, data.loader(Subset(mnist[0], idx[:64]), 32, shuffle=True, seed=0), _cfg(batch_size=32, amp=True))
    assert len(hist.steps) == 2 and not _same(ref, _state(robust)) and _same(ref, _state(timm_clf))


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import warnings

    import torch.distributed as dist
    from safetensors.torch import save_file

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        train, _ = data.load("mnist5k")
        torch.manual_seed(0)
        clf = Classifier.create("tiny_cnn", 10, in_chans=1)
        robust, hist = finetune(clf, data.loader(Subset(train, range(128)), 32, shuffle=True), _cfg(batch_size=32, device="cpu"))
        save_file({k: v.contiguous() for k, v in robust.state_dict().items()}, f"{out}/c{rank}.safetensors")
        (Path(out) / f"n{rank}").write_text(str(len(hist.steps)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_stay_in_sync(tmp_path):
    """Under DDP (2 gloo ranks) each rank takes half the batches and the classifiers end identical."""
    import socket

    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    a, b = (load_file(str(tmp_path / f"c{r}.safetensors")) for r in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [(tmp_path / f"n{r}").read_text() for r in (0, 1)] == ["2", "2"]  # 128 / 32 / 2 ranks


@pytest.mark.parametrize("mix, expect", [(0.0, 64), (0.25, 48), (1.0, 0)])
def test_generator_runs_only_on_its_share_of_the_batch(clf, mnist, idx, mix, expect):
    """C's batch: the first gen_mix share from fgsm-rs, the rest from G, which sees only those rows (cost)."""
    game = AdvGANATGame(clf, _cfg(gen_mix=mix, gen_noise=0))
    seen: list[int] = []
    hook = game.nets["G"].register_forward_hook(lambda m, i, o: seen.append(int(i[0].shape[0])))
    x, y = next(iter(_loader(mnist, idx)))
    loss, parts = game.classifier_loss(game.nets["C"], game.nets["G"], x, y)
    hook.remove()
    assert seen == ([expect] if expect else []) and torch.isfinite(loss)
    assert 0.0 <= float(parts["adv_acc"]) <= 1.0


def test_generator_initialises_one_fgsm_step(clf, mnist, idx):
    """gen_init: G's example is the start of one FGSM step of size eps on C's CE, projected back into the ball;
    the step raises C's loss over G's start, C's state is untouched by it, and the game trains end to end."""
    game = AdvGANATGame(clf, _cfg(gen_init=True, gen_mix=0.0, gen_noise=0))
    game._threat = ThreatModel("linf", EPS)  # set by loss() per step (the ramped eps)
    x, y = mnist[0].images[:32], mnist[0].labels[:32]
    ref = _state(clf)
    with torch.no_grad():
        start = game.adversarial(x, None)[0]
    out = game.fgsm_from(x, start, y)
    assert _same(ref, _state(clf)) and all(p.grad is None for p in clf.parameters())
    assert (out - x).abs().max() <= EPS + 1e-6 and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, start)
    with torch.no_grad():
        assert F.cross_entropy(clf(out), y) > F.cross_entropy(clf(start), y)
    seen: list[int] = []
    hook = clf.register_forward_hook(lambda m, i, o: seen.append(int(i[0].shape[0])))
    xb, yb = next(iter(_loader(mnist, idx)))
    loss, _ = game.classifier_loss(game.nets["C"], game.nets["G"], xb, yb)
    hook.remove()
    assert torch.isfinite(loss) and 64 in seen  # C's gradient at G's 64 examples, then C's step on them
    robust, hist = finetune(clf, _loader(mnist, idx), _cfg(gen_init=True, gen_mix=0.0))
    assert not _same(ref, _state(robust)) and {"C/loss", "G/loss"} <= set(hist.steps[-1])
    with pytest.raises(TypeError, match="gen_init"):
        _cfg(gen_init="yes")


def test_generator_of_the_init_trains_on_the_loss_after_the_step(clf, mnist, idx):
    """gen_init: G's loss is C's loss at the stepped example (the step a constant to G), so G's gradient flows
    through the step; gen_init_step sets the step's length, and a step outside (0, 2] x eps is refused."""
    x, y = mnist[0].images[:32], mnist[0].labels[:32]
    game = AdvGANATGame(clf, _cfg(gen_init=True, gen_init_step=0.5, gen_mix=0.0, gen_noise=0, gen_alpha=0.0))
    game._threat = ThreatModel("linf", EPS)
    G = game.nets["G"]
    with torch.no_grad():
        raw = (x + EPS * G(x)).clamp(0, 1)  # G's own example (L-inf: eps * tanh output)
    stepped, delta = game.adversarial(x, None, G, y=y)
    assert stepped.requires_grad  # G's graph survives the step
    assert (stepped - raw).abs().max() <= 0.5 * EPS + 1e-5 and not torch.allclose(stepped, raw)
    assert delta.abs().max() <= EPS + 1e-6
    seen: list[torch.Tensor] = []
    hook = clf.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    loss, _ = game.loss("G", game.nets, (x, y), 0)
    hook.remove()
    assert any(t.shape == x.shape and not torch.allclose(t, raw, atol=1e-6) for t in seen)  # C saw the stepped example
    G.zero_grad()
    loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in G.parameters() if p.grad is not None) > 0
    for bad in (0.0, -1.0, 2.5):
        with pytest.raises(ValueError, match="gen_init_step"):
            _cfg(gen_init=True, gen_init_step=bad)


def test_gen_reverse_steps_g_up_cs_own_loss_in_cs_step(clf, mnist, idx):
    """gen_reverse: G is C's gradient-reversal partner (no loss call, no step of its own): from C's one backward C
    steps down and G steps up C's loss on the generated rows, so after G's step that same loss is higher."""
    cfg = _cfg(gen_init=True, gen_init_step=0.5, gen_mix=0.0, gen_noise=0, gen_alpha=0.0, gen_kl=0.0, gen_clean=0.0,
               gen_reverse=True, gen_width=2, gen_lr=1e-2)
    game = AdvGANATGame(clf, cfg)
    assert [(p.name, p.ascent_of) for p in game.players()] == [("C", None), ("G", "C")]
    x, y = mnist[0].images[:64], mnist[0].labels[:64]
    game._threat = ThreatModel("linf", EPS)
    G = game.nets["G"]
    G.requires_grad_(True)

    def adv_loss() -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            xa = game.adversarial(x, None, G, y=y)[0]
            return float(F.cross_entropy(clf.eval()(xa), y))

    before = adv_loss()
    loss, _ = game.classifier_loss(clf, G, x, y)
    loss.backward()
    assert all(p.grad is not None for p in G.parameters())  # C's loss reaches G through the generated rows
    opt = torch.optim.SGD(G.parameters(), lr=0.5)
    for p in G.parameters():
        p.grad.neg_()  # what the engine does for an ascent_of partner
    opt.step()
    assert adv_loss() > before  # G's step raised C's loss on its examples
    from advgan.engine import Run

    fresh = AdvGANATGame(copy.deepcopy(clf), cfg)
    before_run = {n: _state(net) for n, net in fresh.nets.items()}
    hist = Run(fresh, cfg).train(_loader(mnist, idx), 1)
    for name, net in fresh.nets.items():  # the engine stepped both, G with no step of its own
        assert not _same(before_run[name], _state(net)), f"{name} did not change"
    assert "G/loss" not in hist.steps[-1] and "C/ce_adv" in hist.steps[-1]  # one loss, C's
    for bad in (dict(gen_alpha=1.0), dict(gen_steps=2), dict(gen_fraction=0.5)):
        with pytest.raises(ValueError, match="gen_reverse"):
            _cfg(gen_reverse=True, **{"gen_alpha": 0.0, **bad})


def test_defaults_are_the_measured_recipe_and_gen_reverse_follows_the_game(clf, mnist, idx, tmp_path):
    """The defaults are the best advgan-at of the 30-epoch benchmark (benchmarks/overfit.py advgan-at-rev-w2): G (width 2)
    is the learned start of one FGSM step of eps/2 and C's gradient-reversal partner on C's adversarial CE (no D, no
    clean CE). ``gen_reverse=None`` turns the reversal off as soon as G needs steps of its own; forcing it on then is
    refused. The CLI's defaults are the same, with --gen-reverse / --no-gen-reverse to force either way."""
    cfg = FinetuneConfig(method="advgan-at", eps=EPS, epochs=1, batch_size=64, progress=False, log_every=1)
    assert cfg.gen_reverse is None and cfg.gen_reverse_on and cfg.gen_init and cfg.gen_init_step == 0.5
    assert (cfg.gen_alpha, cfg.gen_clean, cfg.gen_width, cfg.gen_mix, cfg.gen_kl) == (0.0, 0.0, 2, 0.0, 0.0)
    game = AdvGANATGame(clf, cfg)
    assert [(p.name, p.ascent_of) for p in game.players()] == [("C", None), ("G", "C")] and set(game.nets) == {"C", "G"}
    n_g = sum(p.numel() for p in game.nets["G"].parameters())
    assert n_g * 4 < sum(p.numel() for p in AdvGANATGame(clf, _cfg(gen_noise=0)).nets["G"].parameters())  # width 2 vs 8
    ref = _state(clf)
    robust, hist = finetune(clf, _loader(mnist, idx), cfg, out_dir=tmp_path / "run")
    assert _same(ref, _state(clf)) and not _same(ref, _state(robust))
    assert "G/loss" not in hist.steps[-1] and {"C/ce_adv", "C/adv_acc"} <= set(hist.steps[-1])
    for kw in (dict(gen_alpha=1.0), dict(gen_steps=2), dict(gen_fraction=0.5)):
        assert not FinetuneConfig(method="advgan-at", **kw).gen_reverse_on
        with pytest.raises(ValueError, match="gen_reverse"):
            FinetuneConfig(method="advgan-at", gen_reverse=True, **kw)
    assert [p.name for p in AdvGANATGame(clf, FinetuneConfig(method="advgan-at", eps=EPS, gen_alpha=1.0)).players()] == ["C", "D", "G"]
    assert not FinetuneConfig(method="advgan-at", gen_reverse=False).gen_reverse_on
    with pytest.raises(TypeError, match="gen_reverse"):
        FinetuneConfig(method="advgan-at", gen_reverse="yes")
    from advgan.cli import build_parser
    from advgan.cli.cmd_finetune import FIELDS
    from advgan.cli.flags import config_values

    def parsed(*flags: str) -> dict:
        args = build_parser().parse_args(["finetune", "--classifier", "c", "--out", "o", "--method", "advgan-at", *flags])
        return config_values(args, FinetuneConfig, FIELDS)

    assert parsed()["gen_reverse"] is None and parsed("--gen-reverse")["gen_reverse"] is True
    assert parsed("--no-gen-reverse")["gen_reverse"] is False
    assert parsed()["gen_init"] is True and parsed("--gen-init")["gen_init"] is True  # --gen-init: kept, a no-op
    assert parsed("--no-gen-init")["gen_init"] is False
    assert FinetuneConfig(**parsed()).gen_reverse_on
