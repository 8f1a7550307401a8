"""The module paths of advgan 0.1, kept importable after the move into subpackages (0.2.0).

``import advgan.gan`` or ``from advgan.nets.common import fork_seed`` still work: each old path is an
alias (the same module object, in ``sys.modules``) of its new home. New code should import the new paths.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

MOVED = {
    "advgan.blackbox": "advgan.attacker.blackbox",
    "advgan.generator_attack": "advgan.attacker.generator_attack",
    "advgan.gan": "advgan.gans.gan",
    "advgan.pix2pix": "advgan.gans.pix2pix",
    "advgan.gan_utils": "advgan.gans.common",
    "advgan.losses": "advgan.gans.losses",
    "advgan.metrics": "advgan.gans.metrics",
    "advgan.figures": "advgan.gans.figures",
    "advgan.nets": "advgan.gans.nets",
    "advgan.pairs": "advgan.data.pairs",
    "advgan.history": "advgan.engine.history",
    "advgan.distributed": "advgan.engine.distributed",
    "advgan.engine_checkpoint": "advgan.engine.checkpoint",
    "advgan.engine_optim": "advgan.engine.optim",
}


def install() -> None:
    """Register every old path (and, for a moved package, each of its modules) as an alias of the new one."""
    root = sys.modules["advgan"]
    for old, new in MOVED.items():
        module = importlib.import_module(new)
        sys.modules.setdefault(old, module)
        setattr(root, old.rsplit(".", 1)[1], module)
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            sub = importlib.import_module(f"{new}.{info.name}")
            sys.modules.setdefault(f"{old}.{info.name}", sub)
