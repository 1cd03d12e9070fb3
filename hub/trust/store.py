"""The provisioning store, read side: a site's identities as the hub and the tools see them.

A store is a folder (docs/hub.md, "Provisioning"):

    site.json            {"version": 1, "site": ..., "broker_host": ...}
    devices.json         {"version": 1, "devices": {device: {"generation": N, "district": null,
                         "lat": null, "lon": null}}}  (public; lat/lon optional: stores made before them load)
    tls/ca.pem           the site CA (public); tls/broker.pem, the broker's certificate
    broker/passwd        mosquitto password_file ($7$ hashes); broker/acl, its acl_file;
    broker/qala-broker.conf   the mosquitto snippet a site includes
    secrets/             mode 700, every file mode 600: ca.key, broker.key,
                         hubs/<name>.json {"user", "password"}, boards/<device>.json {"device", "user",
                         "password", "cmd_key", "generation"}, integrators/<name>.json {"user", "password"}
                         (read-only logins to the northbound feed; the folder exists once one was made)

`TrustStore.load(root)` reads and checks all of it at once (a hub re-reads it on restart or SIGHUP) and raises
StoreError naming the file and the problem. A secrets file that group or others may read is refused, as ssh
refuses a private key. Secrets never appear in a repr or a message. The write side (init, add, rotate,
revoke) is hub.trust.provision. One of the hub's public pieces (hub.PUBLIC): `__all__` is what it promises.

Imports the standard library, protocols.topics (the id rule) and hub.trust.broker (the usernames); no TLS.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.trust.broker import board_user, hub_user, integrator_user
from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = ["BoardIdentity", "DeviceEntry", "StoreError", "TrustStore"]  # public (hub.PUBLIC)

VERSION = 1
DEFAULT_HUB = "main"
TOOLS = "tools"
"""The hub identity `qala fw deploy --store` watches the broker with (never the hub's own: its login is its
session, which a second connection would take over)."""

# The layout, relative to the store's root (simulators/services.py names BROKER_CONF too; a test keeps them equal).
SITE_FILE = "site.json"
DEVICES_FILE = "devices.json"
CA_CERT = "tls/ca.pem"
BROKER_CERT = "tls/broker.pem"
PASSWD = "broker/passwd"  # noqa: S105 - a file name, not a password
ACL = "broker/acl"
BROKER_CONF = "broker/qala-broker.conf"
SECRETS = "secrets"
CA_KEY = "secrets/ca.key"
BROKER_KEY = "secrets/broker.key"
HUBS = "secrets/hubs"
BOARDS = "secrets/boards"
INTEGRATORS = "secrets/integrators"

_CMD_KEY = re.compile(r"[0-9a-f]{64}")


class StoreError(RuntimeError):
    """The store is missing, unreadable or inconsistent; the message names the file and the problem."""


@dataclass(frozen=True)
class BoardIdentity:
    """One board's broker login and command key; the secrets stay out of repr."""

    device: str
    user: str
    password: str = field(repr=False)
    cmd_key: bytes = field(repr=False)
    generation: int = 1


@dataclass(frozen=True)
class DeviceEntry:
    """A device's public line in devices.json."""

    generation: int = 1
    district: str | None = None
    """The city district the device serves (id rules), None if not placed."""
    lat: float | None = None
    """WGS 84 latitude and longitude in degrees (both or neither)."""
    lon: float | None = None


