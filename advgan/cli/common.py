"""Argument helpers shared by the sub-commands (argparse types that reject impossible values early)."""
from __future__ import annotations

import argparse

from attacks.checks import resolve_device  # noqa: F401  (re-exported for commands)


def _number(s: str, kind: type, what: str, ok) -> float:
    try:
        v = kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {s}")
    return v


def positive_int(s: str) -> int:
    return _number(s, int, "a positive integer", lambda v: v >= 1)


def nonneg_int(s: str) -> int:
    return _number(s, int, "a non-negative integer", lambda v: v >= 0)


def positive_float(s: str) -> float:
    return _number(s, float, "a positive finite number", lambda v: v > 0 and v != float("inf"))


def fraction(s: str) -> float:
    return _number(s, float, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (cuda when available)")


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (runs are repeatable on one machine)")
