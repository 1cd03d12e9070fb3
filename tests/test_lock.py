"""requirements.lock (what scripts/setup installs, made by scripts/lock) agrees with pyproject.toml (the ranges
people installing Qala as a library get): every requirement of the project and of its dev extra is pinned at a
version its range admits, every pin is reached from them, every pin carries hashes, and the lock was made from
the requirements pyproject.toml lists now (scripts/lock records them in the lock's header).

Reads the two files only: no network, no pip.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = "qala (pyproject.toml)"  # how pip-compile names the project in `# via` lines
FIX = "run scripts/lock and commit requirements.lock with pyproject.toml"


@dataclass
class Lock:
    made_from: list[str] = field(default_factory=list)  # "project: aiomqtt>=2.5", "dev: pytest>=8", ...
    pins: dict[str, Version] = field(default_factory=dict)
    hashes: dict[str, int] = field(default_factory=dict)
    via: dict[str, set[str]] = field(default_factory=dict)


def read_lock(text: str) -> Lock:
    lock = Lock()
    name = ""
    for line in text.splitlines():
        if made_from := re.fullmatch(r"#   ((?:project|dev): .+)", line):
            lock.made_from.append(made_from[1])
        elif line and not line[0].isspace() and not line.startswith(("#", "-")):
            req = Requirement(line.removesuffix("\\").strip())
            (spec,) = req.specifier
            assert spec.operator == "==", line
            name = canonicalize_name(req.name)
            lock.pins[name], lock.hashes[name], lock.via[name] = Version(spec.version), 0, set()
        elif "--hash=sha256:" in line:
            lock.hashes[name] += 1
        elif via := re.fullmatch(r"\s+# (?:via |  )(\S.*)", line):  # "# via NAME", or one NAME a line after "# via"
            lock.via[name].add(via[1] if via[1] == PYPROJECT else canonicalize_name(via[1]))
    return lock


def requirements(pyproject: dict[str, Any]) -> list[tuple[str, Requirement]]:
    project = pyproject["project"]
    return [("project", Requirement(r)) for r in project["dependencies"]] + [
        ("dev", Requirement(r)) for r in project["optional-dependencies"]["dev"]
    ]


def problems(pyproject: dict[str, Any], lock_text: str) -> list[str]:
    lock = read_lock(lock_text)
    wanted = requirements(pyproject)
    found = []
    made_from = [f"{where}: {req}" for where, req in wanted]
    if lock.made_from != made_from:
        found.append(f"the lock was made from {lock.made_from}, pyproject.toml now lists {made_from}")
    direct = set()
    for _, req in wanted:
        if req.marker is not None and not req.marker.evaluate({"extra": "dev"}):
            continue
        name = canonicalize_name(req.name)
        direct.add(name)
        if name not in lock.pins:
            found.append(f"{req} is not in the lock")
        elif not req.specifier.contains(lock.pins[name], prereleases=True):
            found.append(f"{req} but the lock pins {name}=={lock.pins[name]}")
    said_direct = {name for name, parents in lock.via.items() if PYPROJECT in parents}
    if said_direct != direct:
        found.append(f"the lock says pyproject.toml asks for {sorted(said_direct)}, it asks for {sorted(direct)}")
    reached = set(direct)
    grew = True
    while grew:
        more = {name for name, parents in lock.via.items() if parents & reached} - reached
        reached |= more
        grew = bool(more)
    unreached = sorted(lock.pins.keys() - reached)
    found += [f"{name} is in the lock but nothing in pyproject.toml needs it" for name in unreached]
    found += [f"{name} has no hashes" for name, count in lock.hashes.items() if count == 0]
    return [f"{problem}: {FIX}" for problem in found]


def read_files() -> tuple[dict[str, Any], str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text()), (ROOT / "requirements.lock").read_text()


def test_the_lock_agrees_with_pyproject() -> None:
    pyproject, lock_text = read_files()
    assert problems(pyproject, lock_text) == []
    assert len(read_lock(lock_text).pins) > len(requirements(pyproject))  # the parser found the transitive pins


def test_scripts_setup_installs_the_lock_with_hashes() -> None:
    setup = (ROOT / "scripts/setup").read_text()
    assert "--require-hashes -r requirements.lock" in setup
    assert "--no-deps -e ." in setup


def test_a_changed_range_is_caught_even_when_the_pin_still_fits() -> None:
    pyproject, lock_text = read_files()
    dependencies = pyproject["project"]["dependencies"]
    dependencies[dependencies.index("orjson>=3.9")] = "orjson>=3.10"
    (found,) = problems(pyproject, lock_text)
    assert found.startswith("the lock was made from [")
    assert "'project: orjson>=3.9'" in found
    assert "'project: orjson>=3.10'" in found


def test_a_pin_outside_its_range_is_caught() -> None:
    pyproject, lock_text = read_files()
    pin = f"pymodbus=={read_lock(lock_text).pins['pymodbus']}"
    found = problems(pyproject, lock_text.replace(pin, "pymodbus==3.7.0"))
    assert found == [f"pymodbus[serial]>=3.8 but the lock pins pymodbus==3.7.0: {FIX}"]


def test_a_new_requirement_missing_from_the_lock_is_caught() -> None:
    pyproject, lock_text = read_files()
    pyproject["project"]["optional-dependencies"]["dev"].append("pytest-timeout>=2")
    found = problems(pyproject, lock_text)
    assert f"pytest-timeout>=2 is not in the lock: {FIX}" in found


def test_a_dropped_requirement_left_in_the_lock_is_caught() -> None:
    pyproject, lock_text = read_files()
    pyproject["project"]["dependencies"].remove("orjson>=3.9")
    found = problems(pyproject, lock_text)
    assert any(p.startswith("the lock says pyproject.toml asks for") for p in found)
    assert f"orjson is in the lock but nothing in pyproject.toml needs it: {FIX}" in found


def test_a_stray_pin_and_a_pin_without_hashes_are_caught() -> None:
    pyproject, lock_text = read_files()
    found = problems(pyproject, lock_text + "py-spy==0.4.3\n    # via nothing-locked\n")
    assert found == [
        f"py-spy is in the lock but nothing in pyproject.toml needs it: {FIX}",
        f"py-spy has no hashes: {FIX}",
    ]
