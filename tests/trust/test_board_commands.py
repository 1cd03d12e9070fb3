"""A real board (the firmware under `micropython`) on a provisioned broker: only signed, fresh commands move it,
and it talks only to a broker whose certificate chains to its site CA and names the host it dialled.

Commands are published straight to the broker by a client with the hub's role (a stolen hub password, or a
second hub): the board itself must refuse whatever the hub's key did not sign for it, and say why in a
signed ack. The acks are read with the board's key here, as the hub reads them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest

from protocols import payloads, topics
from tests._plugins.trust import SITE, login, provision_site, store_of
from tests.firmware.boards import Board, Watcher, board_config

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto
    from tests._plugins.services import ServiceFactory

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

DEVICE = "t2"
ACTUATORS = {"fan1": {"kind": "pwm", "pin": 4, "unit": "%", "min": 0, "max": 100, "failsafe": 20}}
YEAR_2099 = 4_070_908_800_000


def _config(broker: Mosquitto, **overrides: Any) -> dict[str, Any]:
    cfg = board_config(broker, DEVICE, actuators=ACTUATORS, **overrides)
    cfg["sensors"] = {"air1": {"driver": "sim", "interval": 1, "quantities": ["pm25"]}}
    return cfg


class Commander:
    """A hub-role client that publishes cmd payloads for the board and reads its acks with the board's key."""

    def __init__(self, broker: Mosquitto) -> None:
        store = store_of(broker)
        assert store is not None
        key = store.cmd_key(DEVICE)
        assert key is not None
        self.key = key
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        login(self.client, broker)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.topic = topics.build(SITE, DEVICE, topics.CMD)

    def send(self, payload: bytes) -> None:
        self.client.publish(self.topic, payload, qos=1).wait_for_publish(10)

    def cmd(self, cmd_id: str, value: float, n: int, *, key: bytes | None = None, expires: int | None = None) -> bytes:
        now = int(time.time() * 1000)
        return payloads.encode_cmd(key or self.key, SITE, DEVICE, cmd_id, "fan1", value, now,
                                   now + 30_000 if expires is None else expires, n)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _acks(watcher: Watcher, key: bytes) -> dict[str, payloads.Ack]:
    """Each command id's latest ack, every one checked against the board's key (a forgery would raise)."""
    out = {}
    for topic, payload, _ in watcher.snapshot():
        if topic.endswith("/ack"):
            ack = payloads.decode_ack(payload, key, SITE, DEVICE)
            out[ack.id] = ack
    return out


def _ack_count(watcher: Watcher) -> int:
    return sum(1 for topic, _, _ in watcher.snapshot() if topic.endswith("/ack"))


