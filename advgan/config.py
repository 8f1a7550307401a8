"""Validated configuration dataclasses: one base, validators declared on the fields.

A config is a frozen dataclass deriving from :class:`Config`. Each field states what it accepts in its
annotation, and its help in a ``#:`` comment (the command line reads both)::

    @dataclass(frozen=True)
    class MyConfig(Config):
        lr: Annotated[float, LEARNING_RATE] = 1e-3      #: learning rate
        steps: Annotated[int, Integer(1)] = 10          #: optimisation steps
        progress: Annotated[bool, FLAG, RUN] = True     #: show progress bars

``Config.__post_init__`` runs every field's check (a subclass that only changes a default inherits the
check of the base class's field), then ``validate()`` for rules that involve several fields. A bad value
raises a ``ValueError`` (``TypeError`` for the wrong kind of value) naming the field and what it accepts,
before anything else happens. ``RUN`` marks a field that may differ when a training run is resumed
(progress bars, devices, cadences); ``Flag("gp")`` gives a field another command-line name.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

from attacks.checks import check_choice, check_positive_int

__all__ = ["Config", "Check", "Integer", "Real", "Choice", "Boolean", "Betas", "Text", "Custom", "NumberTuple",
           "RUN", "Flag", "LEARNING_RATE", "FLAG", "SEED", "field_checks", "field_docs", "run_fields"]


class Check:
    """A field validator: ``check(value, name)`` returns the (normalised) value or raises naming the field.

    ``what`` describes the accepted values ("a positive integer"); ``parse(text)`` turns a command-line
    string into a value (``None`` when the field has no command-line type of its own, e.g. a choice).
    """

    what: str = "a value"
    optional: bool = False

    def __call__(self, value: Any, name: str) -> Any:
        if value is None and self.optional:
            return None
        return self.check(value, name)

    def check(self, value: Any, name: str) -> Any:
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        return text

    def fail(self, name: str, value: Any, must: str | None = None) -> ValueError:
        alt = " or None" if self.optional else ""
        return ValueError(f"{name} must be {must or self.what}{alt}, got {value!r}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Integer(Check):
    """An integer in ``[minimum, maximum]`` (``maximum=None``: no upper bound); bools are refused."""

    def __init__(self, minimum: int = 1, maximum: int | None = None, *, optional: bool = False, what: str | None = None) -> None:
        self.minimum, self.maximum, self.optional = minimum, maximum, optional
        default = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        self.what = what or default

    def check(self, value: Any, name: str) -> int:
        check_positive_int(value, name, minimum=self.minimum)
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{name} must be <= {self.maximum} ({self.what}), got {value}.")
        return value

    def parse(self, text: str) -> int:
        return int(text)


class Real(Check):
    """A finite number in an interval: ``Real(0)`` is > 0, ``Real(0, closed=True)`` >= 0, ``Real(0, 1, ...)`` in (0, 1).

    ``what`` names the accepted values ("a positive finite number", the command line says "expected <what>");
    ``must`` is the predicate of the config's error ("lr must be <must>, got ...")."""

    def __init__(self, low: float | None = None, high: float | None = None, *, closed: bool | tuple[bool, bool] = False,
                 optional: bool = False, what: str | None = None, must: str | None = None) -> None:
        lo_closed, hi_closed = closed if isinstance(closed, tuple) else (closed, closed)
        self.low, self.high, self.lo_closed, self.hi_closed, self.optional = low, high, lo_closed, hi_closed, optional
        if low is not None and high is not None:
            self.must = f"in {'[' if lo_closed else '('}{low:g}, {high:g}{']' if hi_closed else ')'}"
            self.what = what or f"a number {self.must}"
        else:
            if low == 0:
                default = "a finite number >= 0" if lo_closed else "a positive finite number"
            elif low is not None:
                default = f"a finite number {'>=' if lo_closed else '>'} {low:g}"
            else:
                default = "a finite number"
            self.what = what or default
            self.must = self.what
        if what:
            self.must = what
        if must:
            self.must = must

    def check(self, value: Any, name: str) -> Any:
        if not _is_number(value):
            raise TypeError(f"{name} must be a number ({self.what}), got {type(value).__name__} ({value!r}).")
        ok = math.isfinite(value)
        if ok and self.low is not None:
            ok = value >= self.low if self.lo_closed else value > self.low
        if ok and self.high is not None:
            ok = value <= self.high if self.hi_closed else value < self.high
        if not ok:
            raise self.fail(name, value, self.must)
        return value

    def parse(self, text: str) -> float:
        return float(text)


class Choice(Check):
    """One of ``options`` (strings). ``message`` overrides the error text (``{name}``, ``{value}``, ``{choices}``)."""

    def __init__(self, options: Sequence[str], *, message: str | None = None, optional: bool = False) -> None:
        self.options, self.message, self.optional = tuple(options), message, optional
        self.what = "one of " + ", ".join(self.options)

    def check(self, value: Any, name: str) -> Any:
        if self.message is None:
            return check_choice(value, name, self.options)
        if value not in self.options:
            raise ValueError(self.message.format(name=name, value=value, choices=", ".join(self.options)))
        return value


class Boolean(Check):
    """True or False (``optional``: or None)."""

    def __init__(self, *, optional: bool = False, what: str | None = None) -> None:
        self.optional, self.what = optional, what or "True or False"

    def check(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            alt = ", or None" if self.optional else ""
            raise TypeError(f"{name} must be {self.what}{alt}, got {value!r}.")
        return value


class Betas(Check):
    """Adam's ``(beta1, beta2)``: two numbers in [0, 1), stored as a tuple of floats."""

    what = "two numbers in [0, 1)"

    def check(self, value: Any, name: str) -> tuple[float, float]:
        try:
            items = tuple(value)
        except TypeError:
            raise TypeError(f"{name} must be {self.what}, got {value!r}.") from None
        if len(items) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in items):
            raise ValueError(f"{name} must be {self.what}, got {value!r}.")
        return (float(items[0]), float(items[1]))