class TrustStore:
    """A loaded store: the site, its broker's name, the CA, the hubs', boards' and integrators' identities."""

    def __init__(
        self,
        root: Path,
        site: str,
        broker_host: str,
        boards: Mapping[str, BoardIdentity],
        hubs: Mapping[str, tuple[str, str]],
        entries: Mapping[str, DeviceEntry] | None = None,
        integrators: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.root = root
        self.site = site
        self.broker_host = broker_host
        self._boards = dict(boards)
        self._hubs = dict(hubs)
        self._entries = dict(entries or {d: DeviceEntry(b.generation) for d, b in boards.items()})
        self._integrators = dict(integrators or {})

    def __repr__(self) -> str:
        return (f"<TrustStore {self.root} site={self.site} broker_host={self.broker_host} "
                f"devices={len(self._boards)} hubs={sorted(self._hubs)} integrators={sorted(self._integrators)}>")

    # -- paths

    @property
    def ca_file(self) -> Path:
        """The site CA certificate (PEM), what boards and the hub verify the broker with."""
        return self.root / CA_CERT

    @property
    def broker_cert(self) -> Path:
        return self.root / BROKER_CERT

    @property
    def broker_key(self) -> Path:
        return self.root / BROKER_KEY

    @property
    def passwd_file(self) -> Path:
        return self.root / PASSWD

    @property
    def acl_file(self) -> Path:
        return self.root / ACL

    @property
    def broker_conf(self) -> Path:
        return self.root / BROKER_CONF

    # -- identities

    def devices(self) -> frozenset[str]:
        """The provisioned device ids."""
        return frozenset(self._boards)

    def board(self, device: str) -> BoardIdentity | None:
        return self._boards.get(device)

    def cmd_key(self, device: str) -> bytes | None:
        board = self._boards.get(device)
        return None if board is None else board.cmd_key

    def entry(self, device: str) -> DeviceEntry | None:
        """The device's public line (generation, district), None if not provisioned."""
        return self._entries.get(device)

    def hubs(self) -> frozenset[str]:
        """The names of the hub identities."""
        return frozenset(self._hubs)

    def hub(self, name: str = DEFAULT_HUB) -> tuple[str, str]:
        """(user, password) of a hub identity; StoreError if the store has none of that name."""
        try:
            return self._hubs[name]
        except KeyError:
            have = ", ".join(sorted(self._hubs)) or "none"
            raise StoreError(f"{self.root / HUBS / (name + '.json')}: no hub identity {name!r} (have: {have}); "
                             f"`qala provision hub {name}` makes one") from None

    def integrators(self) -> frozenset[str]:
        """The names of the integrator identities (read-only logins to the northbound feed)."""
        return frozenset(self._integrators)

    def integrator(self, name: str) -> tuple[str, str]:
        """(user, password) of an integrator identity; StoreError if the store has none of that name."""
        try:
            return self._integrators[name]
        except KeyError:
            have = ", ".join(sorted(self._integrators)) or "none"
            raise StoreError(f"{self.root / INTEGRATORS / (name + '.json')}: no integrator identity {name!r} "
                             f"(have: {have}); `qala provision integrator {name}` makes one") from None

    @classmethod
    def load(cls, root: Path) -> TrustStore:
        """Read and check the whole store; StoreError naming the file and the problem."""
        root = root.absolute()
        if not root.is_dir():
            raise StoreError(f"{root}: not a provisioning store (no such folder; `qala provision init` makes one)")
        site_doc = _json_object(root / SITE_FILE, ("version", "site", "broker_host"))
        site = _id(root / SITE_FILE, "site", site_doc["site"])
        host = site_doc["broker_host"]
        if not isinstance(host, str) or not host:
            raise StoreError(f"{root / SITE_FILE}: broker_host: must be a non-empty string")
        for public in (CA_CERT, BROKER_CERT, PASSWD, ACL):
            if not (root / public).is_file():
                raise StoreError(f"{root / public}: missing (the store is incomplete)")
        _check_secret_folder(root / SECRETS)
        _check_secret_folder(root / BOARDS)
        entries = _devices(root / DEVICES_FILE)
        boards = {device: _board(root, site, device, entry) for device, entry in entries.items()}
        hubs = _logins(root / HUBS, "hub", hub_user, site)
        integrators = _logins(root / INTEGRATORS, "integrator", integrator_user, site, optional=True)
        return cls(root, site, host, boards, hubs, entries, integrators)


# ------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"{path}: missing (the store is incomplete)") from None
    except (OSError, UnicodeError) as exc:
        raise StoreError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def _json_object(path: Path, keys: tuple[str, ...], *, secret: bool = False) -> dict[str, Any]:
    if secret:
        _check_secret_file(path)
    text = _read_text(path)
    try:
        value = json.loads(text)
    except ValueError as exc:
        # The message of a JSON error quotes no content, only the position.
        raise StoreError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise StoreError(f"{path}: must hold a JSON object")
    for key in keys:
        if key not in value:
            raise StoreError(f"{path}: {key}: required")
    extra = sorted(set(value) - set(keys))
    if extra:
        raise StoreError(f"{path}: unknown key {extra[0]!r} (known: {', '.join(keys)})")
    if "version" in keys and value["version"] != VERSION:
        raise StoreError(f"{path}: version: this qala reads version {VERSION}, got {value['version']!r}")
    return value


def _id(path: Path, key: str, value: Any) -> str:
    try:
        return check_id(key, value)
    except ProtocolError as exc:
        raise StoreError(f"{path}: {exc}") from None


def _mode_problem(path: Path, *, folder: bool) -> str | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "missing (the store is incomplete)"
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link (secrets must be plain files in the store)"
    if folder != stat.S_ISDIR(info.st_mode):
        return "must be a folder" if folder else "must be a plain file"
    if info.st_mode & 0o077:
        want = "700" if folder else "600"
        return f"mode {stat.S_IMODE(info.st_mode):03o}: group or others may read it (chmod {want})"
    return None


def _check_secret_folder(path: Path) -> None:
    problem = _mode_problem(path, folder=True)
    if problem:
        raise StoreError(f"{path}: {problem}")


def _check_secret_file(path: Path) -> None:
    problem = _mode_problem(path, folder=False)
    if problem:
        raise StoreError(f"{path}: {problem}")


def _generation(path: Path, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StoreError(f"{path}: generation: must be a positive integer, got {value!r}")
    return value


def _devices(path: Path) -> dict[str, DeviceEntry]:
    doc = _json_object(path, ("version", "devices"))
    devices = doc["devices"]
    if not isinstance(devices, dict):
        raise StoreError(f"{path}: devices: must be an object")
    out: dict[str, DeviceEntry] = {}
    for device, entry in devices.items():
        _id(path, f"devices.{device}", device)
        if not isinstance(entry, dict) or set(entry) - {"generation", "district", "lat", "lon"}:
            raise StoreError(f"{path}: devices.{device}: must be an object with generation, district, lat and lon")
        district = entry.get("district")
        if district is not None:
            _id(path, f"devices.{device}.district", district)
        lat = _coordinate(path, f"devices.{device}.lat", entry.get("lat"), 90)
        lon = _coordinate(path, f"devices.{device}.lon", entry.get("lon"), 180)
        if (lat is None) != (lon is None):
            raise StoreError(f"{path}: devices.{device}: lat and lon go together (both or neither)")
        out[device] = DeviceEntry(_generation(path, entry.get("generation")), district, lat, lon)
    return out


def _coordinate(path: Path, key: str, value: Any, bound: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -bound <= value <= bound:
        raise StoreError(f"{path}: {key}: must be a number of degrees in -{bound:g}..{bound:g} or null, got {value!r}")
    return float(value)


def _board(root: Path, site: str, device: str, entry: DeviceEntry) -> BoardIdentity:
    path = root / BOARDS / f"{device}.json"
    doc = _json_object(path, ("device", "user", "password", "cmd_key", "generation"), secret=True)
    if doc["device"] != device:
        raise StoreError(f"{path}: device: must be {device!r} (the file's name)")
    if doc["user"] != board_user(site, device):
        raise StoreError(f"{path}: user: must be {board_user(site, device)!r}")
    password = doc["password"]
    if not isinstance(password, str) or not password:
        raise StoreError(f"{path}: password: must be a non-empty string")
    key = doc["cmd_key"]
    if not isinstance(key, str) or not _CMD_KEY.fullmatch(key):
        raise StoreError(f"{path}: cmd_key: must be 64 lower-case hex digits (32 bytes)")
    generation = _generation(path, doc["generation"])
    if generation != entry.generation:
        raise StoreError(f"{path}: generation {generation} differs from {root / DEVICES_FILE}'s "
                         f"{entry.generation} (an interrupted rotate? run `qala provision rotate {device}` again)")
    return BoardIdentity(device, doc["user"], password, bytes.fromhex(key), generation)


def _logins(folder: Path, what: str, user_of: Callable[[str, str], str], site: str, *,
            optional: bool = False) -> dict[str, tuple[str, str]]:
    """The {"user", "password"} files of one folder (hubs, integrators); an optional folder may be absent
    (stores made before integrators existed)."""
    if optional and not folder.exists():
        return {}
    _check_secret_folder(folder)
    logins: dict[str, tuple[str, str]] = {}
    for path in sorted(folder.glob("*.json")):
        name = _id(path, f"{what} name", path.stem)
        doc = _json_object(path, ("user", "password"), secret=True)
        if doc["user"] != user_of(site, name):
            raise StoreError(f"{path}: user: must be {user_of(site, name)!r}")
        if not isinstance(doc["password"], str) or not doc["password"]:
            raise StoreError(f"{path}: password: must be a non-empty string")
        logins[name] = (doc["user"], doc["password"])
    return logins