def test_the_board_acts_only_on_signed_fresh_commands(mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-cmds", f"qala/{SITE}/{DEVICE}/#")
    board = Board(tmp_path / "board", _config(mosquitto)).start()
    commander = Commander(mosquitto)
    key = commander.key
    n0 = int(time.time() * 1000)
    try:
        watcher.wait_for(lambda: any(s.state == "online" for s, _ in watcher.statuses()), 30, "the birth", board)
        now = int(time.time() * 1000)
        exp = now + 30_000
        commander.send(f'{{"v":1,"id":"c-v1","act":"fan1","val":90,"ts":{now},"exp":{exp}}}'.encode())
        commander.send(f'{{"v":2,"id":"c-nosig","act":"fan1","val":91,"ts":{now},"exp":{exp},"n":{n0}}}'.encode())
        commander.send(commander.cmd("c-wrongkey", 92, n0, key=bytes(32)))
        other = store_of(mosquitto)
        assert other is not None
        commander.send(commander.cmd("c-otherkey", 93, n0, key=other.cmd_key("t1")))  # another board's key
        commander.send(commander.cmd("c-2099", 94, n0 + 1, expires=YEAR_2099))
        valid = commander.cmd("c-valid", 60, n0 + 10)
        commander.send(valid)
        commander.send(commander.cmd("c-older", 70, n0 + 5))  # signed, but its n is below the one accepted
        expected = {"c-v1", "c-nosig", "c-wrongkey", "c-otherkey", "c-2099", "c-valid", "c-older"}
        watcher.wait_for(lambda: set(_acks(watcher, key)) >= expected, 30, "an ack of each command", board)
        acks = _acks(watcher, key)
        assert (acks["c-v1"].status, acks["c-v1"].reason) == ("rejected", "unsigned command")
        assert (acks["c-nosig"].status, acks["c-nosig"].reason) == ("rejected", "unsigned command")
        assert (acks["c-wrongkey"].status, acks["c-wrongkey"].reason) == ("rejected", "bad signature")
        assert (acks["c-otherkey"].status, acks["c-otherkey"].reason) == ("rejected", "bad signature")
        assert acks["c-2099"].status == "rejected"
        assert acks["c-2099"].reason is not None
        assert "more than this board's commands.max_ttl 600 s" in acks["c-2099"].reason
        assert (acks["c-valid"].status, acks["c-valid"].value, acks["c-valid"].n) == ("applied", 60, n0 + 10)
        assert (acks["c-older"].status, acks["c-older"].reason) == (
            "rejected", f"replayed: counter n={n0 + 5} is not above the last accepted {n0 + 10}")
        out = board.output()
        assert out.count("actuator fan1 -> ") == 2  # the fail-safe at boot, then c-valid only
        assert "actuator fan1 -> 60" in out

        # the same signed message again at once: answered with the same ack, not applied again
        before = _ack_count(watcher)
        commander.send(valid)
        watcher.wait_for(lambda: _ack_count(watcher) > before, 20, "the repeated command's ack", board)
        assert "cmd c-valid repeated" in board.output()
        assert board.output().count("actuator fan1 -> 60") == 1

        # after a restart the board has forgotten its recent commands but not its counter: a replay is refused
        board.stop()
        board.start()
        watcher.wait_for(lambda: board.output().count("board t-site/t2 boot") >= 2, 30, "the restart", board)
        before = _ack_count(watcher)
        commander.send(valid)
        watcher.wait_for(lambda: _ack_count(watcher) > before, 30, "the replay's ack", board)
        assert (_acks(watcher, key)["c-valid"].status, _acks(watcher, key)["c-valid"].reason) == (
            "rejected", f"replayed: counter n={n0 + 10} is not above the last accepted {n0 + 10}")
        assert list((tmp_path / "board").rglob("cmd_n"))  # kept on flash
        commander.send(commander.cmd("c-next", 45, n0 + 11))
        watcher.wait_for(lambda: "c-next" in _acks(watcher, key), 20, "c-next's ack", board)
        assert _acks(watcher, key)["c-next"].status == "applied"
        assert "Traceback" not in board.output()
    finally:
        commander.close()
        board.stop()
        watcher.close()


def test_the_board_refuses_a_broker_of_another_ca_or_another_name(
    mosquitto: Mosquitto, mosquitto_factory: ServiceFactory[Mosquitto], tmp_path: Path
) -> None:
    """The board carries the session site's CA; one broker shows a certificate of another site's CA (a broker
    set up by someone else), the other is the right broker dialled by a name its certificate lacks."""
    stranger = provision_site(tmp_path / "stranger-store", [DEVICE])
    other_ca = mosquitto_factory(store=stranger.root)
    wrong_ca = _config(other_ca)
    store = store_of(mosquitto)
    assert store is not None
    wrong_ca["mqtt"]["ca"] = str(store.ca_file)  # the board's own site CA, as provisioned
    wrong_name = _config(mosquitto)
    wrong_name["mqtt"]["server_hostname"] = "attacker.example"
    watchers = [Watcher(other_ca, "w-other-ca"), Watcher(mosquitto, "w-wrong-name")]
    boards = [Board(tmp_path / "b-ca", wrong_ca).start(), Board(tmp_path / "b-name", wrong_name).start()]
    try:
        for board in boards:
            deadline = time.monotonic() + 30
            while board.output().count("TLS: broker") < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        ca_out, name_out = (b.output() for b in boards)
        assert "mqtt: connect to 127.0.0.1" in ca_out
        assert "TLS: broker localhost refused:" in ca_out, ca_out[-2000:]
        assert "TLS: broker attacker.example refused:" in name_out, name_out[-2000:]
        assert all("connected to" not in b.output() for b in boards)
        assert all(not w.snapshot() for w in watchers)  # nothing was published on either broker
        assert all(b.alive for b in boards)  # refused, retrying with backoff: not crashed
    finally:
        for board in boards:
            board.stop()
        for watcher in watchers:
            watcher.close()