class NumberTuple(Check):
    """A tuple of finite numbers >= 0 (e.g. weights), stored as floats."""

    def __init__(self, *, optional: bool = False) -> None:
        self.optional, self.what = optional, "a sequence of finite numbers >= 0"

    def check(self, value: Any, name: str) -> tuple[float, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be {self.what}, got {value!r}.")
        if not all(_is_number(v) and math.isfinite(v) and v >= 0 for v in value):
            raise ValueError(f"{name} must be {self.what}, got {value!r}.")
        return tuple(float(v) for v in value)


class Text(Check):
    """A non-empty string."""

    what = "a non-empty string"

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be {self.what}, got {value!r}.")
        return value


class Custom(Check):
    """A check written as a function ``fn(value, name) -> value`` (e.g. a registry look-up)."""

    def __init__(self, fn: Callable[[Any, str], Any], what: str, *, optional: bool = False) -> None:
        self.fn, self.what, self.optional = fn, what, optional

    def check(self, value: Any, name: str) -> Any:
        return self.fn(value, name)


class _Run:
    """Marker: the field may differ when a training run is resumed (it does not change the result)."""

    def __repr__(self) -> str:
        return "RUN"


@dataclasses.dataclass(frozen=True)
class Flag:
    """The field's command-line name(s) when they are not ``--<field-name>`` (a tuple field: one per item)."""

    names: tuple[str, ...]

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", tuple(names))


RUN = _Run()
LEARNING_RATE = Real(0, must="a positive learning rate (a finite number > 0)")
FLAG = Boolean()
SEED = Integer(0, 2**64 - 1, what="a non-negative integer below 2**64")


# ---------------------------------------------------------------------- reading the declarations
def _own_hints(klass: type) -> dict[str, Any]:
    """The class's own annotations, evaluated (``from __future__ import annotations`` makes them strings)."""
    own = klass.__dict__.get("__annotations__", {})
    if not own:
        return {}
    import sys

    namespace = dict(vars(sys.modules[klass.__module__])) if klass.__module__ in sys.modules else {}
    namespace.update({"Annotated": typing.Annotated})
    out = {}
    for name, hint in own.items():
        if isinstance(hint, str):
            try:
                hint = eval(hint, namespace, dict(vars(klass)))  # noqa: S307 - the class's own source text
            except Exception as e:  # noqa: BLE001
                if "Annotated" in own[name]:
                    raise TypeError(f"{klass.__name__}.{name}: cannot read the declaration {own[name]!r} ({type(e).__name__}: {e}); "
                                    "import the names it uses at module level.") from None
                continue
        out[name] = hint
    return out


@functools.cache
def _declarations(cls: type) -> dict[str, tuple[Any, ...]]:
    """``{field: annotation extras}`` where the nearest class in the MRO that annotates the field with extras wins."""
    out: dict[str, tuple[Any, ...]] = {}
    for klass in cls.__mro__:
        for name, hint in _own_hints(klass).items():
            extras = getattr(hint, "__metadata__", None)
            if extras and name not in out:
                out[name] = tuple(extras)
    return out


def field_checks(cls: type) -> dict[str, Check]:
    """The check of every field of ``cls`` that declares one."""
    return {k: m for k, extras in _declarations(cls).items() for m in extras if isinstance(m, Check)}


def run_fields(cls: type) -> frozenset[str]:
    """Fields marked ``RUN``: they may differ when a run is resumed."""
    return frozenset(k for k, extras in _declarations(cls).items() if any(m is RUN for m in extras))


def field_flags(cls: type) -> dict[str, tuple[str, ...]]:
    """Fields with another command-line name (``Flag``)."""
    return {k: m.names for k, extras in _declarations(cls).items() for m in extras if isinstance(m, Flag)}


_DOC = re.compile(r"^\s+(\w+)\s*:[^#\n]*#:\s?(.*?)\s*$")
_DOC_ABOVE = re.compile(r"^\s+#:\s?(.*?)\s*$")
_NAME = re.compile(r"^\s+(\w+)\s*:")


@functools.cache
def _own_docs(klass: type) -> dict[str, str]:
    try:
        lines = inspect.getsource(klass).splitlines()
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        m = _DOC.match(line)
        if m:
            docs[m.group(1)] = m.group(2)
            above = []
            continue
        a = _DOC_ABOVE.match(line)
        if a:
            above.append(a.group(1))
            continue
        n = _NAME.match(line)
        if n and above:
            docs[n.group(1)] = " ".join(above)
        above = []
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment of each field (from the nearest class in the MRO that has one)."""
    out: dict[str, str] = {}
    for klass in cls.__mro__:
        for k, v in _own_docs(klass).items():
            out.setdefault(k, v)
    return out


# ---------------------------------------------------------------------- the base class
@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every configuration: checks each field, then the cross-field rules of ``validate()``."""

    def __post_init__(self) -> None:
        checks = field_checks(type(self))
        for f in dataclasses.fields(self):
            check = checks.get(f.name)
            if check is None:
                continue
            name, value = f.name, getattr(self, f.name)
            new = check(value, name)
            if new is not value:
                object.__setattr__(self, name, new)
        self.validate()

    def validate(self) -> None:
        """Rules that involve several fields (override; called after every field's own check)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
