"""The import graph of hub/, protocols/, firmware/ and simulators/, read from the source (every import,
lazy ones inside functions included): no circles; the hub never reaches simulators/ (only the `qala demo`
and `qala sim` commands, hub.demo_cli, may); and simulators/ uses only the hub's public pieces (hub.PUBLIC,
each module's `__all__`).

firmware/config.py and firmware/driveropts.py imported each other, and hub/config.py and
hub/modbus/config.py (for ConfigError) did too. simulators/ took the Modbus line timing from
hub.modbus.bus (now protocols.modbus_framing.silence_us).
"""

from __future__ import annotations

import ast
from pathlib import Path

import hub

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


def test_only_the_demo_sim_and_cluster_commands_reach_the_simulators() -> None:
    """The product never depends on simulators/: of the hub's modules only hub.demo_cli (`qala demo`, `qala
    sim`) and hub.cluster_cli (`qala cluster`) import it, and only the command line (hub.cli, hub.__main__)
    reaches it, through them."""
    g = graph()
    commands = {"hub.demo_cli", "hub.cluster_cli"}
    importers = {m for m in g if m.startswith("hub") and any(d.startswith("simulators") for d in g[m])}
    assert importers == commands
    for command in commands:
        assert {m for m in g if command in g[m]} == {"hub.cli"}
    without = {m: deps - commands for m, deps in g.items()}
    assert not {m for m in g if m.startswith("hub") and m not in commands
                and any(d.startswith("simulators") for d in reach(without, m))}


def promised(module: str) -> set[str]:
    """The names a public module lists in `__all__`, read from its source."""
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            return set(ast.literal_eval(node.value))
    return set()


def hub_uses(source: str) -> set[str]:
    """What a module takes from the hub, as `module:name` (`module:*` for a whole-module import), read from the
    source: `from hub.a import b` and `from hub import a` with every `a.x` used, lazy imports included."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> hub module
    uses: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "hub":
                    uses.add(f"{alias.name}:*")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "hub":
            for alias in node.names:
                whole = f"{node.module}.{alias.name}"
                if ROOT.joinpath(*whole.split(".")).with_suffix(".py").is_file():
                    aliases[alias.asname or alias.name] = whole
                else:
                    uses.add(f"{node.module}:{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            uses.add(f"{aliases[node.value.id]}:{node.attr}")
    return uses


def beyond_public(uses: set[str]) -> set[str]:
    return {use for use in uses if use.partition(":")[0] not in hub.PUBLIC
            or use.partition(":")[2] not in promised(use.partition(":")[0])}


def test_simulators_use_only_the_hubs_public_pieces() -> None:
    found = {}
    for path in sorted((ROOT / "simulators").rglob("*.py")):
        uses = hub_uses(path.read_text())
        found[str(path.relative_to(ROOT))] = uses
        assert not beyond_public(uses), (path, beyond_public(uses))
    assert found["simulators/modbus_devices.py"] >= {"hub.modbus.profile:load", "hub.modbus.profile:Profile"}


def test_every_public_piece_promises_names_it_has() -> None:
    for module in hub.PUBLIC:
        names = promised(module)
        assert names, f"{module}: no __all__"
        tree = ast.parse(ROOT.joinpath(*module.split(".")).with_suffix(".py").read_text())
        defined = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Assign):
                defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
        assert names <= defined, (module, names - defined)


def test_the_public_check_sees_internals() -> None:
    source = ("from hub.modbus.bus import silent_interval\nfrom hub.modbus import profile as p\n"
              "from hub.trust import provision\nimport hub.service\n"
              "def f():\n    p.load(p.HEAD)\n    provision.add_hub()\n")
    assert beyond_public(hub_uses(source)) == {"hub.modbus.bus:silent_interval", "hub.modbus.profile:HEAD",
                                               "hub.service:*"}


def test_the_circle_finder_finds_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c"]
