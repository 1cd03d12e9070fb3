"""The provisioned broker's policy, tried as an attacker against a real mosquitto (hub/trust/broker.py's config).

- no anonymous client, no wrong password;
- a board's login publishes only its own telemetry, status and ack, and reads only its own cmd;
- nobody but a hub publishes cmd;
- a CONNECT with the hub's client id from another login, even again and again, takes nothing of the hub's
  queued session: the hub gets every message;
- revoking one board (and SIGHUP) locks it out and leaves the others alone; rotating gives it a new password.

mosquitto 2.0.11 drops an unauthorised PUBLISH silently (a QoS 1 one is still acknowledged, so a client cannot
probe the ACL), and grants a SUBSCRIBE its acl_file forbids but delivers nothing on it (the read check is made
per message); so the tests look at what each client actually receives.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from hub.trust import provision
from hub.trust.store import TrustStore
from protocols import topics
from tests._plugins.trust import SITE, ConnectRefused, tls_client

if TYPE_CHECKING:
    import paho.mqtt.client as paho

    from simulators.services import Mosquitto

pytestmark = pytest.mark.integration

A, B = "dev-0000", "dev-0001"


class Inbox:
    """on_message for tls_client: every (topic, payload) received, thread-safe."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, _client: Any, _userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.items.append((msg.topic, bytes(msg.payload)))

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.items]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.topics()) < count and time.monotonic() < deadline:
            time.sleep(0.05)


def _subscribe(client: paho.Client, topic: str) -> list[int]:
    """SUBSCRIBE at QoS 1 and return the SUBACK's codes (0x80: refused)."""
    done = threading.Event()
    codes: list[int] = []

    def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: list[paho.ReasonCode], _p: Any) -> None:
        codes.extend(int(r.value) for r in reasons)
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    assert done.wait(10), "no SUBACK"
    return codes


def _publish(client: paho.Client, topic: str, payload: bytes = b"x") -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(10)


def _board(store: TrustStore, device: str) -> tuple[str, str]:
    identity = store.board(device)
    assert identity is not None
    return identity.user, identity.password


def test_anonymous_and_wrong_passwords_are_refused(secure_mosquitto: Mosquitto, site_store: TrustStore) -> None:
    with pytest.raises(ConnectRefused, match="Not authorized"):
        tls_client(secure_mosquitto, None, None)
    user, password = _board(site_store, A)
    with pytest.raises(ConnectRefused, match="Not authorized"):
        tls_client(secure_mosquitto, user, password + "x")
    with pytest.raises(ConnectRefused, match="Not authorized"):
        tls_client(secure_mosquitto, _board(site_store, B)[0], password)  # A's password for B's user
    hub_user, _ = site_store.hub()
    with pytest.raises(ConnectRefused, match="Not authorized"):
        tls_client(secure_mosquitto, hub_user, password)
    tls_client(secure_mosquitto, user, password).disconnect()


def test_a_board_speaks_only_for_itself_and_nobody_but_the_hub_commands(
    secure_client: Any, site_store: TrustStore
) -> None:
    hub_inbox = Inbox()
    hub = secure_client(*site_store.hub(), on_message=hub_inbox)
    assert _subscribe(hub, f"{topics.ROOT}/{SITE}/#") == [1]
    a_inbox, b_inbox = Inbox(), Inbox()
    a = secure_client(*_board(site_store, A), on_message=a_inbox)
    b = secure_client(*_board(site_store, B), on_message=b_inbox)
    _subscribe(b, topics.build(SITE, B, topics.CMD))  # its own cmd
    _subscribe(a, topics.build(SITE, B, topics.CMD))  # another board's cmd: nothing will come
    _subscribe(a, f"{topics.ROOT}/#")  # everything: only its own cmd may come
    _subscribe(a, topics.build(SITE, A, topics.CMD))

    for kind in (topics.TELEMETRY, topics.STATUS, topics.ACK):  # A as B: dropped by the broker
        _publish(a, topics.build(SITE, B, kind), b"forged by A")
    _publish(a, topics.build(SITE, B, topics.CMD), b"a command from a board")  # a board commanding another
    _publish(a, topics.build(SITE, A, topics.CMD), b"a board commanding itself")
    _publish(a, topics.build("other-site", A, topics.TELEMETRY), b"another site")
    for kind in (topics.TELEMETRY, topics.STATUS, topics.ACK):  # A as itself: delivered
        _publish(a, topics.build(SITE, A, kind), b"A's own")
    _publish(hub, topics.build(SITE, B, topics.CMD), b"the hub's command")
    hub_inbox.wait_for(4)
    b_inbox.wait_for(1)
    time.sleep(0.5)  # anything else would have arrived by now
    own = [topics.build(SITE, A, kind) for kind in (topics.TELEMETRY, topics.STATUS, topics.ACK)]
    assert sorted(hub_inbox.topics()) == sorted([*own, topics.build(SITE, B, topics.CMD)])
    assert all(payload in (b"A's own", b"the hub's command") for _, payload in hub_inbox.items)
    assert b_inbox.items == [(topics.build(SITE, B, topics.CMD), b"the hub's command")]
    assert a_inbox.items == []  # not B's cmd, not B's or its own telemetry; and its own cmd came from no hub


