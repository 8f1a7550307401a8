"""Argument helpers shared by the sub-commands: argparse types made from the config checks (they reject
impossible values early, with the same words as the configs) and the flags every command has."""
from __future__ import annotations

import argparse

from attacks.checks import resolve_device  # noqa: F401  (re-exported for commands)

from .flags import add_config_flags, fraction, nonneg_int, positive_float, positive_int  # noqa: F401  (re-exported)

RUN_FLAGS = ("progress", "device", "seed")  #: on every training command (from the command's config)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (cuda when available)")


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (runs are repeatable on one machine)")
