"""The validated-config base (advgan/config.py) and the command-line flags generated from it.

Property-based (hypothesis): each validator accepts exactly what it declares. Then every config class of
the library refuses NaN, infinities, bools-for-numbers and out-of-range values in each numeric field with
a message naming the field, and the CLI keeps the flag names and defaults of advgan 0.1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advgan.config import SEED, Boolean, Choice, Integer, Real, field_checks, field_docs, run_fields

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(x=FLOATS, lo=st.floats(-10, 10), width=st.floats(0.1, 10), closed=st.tuples(st.booleans(), st.booleans()))
def test_real_accepts_exactly_its_interval(x, lo, width, closed):
    hi = lo + width
    check = Real(lo, hi, closed=closed)
    inside = math.isfinite(x) and (x >= lo if closed[0] else x > lo) and (x <= hi if closed[1] else x < hi)
    if inside:
        assert check(x, "f") == x
    else:
        with pytest.raises(ValueError, match=r"^f must be in [\[(]"):
            check(x, "f")


@settings(max_examples=200, deadline=None)
@given(x=st.one_of(FLOATS, st.integers(-10**30, 10**30)))
def test_positive_number_refuses_nan_inf_and_non_positive(x):
    ok = math.isfinite(x) and x > 0
    if ok:
        assert Real(0)(x, "lr") == x
    else:
        with pytest.raises(ValueError, match=r"^lr must be a positive finite number, got"):
            Real(0)(x, "lr")


@settings(max_examples=200, deadline=None)
@given(n=st.integers(-2**70, 2**70))
def test_seed_is_a_64_bit_non_negative_integer(n):
    if 0 <= n < 2**64:
        assert SEED(n, "seed") == n
    else:
        with pytest.raises(ValueError, match=r"^seed must be"):
            SEED(n, "seed")


@pytest.mark.parametrize("check", [Real(0), Real(0, closed=True), Integer(1), Integer(0), SEED])
@pytest.mark.parametrize("value", [True, False, "1", None])
def test_numbers_refuse_bools_strings_and_none(check, value):
    with pytest.raises(TypeError, match=r"^x must be"):
        check(value, "x")


def test_optional_choice_boolean():
    assert Real(0, optional=True)(None, "x") is None and Integer(1, optional=True)(None, "n") is None
    with pytest.raises(ValueError, match=r"x must be a positive finite number or None, got -1"):
        Real(0, optional=True)(-1, "x")
    with pytest.raises(ValueError, match=r"unknown mode 'c'; valid choices: a, b"):
        Choice(("a", "b"))("c", "mode")
    with pytest.raises(TypeError, match=r"flag must be True or False, got 1"):
        Boolean()(1, "flag")


def _configs():
    from advgan import AdvGANConfig, ClassifierConfig, ConditionalGANConfig, GANConfig, Pix2PixConfig
    from advgan.cli.demo import DemoConfig
    from advgan.engine import EngineConfig, TrainConfig
    from defenses import FinetuneConfig

    return [EngineConfig, TrainConfig, GANConfig, ConditionalGANConfig, Pix2PixConfig, AdvGANConfig, ClassifierConfig,
            FinetuneConfig, DemoConfig]


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_numeric_field_refuses_nan_inf_and_bools(cls):
    assert not [f.name for f in dataclasses.fields(cls) if f.name not in field_checks(cls)], "every field declares its check"
    numeric = {k: c for k, c in field_checks(cls).items() if isinstance(c, (Real, Integer))}
    assert numeric, cls
    for name, check in numeric.items():
        below = check.low == 0 if isinstance(check, Real) else check.minimum >= 0   # -1 is out of range
        bad = [float("nan"), float("inf"), -float("inf"), True] + ([-1] if below else [])
        for value in bad:
            with pytest.raises((ValueError, TypeError), match=rf"^{name} must be"):
                cls(**{name: value})


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_defaults_are_valid_and_round_trip_through_json(cls):
    from advgan.modelio import config_from_dict

    cfg = cls()
    again = config_from_dict(cls, json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg
    docs = field_docs(cls)
    assert {"seed", "device"} <= set(docs)                      # the #: comments are read (inherited ones too)


def test_the_brief_s_examples_are_refused():
    from advgan import AdvGANConfig, ClassifierConfig
    from defenses import FinetuneConfig

    for cls, kw, msg in [(ClassifierConfig, {"lr": float("inf")}, r"lr must be a positive learning rate"),
                         (ClassifierConfig, {"weight_decay": -1}, r"weight_decay must be a finite number >= 0, got -1"),
                         (ClassifierConfig, {"seed": 2**64}, r"seed must be <= 18446744073709551615"),
                         (FinetuneConfig, {"seed": -1}, r"seed must be >= 0"),
                         # an overridden default keeps its check:
                         (AdvGANConfig, {"lr_g": float("nan")}, r"lr_g must be a positive learning rate"),
                         (AdvGANConfig, {"kappa": True}, r"kappa must be a number"),
                         (FinetuneConfig, {"source_weights": (1.0, float("nan"))}, r"source_weights must be")]:
        with pytest.raises((ValueError, TypeError), match=msg):
            cls(**kw)


def test_run_fields_are_declared_on_the_fields():
    from advgan.engine import TrainConfig
    from defenses import FinetuneConfig

    assert run_fields(TrainConfig) == {"progress", "device", "checkpoint_every", "sample_every", "log_every", "channels_last",
                                       "compile", "ddp_find_unused"}
    assert run_fields(FinetuneConfig) == run_fields(TrainConfig) | {"epochs"}
    assert "lr_g" not in {f.name for f in dataclasses.fields(FinetuneConfig)}  # one-player configs: no GAN fields


# ---------------------------------------------------------------------- the generated command line
def _parser_table() -> dict:
    from advgan.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    table = {}
    for name, sp in sub.choices.items():
        table[name] = {a.option_strings[0]: {"default": repr(a.default), "choices": list(a.choices) if a.choices else None,
                                             "nargs": a.nargs, "required": a.required, "action": type(a).__name__}
                       for a in sp._actions if a.option_strings and "-h" not in a.option_strings}
    return table


def test_cli_flags_and_defaults_are_those_of_0_1():
    before = json.loads((Path(__file__).parent / "data" / "cli_0_1.json").read_text())
    now = _parser_table()
    assert now.keys() == before.keys()
    # flags added after 0.1 (listed in the README's changelog); every 0.1 flag keeps its name and default
    added = {"demo": {"--corruptions", "--corruption-severity"},
             "evaluate": {"--corruptions", "--severities", "--corruption-baseline"},
             # AdvGAN round 2: the training levers and the generator's size
             "train-attacker": {"--g-steps", "--div-weight", "--spread-weight",
                                "--spread-floor", "--shift", "--ema", "--no-best-epoch", "--width",
                                "--image-size", "--aux-weight"},
             # the defenses issue: MART, AWP, N-FGSM and advgan-at settings
             "finetune": {"--mart-beta", "--nfgsm-k", "--awp-gamma", "--awp-base", "--awp-warmup-epochs", "--gen-steps",
                          "--gen-noise", "--gen-mix", "--gen-clean", "--gen-kl", "--gen-alpha", "--gen-kappa", "--gen-lr",
                          "--gen-width", "--gen-fraction", "--gen-grad", "--gen-init", "--gen-init-step", "--gen-reverse",
                          "--no-gen-init", "--no-gen-reverse"}}
    # 0.1 showed None for "AdvGANConfig's default"; the generated flags show the value itself (the same run)
    shown = {("train-attacker", "--batch-size"): "32", ("train-attacker", "--kappa"): "10.0",
             ("train-attacker", "--alpha"): "1.0", ("train-attacker", "--beta"): "0.0"}
    for cmd, flags in before.items():
        assert set(now[cmd]) - set(flags) == added.get(cmd, set()) and set(flags) <= set(now[cmd]), cmd
        for flag, row in flags.items():
            expect = dict(row, default=shown.get((cmd, flag), row["default"]))
            if (cmd, flag) == ("demo", "--method"):  # 0.2: the demo defends with fgsm-rs (the frontier's pick)
                expect["default"] = "'fgsm-rs'"
            if (cmd, flag) in (("finetune", "--method"), ("demo", "--method")):  # methods added since 0.1 come after the 0.1 ones
                assert now[cmd][flag]["choices"][:len(row["choices"])] == row["choices"]
                expect["choices"] = now[cmd][flag]["choices"]
            assert now[cmd][flag] == expect, (cmd, flag)


def test_generated_flags_carry_help_and_check_values(capsys):
    from advgan.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train-classifier", "train-attacker", "finetune", "gan", "cgan", "pix2pix", "demo"):
        missing = [a.option_strings[0] for a in sub.choices[name]._actions if a.option_strings and not a.help]
        unexplained = [m for m in missing if m not in ("-h", "--data-root", "--dataset", "--method", "--norm", "--mode", "--task")]
        assert not unexplained, (name, missing)
    for name, sp in sub.choices.items():  # every help renders (argparse %-formats it: a "%" in a docstring broke it once)
        assert "--" in sp.format_help(), name
    p = sub.choices["gan"]
    with pytest.raises(SystemExit):
        p.parse_args(["--out", "x", "--beta1", "1.5"])
    assert "argument --beta1: expected a number in [0, 1), got 1.5" in capsys.readouterr().err
    ta = sub.choices["train-attacker"]
    assert ta.parse_args(["--classifier", "c", "--out", "o", "--spread-floor", "None"]).spread_floor is None
    assert ta.parse_args(["--classifier", "c", "--out", "o"]).spread_floor == 1.5
    with pytest.raises(SystemExit):
        ta.parse_args(["--classifier", "c", "--out", "o", "--spread-floor", "0"])
    assert "argument --spread-floor: expected a number of nats > 0 (or None), got 0" in capsys.readouterr().err
    args = p.parse_args(["--out", "x", "--gp", "10", "--ema", "0.9", "--no-progress"])
    from advgan.cli.gan_common import train_kwargs

    kw = train_kwargs(args)
    assert kw["ema_decay"] == 0.9 and kw["progress"] is False and kw["betas"] == (0.5, 0.999) and args.gp == 10.0


def test_python_dash_m_advgan_is_the_console_script():
    import subprocess
    import sys

    env = dict(__import__("os").environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-m", "advgan", "demo", "--eps", "8", "--out", "unused"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2 and "8/255" in r.stderr and "Traceback" not in r.stderr
