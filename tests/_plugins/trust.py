"""Pytest fixtures and helpers for the trust model (issue 13): provisioned stores, and clients that log in.

The tests' brokers are provisioned ones by default (tests/_plugins/services.py: `mosquitto`): TLS verified
against a site CA, passwords, the ACL, client ids tied to users. A test that wants the plain mode asks for
`plain_mosquitto` (or `mosquitto_factory(plain=True)`) and says why.

Fixtures:
- test_store: one store for the whole session, site SITE ("t-site"): hub identities `main` and TEST_HUBS, the
  test observers OBSERVERS, and the boards FLEET (dev-0000..dev-0999 and the firmware tests' t1, b1, ...).
  Read-only: a test that changes a store makes its own (`site_store` or `provision_site`).
- site_store: a store of the test's own in tmp_path/store (hub main, boards BOARDS); secure_mosquitto, a
  broker configured from it; secure_client(user, password, ...) -> a connected client of that broker.

Helpers:
- `provision_site(root, devices, site)`: a new store anywhere.
- `login(client, broker, identity=None)`: make a paho client speak to a broker: on a provisioned broker TLS
  (verified against its store's CA) and the password of a hub-role identity (the next free OBSERVERS entry
  of that broker unless `identity` is given); nothing on a plain broker. Test publishers and watchers stand
  in for many boards at once, so they log in with the hub's role; the board ACL itself is tested with board
  logins in tests/trust/.
- `tls_client(broker, user, password, ...)`: a connected paho client, ConnectRefused if refused.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.trust import provision
from hub.trust.store import TrustStore
from simulators.services import Mosquitto
from tests._plugins.services import running

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

SITE = "t-site"
BOARDS = ("dev-0000", "dev-0001", "dev-0002")
FLEET = (*(f"dev-{i:04d}" for i in range(1000)), "t1", "t2", "t3", "t9", "b1", "b-01", "mb1", "fw-01", "pty-01",
         "co2box")
TEST_HUBS = ("hub-1", "hub-2", "hub-3")
OBSERVERS = tuple(f"obs-{i}" for i in range(1, 17))

_stores: dict[Path, TrustStore] = {}
_next_observer: dict[int, Iterator[str]] = {}


def provision_site(root: Path, devices: Iterable[str] = BOARDS, site: str = SITE,
                   hubs: Iterable[str] = OBSERVERS[:4]) -> TrustStore:
    """A new store in root: hub `main`, the given hubs (by default four observers, for `login`) and boards."""
    provision.init_store(root, site)
    devices = list(devices)
    if devices:
        provision.add_boards(root, devices)
    for name in hubs:
        provision.add_hub(root, name)
    return TrustStore.load(root)


@pytest.fixture(scope="session")
def test_store(tmp_path_factory: pytest.TempPathFactory) -> TrustStore:
    """The session's store (site SITE): hubs main + TEST_HUBS, observers OBSERVERS, boards FLEET."""
    return provision_site(tmp_path_factory.mktemp("trust") / "store", FLEET, hubs=TEST_HUBS + OBSERVERS)


def store_of(broker: Mosquitto) -> TrustStore | None:
    """The loaded store of a provisioned broker (cached), None for a plain one."""
    if broker.store is None:
        return None
    if broker.store not in _stores:
        _stores[broker.store] = TrustStore.load(broker.store)
    return _stores[broker.store]


def client_context(broker: Mosquitto) -> ssl.SSLContext:
    """TLS that verifies a provisioned broker: its store's CA, the name 127.0.0.1 (every store's certificate
    carries it)."""
    assert broker.ca_file is not None, "a provisioned broker, started"
    return ssl.create_default_context(cafile=str(broker.ca_file))


def login(client: paho.Client, broker: Mosquitto, identity: str | None = None) -> str | None:
    """TLS and a hub-role login on a provisioned broker (see the module docstring); the identity used."""
    store = store_of(broker)
    if store is None:
        return None
    if identity is None:
        names = _next_observer.setdefault(id(broker), iter(OBSERVERS))
        identity = next(names, None)
        assert identity is not None, f"more than {len(OBSERVERS)} test clients on one broker"
    user, password = store.hub(identity)
    client.username_pw_set(user, password)
    client.tls_set_context(client_context(broker))
    return identity


@pytest.fixture
def site_store(tmp_path: Path) -> TrustStore:
    """A provisioned store (site SITE, hub main, boards BOARDS) in tmp_path/store."""
    return provision_site(tmp_path / "store")


@pytest.fixture
def secure_mosquitto(tmp_path: Path, site_store: TrustStore) -> Iterator[Mosquitto]:
    """A started broker with the site store's policy (TLS, passwd, acl); stopped after the test."""
    with running(Mosquitto(tmp_path / "secure-mosquitto", store=site_store.root)) as broker:
        yield broker


class ConnectRefused(RuntimeError):  # noqa: N818 - what the test checks for
    """The broker answered CONNECT with a refusal (reason in .reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"CONNECT refused: {reason}")
        self.reason = reason


def tls_client(
    broker: Mosquitto,
    user: str | None,
    password: str | None,
    *,
    client_id: str = "",
    clean: bool = True,
    ca_file: Path | None = None,
    timeout: float = 10.0,
    on_message: Any = None,
) -> paho.Client:
    """A connected paho client (MQTT 3.1.1, its loop running) over TLS; ConnectRefused if the broker says no.

    The broker is verified against ca_file (default: the broker's store's CA) and its address, 127.0.0.1,
    which every store's broker certificate names.
    """
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                         protocol=paho.MQTTv311)
    client.max_inflight_messages_set(1000)
    if user is not None:
        client.username_pw_set(user, password)
    context = ssl.create_default_context(cafile=str(ca_file or broker.ca_file))
    client.tls_set_context(context)
    done = threading.Event()
    answer: list[paho.ReasonCode] = []

    def on_connect(_c: Any, _u: Any, _f: Any, rc: paho.ReasonCode, _p: Any = None) -> None:
        answer.append(rc)
        done.set()

    def on_disconnect(*_args: Any) -> None:
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    if on_message is not None:
        client.on_message = on_message
    client.connect_async(broker.host, broker.port)
    client.loop_start()
    if not done.wait(timeout) or not answer or answer[0].is_failure:
        client.loop_stop()
        with contextlib.suppress(Exception):
            client.disconnect()
        raise ConnectRefused(str(answer[0]) if answer else "no CONNACK (connection closed or timed out)")
    return client


@pytest.fixture
def secure_client(secure_mosquitto: Mosquitto) -> Iterator[Any]:
    """secure_client(user, password, **tls_client options) -> a connected client of secure_mosquitto."""
    clients: list[paho.Client] = []

    def make(user: str | None, password: str | None, **options: Any) -> paho.Client:
        client = tls_client(secure_mosquitto, user, password, **options)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.disconnect()
            client.loop_stop()

