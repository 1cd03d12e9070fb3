"""The provisioning store, write side: make a store, add, rotate and revoke boards, add hubs.

- `init_store(root, site, broker_hosts)`: a new store: the site CA and the broker's certificate
  (hub.trust.tls), the hub identities `main` (the hub) and `tools` (`qala fw deploy` watching for a birth),
  an empty device list and the broker files.
- `open_store(root)`: the store loaded under an exclusive lock (`STORE/.lock`), as a `Session` whose
  `new_board`, `rotated_board`, `save_board`, `revoke_board`, `new_hub`, `save_hub`, `new_integrator`,
  `save_integrator` and `revoke_integrator` change it. `new_*` and `rotated_*` only make an identity in
  memory, so a caller can check what it will write with it (a board config) before anything in the store
  changes. `add_board`, `rotate_board`, `revoke_board`, `add_hub`, `add_integrator` and `revoke_integrator`
  do both steps at once. An integrator is a situation centre's read-only login to the northbound feed
  (`qala/{site}/_north/#`, hub.trust.broker.integrator_rules).
- `write_rabbitmq(store, out)`: the store's users and permissions as RabbitMQ definitions (hub.trust.rabbit)
  in one file of mode 600 (`qala provision rabbitmq`, the RabbitMQ cluster of issue 15).
- A device's place (its district and coordinates, public in devices.json) comes with `save_boards(...,
  places)` / `add_boards(..., places)` or later with `place_board` (`qala provision place`).

After every change the broker's password_file and acl_file are written again from the whole store
(hub.trust.passwd, hub.trust.broker); mosquitto reads them again on SIGHUP. Every file is written atomically
(a temporary file in the same folder, fsync, rename, fsync of the folder); secrets are created mode 600
(os.open) in folders of mode 700. New passwords are `secrets.token_urlsafe(24)`, command keys
`secrets.token_bytes(32)`; `secrets/issued` keeps the SHA-256 of every password and key ever issued so that
none is ever issued twice. Nothing here logs or prints a secret.

Errors: ProvisionError (the operation cannot be done as asked: the message names the argument or file) and
StoreError (hub.trust.store: the store is broken); OSError when the system refuses a write. One of the hub's
public pieces (hub.PUBLIC): `__all__` is what it promises.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub.atomic import fsync_folder, write_atomic
from hub.trust import broker, passwd, rabbit, tls
from hub.trust.store import (
    ACL,
    BOARDS,
    BROKER_CERT,
    BROKER_CONF,
    BROKER_KEY,
    CA_CERT,
    CA_KEY,
    DEFAULT_HUB,
    DEVICES_FILE,
    HUBS,
    INTEGRATORS,
    PASSWD,
    SECRETS,
    SITE_FILE,
    TOOLS,
    VERSION,
    BoardIdentity,
    DeviceEntry,
    StoreError,
    TrustStore,
)
from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

__all__ = [  # public (hub.PUBLIC)
    "ProvisionError",
    "Session",
    "add_board",
    "add_boards",
    "add_hub",
    "add_integrator",
    "init_store",
    "open_store",
    "place_board",
    "revoke_board",
    "revoke_integrator",
    "rotate_board",
    "write_rabbitmq",
]

ISSUED = "secrets/issued"
LOCK = ".lock"
DEFAULT_HOST = "localhost"
DEFAULT_IP = "127.0.0.1"
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class ProvisionError(ValueError):
    """The operation cannot be done as asked; the message names the argument or file at fault."""


# --------------------------------------------------------------------------------------------- files


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=False) + "\n").encode()


def _secret_folder(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)  # mkdir's mode is filtered by the umask; a wider existing folder is narrowed


# ------------------------------------------------------------------------------------------ checks


def check_device(device: str, what: str = "DEVICE") -> str:
    """A device or hub id (1-32 of A-Z a-z 0-9 _ -), else ProvisionError naming `what`."""
    try:
        return check_id(what, device)
    except ProtocolError as exc:
        raise ProvisionError(str(exc)) from None


Place = tuple[str | None, float | None, float | None]
"""(district, lat, lon) of a device; None where it is not known."""


def check_place(district: str | None, lat: float | None, lon: float | None) -> Place:
    """A device's place, checked: the district an id, coordinates finite degrees and given as a pair; else
    ProvisionError naming the option."""
    if district is not None:
        try:
            check_id("--district", district)
        except ProtocolError as exc:
            raise ProvisionError(str(exc)) from None
    if (lat is None) != (lon is None):
        raise ProvisionError(f"{'--lon' if lon is None else '--lat'}: required with "
                             f"{'--lat' if lon is None else '--lon'} (coordinates are a pair)")
    for name, value, bound in (("--lat", lat, 90.0), ("--lon", lon, 180.0)):
        if value is not None and not (math.isfinite(value) and -bound <= value <= bound):
            raise ProvisionError(f"{name}: must be -{bound:g}..{bound:g} degrees, got {value!r}")
    return district, lat, lon


def _entry_doc(entry: DeviceEntry) -> dict[str, Any]:
    """A device's line in devices.json; lat and lon only when known (stores without them stay as they were)."""
    doc: dict[str, Any] = {"generation": entry.generation, "district": entry.district}
    if entry.lat is not None and entry.lon is not None:
        doc |= {"lat": entry.lat, "lon": entry.lon}
    return doc


