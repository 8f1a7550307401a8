"""The ``advgan`` command line: a thin face over the library's config dataclasses.

Each sub-command lives in its own module ``advgan/cli/cmd_<name>.py`` defining ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules import heavy dependencies inside ``run``.
Every command runs through :func:`advgan.cli.guard.run_command`: names, devices and ``--out`` are checked
before any work, ``--seed`` seeds everything first, ``--out`` is locked while the command writes, and errors
print one line: user errors exit 2, a diverged training 1, Ctrl-C 130 (see :mod:`advgan.cli.guard`).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = [
    "demo", "train_classifier", "train_attacker", "evaluate", "finetune", "gan", "cgan", "pix2pix",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advgan",
        description="Adversarial robustness for image classifiers: AdvGAN, gradient attacks, robust fine-tuning, GANs.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMANDS:
        try:
            mod = importlib.import_module(f"advgan.cli.cmd_{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"advgan.cli.cmd_{mod_name}":
                continue  # command not built yet
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _version() -> str:
    from advgan import __version__

    return f"advgan {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from .guard import run_command

    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
