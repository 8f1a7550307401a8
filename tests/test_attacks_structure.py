"""attacks/ keeps its shape: small modules, short functions, no import cycles, a final Attack.__call__."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "attacks"
FILES = sorted(ROOT.rglob("*.py"))


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """attacks.* modules imported anywhere in the file (function-level imports too, TYPE_CHECKING blocks not)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    pkg = _module(path).split(".") if path.name == "__init__.py" else _module(path).split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            if node.level and node.module is None:
                out |= {f"{mod}.{a.name}" for a in node.names}
            elif mod.startswith("attacks"):
                out.add(mod)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("attacks")}
    return out


def test_no_import_cycles_in_attacks():
    known = {_module(p) for p in FILES}
    graph = {_module(p): {m for m in _imports(p) if m in known and m != _module(p)} for p in FILES}
    graph = {k: {m for m in v if m != "attacks"} for k, v in graph.items() if k != "attacks"}  # the package re-exports
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_small_modules_and_functions(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= 400, f"{path.name} has {len(lines)} lines (max 400)"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            assert n <= 80, f"{path.name}:{node.name} is {n} lines (max 80)"


def test_attack_call_is_final_and_flags_are_classvars():
    from typing import get_type_hints

    from attacks import Attack
    from attacks.foolbox_bridge import FoolboxAttack

    assert getattr(Attack.__call__, "__final__", False) and getattr(Attack.generate, "__final__", False)
    assert "__call__" not in vars(FoolboxAttack)  # adapters use the _check_call hook
    hints = get_type_hints(Attack, include_extras=True)
    for flag in ("name", "supports_targeted", "supports_untargeted", "strong", "uses_gradients", "queries_model"):
        assert str(hints[flag]).startswith("typing.ClassVar"), flag
    assert not hasattr(Attack, "needs_projection")
    a, b = FoolboxAttack("FGSM", eps=0.1), FoolboxAttack("BoundaryAttack", eps=1.0, norm="l2")
    assert type(a).supports_targeted is False and type(a).uses_gradients is True
    assert type(b).uses_gradients is False and type(b).queries_model is True
    assert isinstance(a.with_eps(0.2), type(a)) and a.with_eps(0.2).eps == 0.2
