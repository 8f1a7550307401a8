"""Command-line flags generated from config dataclasses: names, types, choices, defaults and help.

``add_config_flags(parser, AdvGANConfig, ["eps", "norm", ...])`` adds one flag per field: ``--<field-name>``
(or the field's ``Flag`` names), its help from the field's ``#:`` comment, its type from the field's
check (``--epochs 0`` -> ``argument --epochs: expected a positive integer, got 0``), its choices from a
``Choice``, ``store_true`` for a False-by-default bool, ``--no-<name>`` for a True-by-default one, and both
for an optional bool whose default is None (neither flag: None).
``config_values(args, AdvGANConfig, [...])`` collects the parsed values as config keyword arguments.

A command may give a field another default (``defaults=``); each such override is listed where the
command defines its flags, and is the command's documented default (e.g. ``finetune --method augment``).
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..config import Boolean, Check, Choice, Integer, Real, field_checks, field_docs, field_flags

_MISSING = object()


def arg_type(check: Check) -> Callable[[str], Any]:
    """An argparse ``type=``: parse the text, then apply ``check``; errors read "expected <what>, got <text>"."""
    def parse(text: str) -> Any:
        if check.optional and text.strip().lower() == "none":
            return None  # an optional field's "None" (e.g. --spread-floor none)
        try:
            value = check.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {check.what}, got {text!r}") from None
        try:
            return check(value, "value")
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(f"expected {check.what}, got {text}") from None

    parse.__name__ = check.what
    return parse


positive_int = arg_type(Integer(1))
nonneg_int = arg_type(Integer(0))
positive_float = arg_type(Real(0))
fraction = arg_type(Real(0, 1, closed=True))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default(cls: type, name: str, defaults: Mapping[str, Any]) -> Any:
    if name in defaults:
        return defaults[name]
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]


def add_config_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, names: Sequence[str], *,
                     defaults: Mapping[str, Any] | None = None, helps: Mapping[str, str] | None = None,
                     affirm: Sequence[str] = ()) -> None:
    """One flag per field of ``cls`` in ``names`` (see the module docstring). ``affirm``: True-by-default bools
    that also keep their ``--x`` flag (a no-op), because their default used to be False."""
    defaults, helps = dict(defaults or {}), dict(helps or {})
    checks, docs, flags = field_checks(cls), field_docs(cls), field_flags(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for name in names:
        if name not in known:
            raise ValueError(f"{cls.__name__} has no field {name!r}.")
        check, default = checks.get(name), _default(cls, name, defaults)
        text = helps.get(name, docs.get(name, "")).replace("%", "%%")  # argparse formats help with %
        names_ = flags.get(name, (name,))
        if isinstance(check, Boolean) or isinstance(default, bool):
            neg = f"--no-{names_[0].replace('_', '-')}"
            if default is None:  # an optional bool: --x sets True, --no-x False, neither leaves None (the field's rule)
                dest = names_[0].replace("-", "_")
                p.add_argument(_flag(names_[0]), dest=dest, action="store_const", const=True, default=None, help=text or None)
                p.add_argument(neg, dest=dest, action="store_const", const=False, help=f"do not: {text}" if text else None)
            elif default is True:
                p.add_argument(neg, action="store_true", help=f"do not: {text}" if text else None)
                if name in affirm:  # the field's default changed to True: its old --x flag still parses (a no-op)
                    p.add_argument(_flag(names_[0]), dest=f"no_{names_[0].replace('-', '_')}", action="store_false",
                                   help="on by default (the flag is kept for older scripts)")
            else:
                p.add_argument(_flag(names_[0]), action="store_true", help=text or None)
            continue
        if len(names_) > 1:  # a tuple field, one flag per item (betas -> --beta1 --beta2)
            item = Real(0, 1, closed=(True, False)) if name == "betas" else Real()
            for i, n in enumerate(names_):
                p.add_argument(_flag(n), type=arg_type(item), default=default[i], help=f"{text} ({n})" if text else None)
            continue
        kw: dict[str, Any] = {"default": default, "help": text or None}
        if isinstance(check, Choice):
            kw["choices"] = check.options
        elif check is not None and type(check).parse is not Check.parse:
            kw["type"] = arg_type(check)
        p.add_argument(_flag(names_[0]), **kw)


def config_values(args: argparse.Namespace, cls: type, names: Sequence[str]) -> dict[str, Any]:
    """The values of the flags of ``names`` (added by :func:`add_config_flags`) as ``cls`` keyword arguments."""
    checks, flags = field_checks(cls), field_flags(cls)
    out: dict[str, Any] = {}
    for name in names:
        names_ = flags.get(name, (name,))
        if len(names_) > 1:
            out[name] = tuple(getattr(args, n.replace("-", "_")) for n in names_)
            continue
        dest = names_[0].replace("-", "_")
        if hasattr(args, f"no_{dest}") and not hasattr(args, dest):
            out[name] = not getattr(args, f"no_{dest}")
        else:
            out[name] = getattr(args, dest)
        if out[name] is None and name in checks and not checks[name].optional:
            del out[name]  # a command default of None: the command fills it in (e.g. gan --z-dim)
    return out