def split_hosts(hosts: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """(broker_host, DNS names, IP addresses) for the broker certificate; the first host is the broker's name.

    Every certificate also names localhost and 127.0.0.1 (a broker's own machine, the tests, the demo).
    """
    names: list[str] = []
    ips: list[str] = []
    first = DEFAULT_HOST
    for i, host in enumerate(hosts):
        if _is_ip(host):
            name = str(ipaddress.ip_address(host))
            ips.append(name)
        else:
            labels = host.rstrip(".").split(".")
            if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
                raise ProvisionError(f"--broker-host {host!r}: not a DNS name or IP address")
            name = host.rstrip(".").lower()
            names.append(name)
        if i == 0:
            first = name
    return first, list(dict.fromkeys([*names, DEFAULT_HOST])), list(dict.fromkeys([*ips, DEFAULT_IP]))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------- init


def init_store(root: Path, site: str, broker_hosts: Sequence[str] = (), *, port: int = broker.DEFAULT_PORT,
               ca_days: int = 3650, cert_days: int = 825) -> TrustStore:
    """Make a new store in root (which must not exist, or be an empty folder); return it loaded.

    The store is built in a temporary folder next to root and renamed into place: a failure leaves nothing.
    """
    root = root.absolute()
    site = check_device(site, "--site")
    host, dns, ips = split_hosts(broker_hosts)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ProvisionError(f"--store {root}: exists and is not an empty folder (a store is made only once)")
    if not root.parent.is_dir():
        raise ProvisionError(f"--store {root}: the folder {root.parent} does not exist")
    try:
        ca_pem, ca_key = tls.make_ca(f"Qala site {site} CA", days=ca_days)
        cert_pem, cert_key = tls.make_server_cert(ca_pem, ca_key, dns, ips, days=cert_days)
    except tls.TLSError as exc:
        raise ProvisionError(str(exc)) from None
    build = root.with_name(f".{root.name}.{secrets.token_hex(4)}.new")
    build.mkdir(mode=0o755)
    try:
        for folder in ("tls", "broker"):
            (build / folder).mkdir()
        for folder in (SECRETS, HUBS, BOARDS):
            _secret_folder(build / folder)
        write_atomic(build / CA_KEY, ca_key, mode=0o600)
        write_atomic(build / BROKER_KEY, cert_key, mode=0o600)
        write_atomic(build / CA_CERT, ca_pem)
        write_atomic(build / BROKER_CERT, cert_pem)
        write_atomic(build / SITE_FILE, _json_bytes({"version": VERSION, "site": site, "broker_host": host}))
        write_atomic(build / DEVICES_FILE, _json_bytes({"version": VERSION, "devices": {}}))
        write_atomic(build / ISSUED, b"", mode=0o600)
        conf = broker.mosquitto_conf(cafile=root / CA_CERT, certfile=root / BROKER_CERT, keyfile=root / BROKER_KEY,
                                     password_file=root / PASSWD, acl_file=root / ACL, port=port)
        write_atomic(build / BROKER_CONF, conf.encode())
        empty = TrustStore(build, site, host, {}, {})
        with _lock(build):
            session = Session(empty)
            session.save_hub(session.new_hub(DEFAULT_HUB))
            session.save_hub(session.new_hub(TOOLS))
        if root.exists():
            root.rmdir()
        build.rename(root)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    fsync_folder(root.parent)
    return TrustStore.load(root)


# ---------------------------------------------------------------------------------------- sessions


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_store(root: Path) -> Iterator[Session]:
    """The store at root, loaded under its lock (one provisioning change at a time); StoreError if broken."""
    root = root.absolute()
    if not (root / SITE_FILE).is_file():
        raise StoreError(f"{root}: not a provisioning store (no {SITE_FILE}; `qala provision init` makes one)")
    with _lock(root):
        yield Session(TrustStore.load(root))


class Session:
    """Changes to one locked store. `store` is the state after the latest saved change."""

    def __init__(self, store: TrustStore) -> None:
        self.store = store
        self._issued = self._read_issued()

    @property
    def root(self) -> Path:
        return self.store.root

    # -- secrets

    def _read_issued(self) -> set[str]:
        path = self.root / ISSUED
        try:
            return set(path.read_text().split())
        except FileNotFoundError:
            return set()

    def _fresh(self, make: Any) -> Any:
        """A new secret from make() whose SHA-256 was never issued by this store."""
        while True:
            value = make()
            raw = value if isinstance(value, bytes) else value.encode()
            if hashlib.sha256(raw).hexdigest() not in self._issued:
                return value

    def _record(self, *values: str | bytes, flush: bool = True) -> None:
        for value in values:
            raw = value if isinstance(value, bytes) else value.encode()
            self._issued.add(hashlib.sha256(raw).hexdigest())
        if flush:
            self._flush_issued()

    def _flush_issued(self) -> None:
        text = "".join(f"{digest}\n" for digest in sorted(self._issued))
        write_atomic(self.root / ISSUED, text.encode(), mode=0o600)

    def _password(self) -> str:
        value: str = self._fresh(lambda: secrets.token_urlsafe(24))
        return value

    def _cmd_key(self) -> bytes:
        value: bytes = self._fresh(lambda: secrets.token_bytes(32))
        return value

    # -- boards

    def new_board(self, device: str) -> BoardIdentity:
        """A first identity for a device not yet in the store (not saved)."""
        device = check_device(device)
        old = self.store.board(device)
        if old is not None:
            raise ProvisionError(f"DEVICE {device!r}: already provisioned (generation {old.generation}); "
                                 f"`qala provision rotate {device}` gives it new secrets")
        return BoardIdentity(device, broker.board_user(self.store.site, device), self._password(), self._cmd_key())

    def rotated_board(self, device: str) -> BoardIdentity:
        """A provisioned device's next identity: new password and command key, generation + 1 (not saved)."""
        old = self._known(device)
        return replace(old, password=self._password(), cmd_key=self._cmd_key(), generation=old.generation + 1)

    def _known(self, device: str) -> BoardIdentity:
        device = check_device(device)
        board = self.store.board(device)
        if board is None:
            have = ", ".join(sorted(self.store.devices())) or "none"
            raise ProvisionError(f"DEVICE {device!r}: not provisioned in {self.root} (have: {have})")
        return board

    def save_board(self, identity: BoardIdentity) -> TrustStore:
        """Write a board identity (new or rotated), devices.json and the broker files; return the new store."""
        return self.save_boards([identity])

    def save_boards(self, identities: Sequence[BoardIdentity],
                    places: Mapping[str, Place] | None = None) -> TrustStore:
        """save_board for many at once: devices.json and the broker files are written once (a fleet).
        `places`: device -> (district, lat, lon) to record with them (checked: ProvisionError)."""
        boards = {d: b for d in self.store.devices() if (b := self.store.board(d)) is not None}
        entries = {d: e for d in boards if (e := self.store.entry(d)) is not None}
        for device, place in (places or {}).items():
            district, lat, lon = check_place(*place)
            entries[device] = replace(entries.get(device, DeviceEntry()), district=district, lat=lat, lon=lon)
        for identity in identities:
            self._record(identity.password, identity.cmd_key, flush=False)
            doc = {"device": identity.device, "user": identity.user, "password": identity.password,
                   "cmd_key": identity.cmd_key.hex(), "generation": identity.generation}
            write_atomic(self.root / BOARDS / f"{identity.device}.json", _json_bytes(doc), mode=0o600, sync=False)
            boards[identity.device] = identity
            entries[identity.device] = replace(entries.get(identity.device, DeviceEntry()),
                                               generation=identity.generation)
        self._flush_issued()
        fsync_folder(self.root / BOARDS)
        return self._commit(boards, entries, {identity.user for identity in identities})

    def place_board(self, device: str, district: str | None, lat: float | None, lon: float | None) -> TrustStore:
        """Record where a provisioned device is (its district and coordinates): devices.json only, no secret
        changes. None keeps what the store has; ProvisionError for an unknown device or a bad place."""
        old = self._known(device)
        entry = self.store.entry(old.device) or DeviceEntry(old.generation)
        if district is None and lat is None and lon is None:
            raise ProvisionError("give --district, or --lat with --lon, or all three")
        district, lat, lon = check_place(district or entry.district,
                                         entry.lat if lat is None and lon is None else lat,
                                         entry.lon if lat is None and lon is None else lon)
        boards = {d: b for d in self.store.devices() if (b := self.store.board(d)) is not None}
        entries = {d: e for d in boards if (e := self.store.entry(d)) is not None}
        entries[old.device] = replace(entry, district=district, lat=lat, lon=lon)
        return self._commit(boards, entries, set())

    def revoke_board(self, device: str) -> TrustStore:
        """Remove a device: from devices.json, passwd and acl, and delete its secrets file."""
        old = self._known(device)
        boards = {d: b for d in self.store.devices() if d != old.device and (b := self.store.board(d)) is not None}
        entries = {d: e for d in boards if (e := self.store.entry(d)) is not None}
        store = self._commit(boards, entries, set())
        (self.root / BOARDS / f"{old.device}.json").unlink(missing_ok=True)
        fsync_folder(self.root / BOARDS)
        return store

    # -- hubs

    def _check_login(self, what: str, name: str, have: Iterable[str], *, rotate: bool) -> str:
        """The checked NAME of a hub or integrator login to create (or, rotate=True, to give a new password)."""
        name = check_device(name, "NAME")
        names = sorted(have)
        if name in names and not rotate:
            raise ProvisionError(f"NAME {name!r}: the {what} identity exists; --rotate gives it a new password")
        if rotate and name not in names:
            raise ProvisionError(f"NAME {name!r}: no such {what} identity to rotate (have: "
                                 f"{', '.join(names) or 'none'})")
        return name

    def new_hub(self, name: str, *, rotate: bool = False) -> tuple[str, str]:
        """A hub identity (user, password), new or (rotate=True) a new password for an existing one (not saved)."""
        name = self._check_login("hub", name, self.store.hubs(), rotate=rotate)
        return broker.hub_user(self.store.site, name), self._password()

    def save_hub(self, identity: tuple[str, str]) -> TrustStore:
        user, password = identity
        name = user.rsplit("/", 1)[-1]
        self._record(password)
        write_atomic(self.root / HUBS / f"{name}.json", _json_bytes({"user": user, "password": password}), mode=0o600)
        hubs = {n: self.store.hub(n) for n in self.store.hubs()} | {name: identity}
        self.store = TrustStore(self.root, self.store.site, self.store.broker_host,
                                {d: b for d in self.store.devices() if (b := self.store.board(d)) is not None},
                                hubs, {d: e for d in self.store.devices() if (e := self.store.entry(d)) is not None},
                                self._integrators())
        self._write_broker_files({user})
        return self.store

    # -- integrators

    def _integrators(self) -> dict[str, tuple[str, str]]:
        return {n: self.store.integrator(n) for n in self.store.integrators()}

    def new_integrator(self, name: str, *, rotate: bool = False) -> tuple[str, str]:
        """An integrator identity (user, password), new or (rotate=True) a new password for an existing one
        (not saved)."""
        name = self._check_login("integrator", name, self.store.integrators(), rotate=rotate)
        return broker.integrator_user(self.store.site, name), self._password()

    def save_integrator(self, identity: tuple[str, str]) -> TrustStore:
        """Write an integrator identity (new or rotated) and the broker files; return the new store."""
        user, password = identity
        name = user.rsplit("/", 1)[-1]
        self._record(password)
        _secret_folder(self.root / INTEGRATORS)
        write_atomic(self.root / INTEGRATORS / f"{name}.json", _json_bytes({"user": user, "password": password}),
                     mode=0o600)
        return self._set_integrators(self._integrators() | {name: identity}, {user})

    def revoke_integrator(self, name: str) -> TrustStore:
        """Remove an integrator: from passwd and acl, and delete its secrets file."""
        name = check_device(name, "NAME")
        if name not in self.store.integrators():
            raise ProvisionError(f"NAME {name!r}: no such integrator identity (have: "
                                 f"{', '.join(sorted(self.store.integrators())) or 'none'})")
        store = self._set_integrators({n: i for n, i in self._integrators().items() if n != name}, set())
        (self.root / INTEGRATORS / f"{name}.json").unlink(missing_ok=True)
        fsync_folder(self.root / INTEGRATORS)
        return store

    def _set_integrators(self, integrators: dict[str, tuple[str, str]], changed: set[str]) -> TrustStore:
        store = self.store
        self.store = TrustStore(self.root, store.site, store.broker_host,
                                {d: b for d in store.devices() if (b := store.board(d)) is not None},
                                {n: store.hub(n) for n in store.hubs()},
                                {d: e for d in store.devices() if (e := store.entry(d)) is not None}, integrators)
        self._write_broker_files(changed)
        return self.store

    # -- commit

    def _commit(self, boards: dict[str, BoardIdentity], entries: dict[str, DeviceEntry],
                changed: set[str]) -> TrustStore:
        devices = {d: _entry_doc(entries[d]) for d in sorted(boards)}
        write_atomic(self.root / DEVICES_FILE, _json_bytes({"version": VERSION, "devices": devices}))
        hubs = {n: self.store.hub(n) for n in self.store.hubs()}
        self.store = TrustStore(self.root, self.store.site, self.store.broker_host, boards, hubs, entries,
                                self._integrators())
        self._write_broker_files(changed)
        return self.store

    def _write_broker_files(self, changed: set[str]) -> None:
        """passwd and acl from the whole store. The hashes of users whose password did not change (not in
        `changed`) are kept as they are in the file: only new passwords are hashed."""
        store = self.store
        logins = [store.hub(name) for name in store.hubs()]
        logins += [(b.user, b.password) for d in store.devices() if (b := store.board(d)) is not None]
        logins += [store.integrator(name) for name in store.integrators()]
        try:
            before = passwd.parse_file((self.root / PASSWD).read_text())
        except FileNotFoundError:
            before = {}
        except (OSError, passwd.PasswdError):
            before = {}  # unreadable or damaged: every password is hashed again
        hashes = {user: before[user] if user in before and user not in changed else passwd.hash_password(password)
                  for user, password in logins}
        write_atomic(self.root / PASSWD, passwd.format_file(hashes).encode(), mode=0o600)
        acl = broker.acl_text(store.site, store.hubs(), store.devices(), store.integrators())
        write_atomic(self.root / ACL, acl.encode())


# -------------------------------------------------------------------------------- one-step helpers


def add_board(root: Path, device: str) -> BoardIdentity:
    """Provision a new device; its identity."""
    return add_boards(root, [device])[0]


def add_boards(root: Path, devices: Sequence[str], places: Mapping[str, Place] | None = None,
               ) -> list[BoardIdentity]:
    """Provision new devices at once (a fleet: the broker files are written once); their identities.
    `places`: device -> (district, lat, lon) recorded with them."""
    with open_store(root) as session:
        if len(set(devices)) != len(devices):
            raise ProvisionError("DEVICE: a device is named twice")
        identities = [session.new_board(device) for device in devices]
        session.save_boards(identities, places)
        return identities


def place_board(root: Path, device: str, district: str | None, lat: float | None, lon: float | None,
                ) -> TrustStore:
    """Record a provisioned device's district and coordinates (None: keep the store's)."""
    with open_store(root) as session:
        return session.place_board(device, district, lat, lon)


def rotate_board(root: Path, device: str) -> BoardIdentity:
    """New password and command key for one device (generation + 1); the others are untouched."""
    with open_store(root) as session:
        identity = session.rotated_board(device)
        session.save_board(identity)
        return identity


def revoke_board(root: Path, device: str) -> None:
    """Remove one device from the store and the broker's files."""
    with open_store(root) as session:
        session.revoke_board(device)


def add_hub(root: Path, name: str, *, rotate: bool = False) -> tuple[str, str]:
    """A new hub identity (or, rotate=True, a new password for one); (user, password)."""
    with open_store(root) as session:
        identity = session.new_hub(name, rotate=rotate)
        session.save_hub(identity)
        return identity


def add_integrator(root: Path, name: str, *, rotate: bool = False) -> tuple[str, str]:
    """A new integrator identity, a read-only login to the northbound feed (or, rotate=True, a new password
    for one); (user, password)."""
    with open_store(root) as session:
        identity = session.new_integrator(name, rotate=rotate)
        session.save_integrator(identity)
        return identity


def revoke_integrator(root: Path, name: str) -> None:
    """Remove one integrator identity from the store and the broker's files."""
    with open_store(root) as session:
        session.revoke_integrator(name)


def write_rabbitmq(store: TrustStore, out: Path) -> dict[str, Any]:
    """Write the store's RabbitMQ definitions (every hub, board and integrator: hub.trust.rabbit) to `out`,
    atomically and mode 600 (they hold password hashes); the definitions written."""
    doc = rabbit.store_definitions(store)
    write_atomic(out, rabbit.definitions_bytes(doc), mode=0o600)
    return doc