def test_the_hubs_client_id_from_another_login_takes_nothing(
    secure_mosquitto: Mosquitto, site_store: TrustStore
) -> None:
    """The hub's queued session survives CONNECTs with its client id (clean session) from a board's login."""
    hub_user, hub_password = site_store.hub()
    hub = tls_client(secure_mosquitto, hub_user, hub_password, client_id=hub_user, clean=False)
    assert _subscribe(hub, f"{topics.ROOT}/{SITE}/+/telemetry") == [1]
    hub.disconnect()
    hub.loop_stop()
    board = tls_client(secure_mosquitto, *_board(site_store, A))
    total = 5000
    for i in range(total):
        board.publish(topics.build(SITE, A, topics.TELEMETRY), b"%d" % i, qos=1)
        if i % 1000 == 999:  # the attack of the report: the hub's id again and again, a clean session each time
            thief = tls_client(secure_mosquitto, *_board(site_store, B), client_id=hub_user, clean=True)
            thief.disconnect()
            thief.loop_stop()
    board.publish(topics.build(SITE, A, topics.TELEMETRY), b"last", qos=1).wait_for_publish(30)
    board.disconnect()
    board.loop_stop()
    inbox = Inbox()
    hub = tls_client(secure_mosquitto, hub_user, hub_password, client_id=hub_user, clean=False, on_message=inbox)
    try:
        inbox.wait_for(total + 1, 30)
        got = [p for _, p in inbox.items]
        assert len(got) == total + 1
        assert got[-1] == b"last"
        assert {int(p) for p in got[:-1]} == set(range(total))
    finally:
        hub.disconnect()
        hub.loop_stop()


def test_revoke_and_rotate_touch_one_board_only(secure_mosquitto: Mosquitto, site_store: TrustStore) -> None:
    root = site_store.root
    old_a = _board(site_store, A)
    old_b = _board(site_store, B)
    provision.revoke_board(root, A)
    rotated = provision.rotate_board(root, B)
    secure_mosquitto.reload()  # SIGHUP: mosquitto reads passwd and acl again
    deadline = time.monotonic() + 10
    while True:
        try:
            tls_client(secure_mosquitto, *old_a, timeout=2).disconnect()
        except ConnectRefused:
            break
        assert time.monotonic() < deadline, "the revoked board could still log in"
        time.sleep(0.2)
    with pytest.raises(ConnectRefused):
        tls_client(secure_mosquitto, *old_b)  # B's old password is gone
    tls_client(secure_mosquitto, rotated.user, rotated.password).disconnect()
    assert rotated.password != old_b[1]
    assert rotated.generation == 2
    c = TrustStore.load(root).board("dev-0002")
    assert c is not None
    assert c == site_store.board("dev-0002")  # the third board: untouched
    tls_client(secure_mosquitto, c.user, c.password).disconnect()
    assert TrustStore.load(root).devices() == frozenset({B, "dev-0002"})
