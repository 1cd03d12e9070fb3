"""hub/ and simulators/ use paho-mqtt through its public API only, read from the source with ast.

The hub once subclassed paho's client and overrode its private methods (`_sock_recv`, `_packet_read`,
`_handle_on_message`) for speed; pyproject allows any paho-mqtt >= 2.1, so any release could have broken
ingest without a word. The hub's MQTT connection now has no paho in it (hub/ingest/mqtt.py on
protocols/mqtt_codec.py); the tools that still use paho (`qala fw deploy`, the demo's watcher) must stay on
its public API. In every module that imports paho this refuses:

- importing a private name or module of paho (`from paho.mqtt.client import _x`, `import paho.mqtt._y`);
- a class whose base comes from paho (a subclass reaches the internals by overriding them);
- reading or writing `x._name` where `_name` is a private attribute of paho's classes or of a paho Client
  (`client._sock`, `self.client._in_packet`); `self._name` and `cls._name` are left alone, since no class
  may be paho's (the rule above), so those are the module's own.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "simulators")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def paho_private_names() -> frozenset[str]:
    """The private attributes of the installed paho's client module: its classes' and a Client's own."""
    names = set()
    for value in vars(paho).values():
        if inspect.isclass(value) and value.__module__.startswith("paho."):
            names.update(name for name in dir(value) if _private(name))
    names.update(name for name in vars(paho.Client(CallbackAPIVersion.VERSION2)) if _private(name))
    return frozenset(names)


def _root(node: ast.expr) -> str | None:
    """The name an expression like `a.b.c` or `a.b(...)` starts from."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _imports(tree: ast.Module) -> tuple[set[str], list[str]]:
    """The names paho's modules and objects are imported as, and the private ones among the imports."""
    bound: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "paho":
                    bound.add(alias.asname or alias.name.split(".")[0])
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"line {node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "paho":
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if any(_private(part) for part in [*node.module.split("."), alias.name]):
                    found.append(f"line {node.lineno}: imports {alias.name} from {node.module}")
    return bound, found


def _own(node: ast.expr) -> bool:
    """`self` or `cls`: the module's own object (no class may be paho's)."""
    return isinstance(node, ast.Name) and node.id in {"self", "cls"}


def violations(source: str, private: frozenset[str]) -> list[str]:
    """What the module's source does with paho that only its public API may do, one line each."""
    tree = ast.parse(source)
    bound, found = _imports(tree)
    if not bound:
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            found.extend(f"line {node.lineno}: class {node.name} subclasses paho's {ast.unparse(base)}"
                         for base in node.bases if _root(base) in bound)
        elif isinstance(node, ast.Attribute) and _private(node.attr) and (
            (node.attr in private and not _own(node.value)) or _root(node.value) in bound
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)} is private to paho")
    return found


def test_hub_and_simulators_use_only_pahos_public_api() -> None:
    private = paho_private_names()
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if bad := violations(path.read_text(), private):
                found[str(path.relative_to(ROOT))] = bad
    assert found == {}


def test_the_hubs_ingest_has_no_paho_at_all() -> None:
    for path in (ROOT / "hub" / "ingest").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name.split(".")[0] == "paho"}, path


def test_the_checker_finds_what_the_hub_once_did() -> None:
    private = paho_private_names()
    assert {"_sock_recv", "_packet_read", "_handle_on_message", "_in_packet", "_sock"} <= private
    once = """
import paho.mqtt.client as paho
from paho.mqtt.client import _ConnectionState
import paho.mqtt._private_module


class _Client(paho.Client):
    def _sock_recv(self, bufsize):
        return super()._sock_recv(bufsize)


def hand_over(client):
    client._in_packet["command"]
    paho._socketpair_compat()
"""
    found = violations(once, private)
    assert len(found) == 6, found
    assert "line 3: imports _ConnectionState from paho.mqtt.client" in found
    assert "line 4: imports paho.mqtt._private_module" in found
    assert "line 7: class _Client subclasses paho's paho.Client" in found
    assert "line 9: super()._sock_recv is private to paho" in found
    assert "line 13: client._in_packet is private to paho" in found
    assert "line 14: paho._socketpair_compat is private to paho" in found


def test_the_checker_leaves_a_modules_own_private_names_alone() -> None:
    fine = """
import paho.mqtt.client as paho


class Watch:
    def __init__(self):
        self._sock = None  # a name paho also has, but this class is not paho's
        self.client = paho.Client()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg):
        self._payloads.append(msg.payload)
"""
    assert violations(fine, paho_private_names()) == []
    assert violations("class _Client(Base):\n    def f(self, c):\n        return c._sock_recv\n", frozenset()) == []
