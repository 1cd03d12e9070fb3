"""Release bundles for over-the-air updates (`qala fw release`), and reading them back with every hash checked.

A release is a folder (docs/ota.md, "Ship a version to a site"):

    manifest        the text the board reads line by line (protocols.ota.encode_manifest): kind, version,
                    minimum MicroPython (hub.tools.fw.micropython_minimum: what loads mpy-cross's output),
                    one `file PATH SIZE SHA256` line per file; the same slot manifest `qala fw build`
                    writes, so `qala fw deploy --bundle` and hub.tools.fw.install_unix take a release too
    release.json    {"version", "kind", "manifest": sha256 of the manifest's bytes, "size": its length,
                     "files": n, "bytes": total, "micropython", "built": ms, "device": (config only)}
    firmware/...    kind fw: the .mpy build of firmware/ and protocols/ (hub.tools.bundle) with
    protocols/...   firmware/__init__.py's VERSION set to the release's version
    board.json      kind config: the one file, a board config the board's own validator accepted

- `build_release(out, version)`: kind fw. The sources are copied to a temporary tree, VERSION is stamped
  there (the repository is never changed), compiled with mpy-cross, and written to `out`.
- `build_config_release(out, config, version)`: kind config, for the board the config names (a config holds
  that board's identity and secrets: it is written with mode 600 and its values never appear in
  release.json or a message).
- `load_release(folder)`: a Release with the manifest's bytes and every file's size and SHA-256 checked
  against the files on disk; ReleaseError naming the first problem. The hub loads releases this way.

The board checks the same hashes again; what it trusts is the offer signed with its own key, which carries
the manifest's SHA-256 (docs/ota.md, "Decisions").

Imports hub.tools.bundle (the .mpy build), hub.tools.fw (the board config validator) and protocols.ota (the
manifest format); knows nothing of MQTT, roll-outs or the hub's service.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.tools import bundle, fw
from protocols import ota
from protocols.errors import ProtocolError

MANIFEST = "manifest"
RELEASE = "release.json"
CONFIG_FILE = "board.json"
KIND_FW = "fw"
KIND_CONFIG = "config"
KINDS = (KIND_FW, KIND_CONFIG)
VERSION_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
"""A version: 1-32 of A-Z a-z 0-9 . _ + -, starting with a letter or digit (it names the release's folder)."""
CONFIG_MICROPYTHON = (1, 0)
"""A config release's minimum MicroPython: a JSON file loads on any."""
LEFT_OUT = frozenset({"firmware/board.example.json", "firmware/board.unix.json"})
"""Files of the build a slot does not need (example configs): every byte of a bundle goes over the air."""
_STAMP = re.compile(r'^VERSION = "[^"]*"$', re.MULTILINE)


class ReleaseError(RuntimeError):
    """A release cannot be built or loaded; the message names the folder, file or argument at fault."""


class ReleaseInputError(ReleaseError):
    """What was given is wrong (--version, --out, --config): `qala fw release` exits 2, not 1."""


@dataclass(frozen=True)
class ReleaseFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    """A release as the hub serves it: the manifest's bytes and the files it lists, in order (file 0, 1, ...)."""

    folder: Path
    version: str
    kind: str
    micropython: str
    manifest: bytes = field(repr=False)
    manifest_sha: str
    files: tuple[ReleaseFile, ...]
    built: int = 0
    device: str | None = None
    """Kind config: the board the config is for (a config carries one board's identity)."""

    @property
    def total(self) -> int:
        """Bytes a board fetches: the manifest and every file."""
        return len(self.manifest) + sum(f.size for f in self.files)

    def summary(self) -> dict[str, Any]:
        """What GET /v1/releases and release.json say about it (no file contents)."""
        out: dict[str, Any] = {"version": self.version, "kind": self.kind, "manifest": self.manifest_sha,
                               "size": len(self.manifest), "files": len(self.files),
                               "bytes": sum(f.size for f in self.files), "micropython": self.micropython,
                               "built": self.built}
        if self.device is not None:
            out["device"] = self.device
        return out


def check_version(version: str, what: str = "--version") -> str:
    if not VERSION_RULE.fullmatch(version):
        raise ReleaseInputError(f"{what} {version!r}: must be 1-32 of A-Z a-z 0-9 . _ + -, starting with a letter or "
                           "digit (e.g. 0.2.0)")
    return version


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while block := source.read(65536):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()


def stamp_version(source: str, version: str) -> str:
    """firmware/__init__.py's text with `VERSION = "<version>"`; ReleaseError when it has no such line."""
    stamped, count = _STAMP.subn(f'VERSION = "{version}"', source)
    if count != 1:
        raise ReleaseError('firmware/__init__.py: no single `VERSION = "..."` line to stamp the version into')
    return stamped


def _prepare(out: Path) -> None:
    """`out` as an empty folder (created), or ReleaseError: a release never mixes with other files."""
    if out.exists() and not out.is_dir():
        raise ReleaseInputError(f"--out {out}: a file is in the way; give a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ReleaseInputError(f"--out {out}: the folder is not empty; a release gets a folder of its own (e.g. "
                           f"RELEASES/<version>)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReleaseInputError(f"--out {out}: cannot create it: {exc.strerror or exc}") from None


def _finish(out: Path, kind: str, version: str, files: list[ReleaseFile], device: str | None,
            clock_ms: int) -> Release:
    try:  # the oldest MicroPython that loads what mpy-cross emits (a config runs on any)
        major, minor = fw.micropython_minimum() if kind == KIND_FW else CONFIG_MICROPYTHON
    except fw.FwError as exc:
        raise ReleaseError(str(exc)) from None
    manifest = ota.encode_manifest(kind, version, (major, minor), [(f.path, f.size, f.sha256) for f in files])
    (out / MANIFEST).write_bytes(manifest)
    release = Release(out, version, kind, f"{major}.{minor}", manifest, hashlib.sha256(manifest).hexdigest(),
                      tuple(files), clock_ms, device)
    (out / RELEASE).write_text(json.dumps(release.summary(), indent=1) + "\n")
    return release


def build_release(out: Path, version: str, *, root: Path = bundle.REPO_ROOT, clock_ms: int | None = None) -> Release:
    """Kind fw: the firmware of `root` with VERSION = `version`, compiled into the empty folder `out`."""
    check_version(version)
    _prepare(out)
    try:
        with tempfile.TemporaryDirectory(prefix="qala-release-") as tmp:
            tree = Path(tmp) / "src"
            for package in bundle.PACKAGES:
                shutil.copytree(root / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
            init = tree / "firmware" / "__init__.py"
            init.write_text(stamp_version(init.read_text(), version))
            built = bundle.build(Path(tmp) / "out", root=tree)
            files = []
            for rel in sorted(built):
                if rel in LEFT_OUT:
                    continue
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / "out" / rel, target)
                size, sha = _digest(target)
                files.append(ReleaseFile(rel, size, sha))
    except bundle.BundleError as exc:
        raise ReleaseError(str(exc)) from None
    return _finish(out, KIND_FW, version, files, None, _now(clock_ms))


def build_config_release(out: Path, config: Path, version: str, *, clock_ms: int | None = None) -> Release:
    """Kind config: `config` (a board.json the board's validator accepts) as the one file of the folder `out`."""
    check_version(version)
    try:
        raw = fw.read_json(config, "--config")
        fw.validate_config(raw, need_wifi=False, given=frozenset(), file_option="--config")
    except fw.FwError as exc:
        message = str(exc)
        raise ReleaseInputError(message if message.startswith("--config") else f"--config {config}: {message}") \
            from None
    _prepare(out)
    target = out / CONFIG_FILE
    data = config.read_bytes()
    target.touch(mode=0o600)
    target.write_bytes(data)
    size, sha = _digest(target)
    return _finish(out, KIND_CONFIG, version, [ReleaseFile(CONFIG_FILE, size, sha)], str(raw["device"]),
                   _now(clock_ms))


def _now(clock_ms: int | None) -> int:
    return int(time.time() * 1000) if clock_ms is None else clock_ms


def load_release(folder: Path) -> Release:
    """The release in `folder`, its manifest parsed and every file's size and SHA-256 checked; ReleaseError
    naming the folder and the first problem."""
    try:
        info = json.loads((folder / RELEASE).read_text())
        manifest = (folder / MANIFEST).read_bytes()
    except OSError as exc:
        raise ReleaseError(f"{folder}: not a release ({exc.filename and Path(exc.filename).name}: "
                           f"{exc.strerror or exc}); `qala fw release --out {folder}` makes one") from None
    except ValueError:
        raise ReleaseError(f"{folder}: {RELEASE} is not valid JSON") from None
    if not isinstance(info, dict):
        raise ReleaseError(f"{folder}: {RELEASE} must be a JSON object")
    try:
        parsed = ota.parse_manifest(manifest)
    except ProtocolError as exc:
        raise ReleaseError(f"{folder}: {MANIFEST}: {exc}") from None
    sha = hashlib.sha256(manifest).hexdigest()
    if info.get("manifest") != sha:
        raise ReleaseError(f"{folder}: {MANIFEST} differs from what {RELEASE} recorded (sha256 {sha[:12]}...): "
                           "the folder was changed after the release was built; build it again")
    kind, version = parsed["kind"], parsed["version"]
    if kind != info.get("kind") or version != info.get("version"):
        raise ReleaseError(f"{folder}: {RELEASE} says {info.get('kind')} {info.get('version')}, the manifest "
                           f"{kind} {version}")
    files = []
    for path, size, digest in parsed["files"]:
        target = folder / path
        try:
            got_size, got = _digest(target)
        except OSError as exc:
            raise ReleaseError(f"{folder}: {path}: {exc.strerror or exc} (listed in the manifest)") from None
        if (got_size, got) != (size, digest):
            raise ReleaseError(f"{folder}: {path}: size or SHA-256 differs from the manifest: the file was changed "
                               "after the release was built; build it again")
        files.append(ReleaseFile(path, size, digest))
    micro = parsed["micropython"]
    device = info.get("device") if kind == KIND_CONFIG else None
    return Release(folder, version, kind, f"{micro[0]}.{micro[1]}", manifest, sha, tuple(files),
                   int(info.get("built") or 0), device if isinstance(device, str) else None)


def load_releases(root: Path) -> tuple[dict[str, Release], dict[str, str]]:
    """Every release under `root` (one sub-folder each), by version; and the folders refused, with why."""
    found: dict[str, Release] = {}
    refused: dict[str, str] = {}
    if not root.is_dir():
        return found, refused
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            release = load_release(folder)
        except ReleaseError as exc:
            refused[folder.name] = str(exc)
            continue
        if release.version in found:
            refused[folder.name] = f"{folder}: version {release.version} is also in {found[release.version].folder}"
            continue
        found[release.version] = release
    return found, refused
