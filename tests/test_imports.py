"""The import graph (issues #25, #32): no module imports itself back through others, lazy
imports inside functions included, and the floors go one way down: `engine` imports only
`engine`; `train_utils` only `resnet18` and `engine`; nothing below `lab` imports it; `resnet18`
imports nothing local. The package docstrings list their modules."""

import ast
import re
from pathlib import Path

from conftest import REPO


def package(name: str) -> list[str]:
    """The modules in one of the product's folders, as found on disk."""
    return sorted(p.stem for p in (REPO / name).glob("*.py") if p.stem != "__init__")


def modules() -> dict[str, Path]:
    """Every local module of the product (not the tests), by dotted name."""
    found = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in ("tests", ".venv", "venv") or rel.parts[0].startswith("."):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def graph() -> dict[str, set[str]]:
    """module -> the local modules it imports anywhere in its code."""
    mods = modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            out |= {t for t in targets if t in mods and t != name and t not in ("engine", "lab")}
        edges[name] = out
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m) :] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_a_cycle_would_be_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_floors_go_one_way_down():
    edges = graph()
    for folder in ("engine", "lab"):
        doc = (REPO / folder / "__init__.py").read_text(encoding="utf-8")
        for name in package(folder):
            assert re.search(rf"^\s*{name}\s", doc, re.M), (
                f"{folder}/__init__.py does not list {name}"
            )
    for name in package("engine"):
        bad = {m for m in edges[f"engine.{name}"] if not m.startswith("engine.")}
        assert not bad, f"engine.{name} imports {sorted(bad)}: engine imports only engine"
    bad = {m for m in edges["train_utils"] if m != "resnet18" and not m.startswith("engine.")}
    assert not bad, f"train_utils imports {sorted(bad)}: only resnet18 and engine"
    assert not edges["resnet18"], "resnet18.py holds the model and nothing else"
