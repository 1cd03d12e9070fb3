"""The import graph of hub/, protocols/, firmware/ and simulators/, read from the source (every import,
lazy ones inside functions included): no circles, and the hub's service never reaches simulators/ (only the
`qala demo` and `qala sim` commands may).

firmware/config.py and firmware/driveropts.py imported each other, and hub/config.py and
hub/modbus/config.py (for ConfigError) did too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "protocols", "firmware", "simulators")


def graph() -> dict[str, set[str]]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            files[name] = path
    out: dict[str, set[str]] = {}
    for name, path in files.items():
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                named.add(node.module)
                named.update(f"{node.module}.{alias.name}" for alias in node.names)
        deps = set()
        for imported in named:
            dep = imported
            while dep and dep not in files:
                dep = dep.rpartition(".")[0]
            if dep and dep != name and not name.startswith(dep + "."):  # a package's own __init__ is no circle
                deps.add(dep)
        out[name] = deps
    return out


def circles(g: dict[str, set[str]]) -> list[str]:
    """The modules that reach themselves through their imports."""
    return sorted(m for m in g if m in reach(g, m))


def reach(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in g[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_no_import_circles() -> None:
    assert circles(graph()) == []


def test_the_hub_service_never_reaches_the_simulators() -> None:
    g = graph()
    assert not {m for m in reach(g, "hub.service") if m.startswith("simulators")}


def test_the_circle_finder_finds_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c"]
