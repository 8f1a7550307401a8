"""Sources of adversarial examples by spec string: what ``--source`` on the command line selects.

====================  ===========================================================================
``advgan:DIR``        a trained AdvGAN attacker (``AdvGAN.load(DIR, clf).as_attack()``); a DIR whose
                      sub-directories hold attackers (e.g. the rounds of ``play_rounds``) loads all
                      of them: a pool of generators
``pgd``               PGD at the training ε (``steps``, ``step_size``; fresh random start per batch)
``fgsm``              FGSM with a random start and step 1.25·ε (Wong et al. 2020)
``noise``             random noise of the same norm and ε (a control, not an attack)
``foolbox:NAME``      any foolbox attack by name (``foolbox:LinfPGD``)
``corruption:SPEC``   natural corruptions, a random one per image (``corruption:all``, ``corruption:noise``,
                      ``corruption:fog+snow@3``, ``corruption:all@1-3``; see ``defenses.corruption_source``)
====================  ===========================================================================
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from attacks import FGSM, PGD, RandomNoise, make_attack
from attacks.checks import check_eps

from .corruption_source import parse_corruption_source

SPECS = ("advgan:DIR", "pgd", "fgsm", "noise", "foolbox:NAME", "corruption:SPEC")


def _is_attacker_dir(d: Path) -> bool:
    cfg = d / "config.json"
    if not cfg.is_file():
        return False
    try:
        import json

        return json.loads(cfg.read_text()).get("kind") == "advgan"
    except (OSError, ValueError):
        return False


def load_advgan_pool(directory: str | Path, classifier: nn.Module, *, eps: float | None = None) -> list[Any]:
    """Attacks of every AdvGAN attacker in ``directory`` (itself, or its sub-directories, sorted by name)."""
    from advgan.attacker import AdvGAN

    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"advgan source {d} is not a directory; train one with `advgan train-attacker --out {d}`.")
    dirs = [d] if _is_attacker_dir(d) else sorted(p for p in d.iterdir() if p.is_dir() and _is_attacker_dir(p))
    if not dirs:
        raise ValueError(f"{d} holds no AdvGAN attacker (no config.json of kind 'advgan' in it or its sub-directories).")
    out: list[Any] = []
    for a in dirs:
        atk: Any = AdvGAN.load(a, classifier).as_attack()
        if eps is not None and abs(atk.eps - eps) > 1e-9:
            warnings.warn(f"the AdvGAN attacker in {a} was trained for eps={atk.eps:g}; using it at eps={eps:g}.", stacklevel=2)
            atk = atk.with_eps(eps)
        atk.source_dir = str(a)
        out.append(atk)
    return out


def parse_source(spec: str, classifier: nn.Module, *, eps: float, norm: str = "linf", pgd_steps: int = 10,
                 pgd_step_size: float | None = None, seed: int | None = None) -> list[Any]:
    """Attacks for one spec (a list: ``advgan:DIR`` may hold a pool). See the module docstring."""
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"a source spec must be a non-empty string such as {', '.join(SPECS)}; got {spec!r}.")
    eps = check_eps(eps, norm)
    kind, _, arg = spec.partition(":")
    if kind == "advgan":
        if not arg:
            raise ValueError("source 'advgan' needs a directory: advgan:DIR (a trained attacker, see `advgan train-attacker`).")
        return load_advgan_pool(arg, classifier, eps=eps)
    if kind == "corruption":
        return [parse_corruption_source(arg, seed=seed)]
    if arg and kind != "foolbox":
        raise ValueError(f"source {spec!r} takes no argument; valid sources: {', '.join(SPECS)}.")
    if kind == "pgd":
        return [PGD(eps=eps, norm=norm, steps=pgd_steps, step_size=pgd_step_size, seed=seed)]
    if kind == "fgsm":
        return [FGSM(eps=eps, norm=norm, random_start=True, seed=seed)]
    if kind == "noise":
        return [RandomNoise(eps=eps, norm=norm, seed=seed)]
    if kind == "foolbox":
        if not arg:
            raise ValueError("source 'foolbox' needs an attack name: foolbox:LinfPGD (see attacks.foolbox_attack_names()).")
        return [make_attack(spec, eps=eps)]
    raise ValueError(f"unknown source {spec!r}; valid sources: {', '.join(SPECS)}.")


def parse_sources(specs: Sequence[str], classifier: nn.Module, *, eps: float, norm: str = "linf", pgd_steps: int = 10,
                  pgd_step_size: float | None = None, seed: int | None = None) -> list[Any]:
    """All attacks of a list of specs, in order (every spec checked before any attacker is loaded)."""
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise ValueError(f"no source given; pass at least one of {', '.join(SPECS)}.")
    for s in specs:  # validate names first: nothing is loaded when one spec is wrong
        kind = s.partition(":")[0] if isinstance(s, str) else None
        if kind not in ("advgan", "pgd", "fgsm", "noise", "foolbox", "corruption"):
            raise ValueError(f"unknown source {s!r}; valid sources: {', '.join(SPECS)}.")
        if kind == "corruption":
            parse_corruption_source(s.partition(":")[2])  # bad names or severities fail before anything is loaded
    out: list[Any] = []
    for s in specs:
        out.extend(parse_source(s, classifier, eps=eps, norm=norm, pgd_steps=pgd_steps, pgd_step_size=pgd_step_size, seed=seed))
    return out
