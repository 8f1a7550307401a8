"""The ``advgan`` command line: a thin face over the library's config dataclasses.

Each sub-command lives in its own module ``advgan/cli/cmd_<name>.py`` defining ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules import heavy dependencies inside ``run``.
Errors a user can fix (ValueError/TypeError/CheckpointError) print one clear line and exit 2.
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
    from advgan.engine import distributed
    from attacks.checkpoint import CheckpointError

    distributed.setup_cli(getattr(args, "device", None))  # under torchrun: process group, stdout on rank 0
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, CheckpointError) as e:
        print(f"advgan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"advgan {args.command}: interrupted; re-run the same command to resume from the last checkpoint.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
