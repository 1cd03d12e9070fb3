"""The real firmware, precompiled, under `micropython` against a real mosquitto, watched from CPython.

Covers issue 3's "must show" list: telemetry the protocols codec decodes, a retained birth, the last will on a
killed board, a 20 s broker outage with every sequence number delivered once and in order, a buffer overflow
that drops the oldest and reports it, safe mode, and brokers that misbehave.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests._plugins.trust import SITE
from tests.firmware.boards import Board, Watcher, board_config, health

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]


def _seqs(watcher: Watcher, boot: int = 0) -> list[int]:
    return [m.seq for m in watcher.telemetry() if m.boot == boot]


def _once(seqs: list[int], outages: int) -> list[int]:
    """seqs without the retransmissions QoS 1 allows: at most one per outage, the message in flight when
    the broker went away (delivered, but its PUBACK never came back); the hub drops them by (boot, seq)."""
    unique: list[int] = []
    for s in seqs:
        if s not in unique:
            unique.append(s)
    assert len(seqs) - len(unique) <= outages, "more duplicates than outages in %s" % seqs
    return unique


def _assert_healthy_console(board: Board) -> None:
    out = board.output()
    assert "MemoryError" not in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def test_telemetry_birth_and_last_will(mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-basic")
    board = Board(tmp_path / "board", board_config(mosquitto)).start()
    try:
        watcher.wait_for(lambda: len(watcher.telemetry()) >= 20, 20, "20 telemetry messages", board)
        telemetry = watcher.telemetry()
        assert {m.sensor for m in telemetry} >= {"air1", "power"}
        air = next(m for m in telemetry if m.sensor == "air1")
        assert [q for q, _, _ in air.readings] == ["pm25", "pm10", "co2"]
        assert all(m.ts > 1_700_000_000_000 for m in telemetry)
        births = [s for s, _ in watcher.statuses() if s.state == "online"]
        assert births
        assert births[0].caps is not None
        assert births[0].caps["actuators"] == {
            "fan1": {"kind": "pwm", "min": 0, "max": 100, "failsafe": 20, "unit": "%"}
        }
        watcher.wait_for(lambda: health(watcher), 10, "a health report", board)
        assert set(health(watcher)[0]) >= {"uptime", "heap_free", "heap_max_block", "buffered", "dropped",
                                           "resets", "reconnects", "sensor_faults"}
        # a newcomer gets the birth as a retained message
        late = Watcher(mosquitto, "w-late", f"qala/{SITE}/t1/status", clean=True)
        late.wait_for(late.statuses, 10, "the retained birth")
        status, retained = late.statuses()[0]
        assert (status.state, retained) == ("online", True)
        late.close()
        _assert_healthy_console(board)
        board.kill()
        watcher.wait_for(lambda: watcher.statuses()[-1][0].state == "offline", 30, "the last will", board)
    finally:
        board.kill()
        watcher.close()


@pytest.mark.slow
def test_broker_outage_every_sequence_number_once_in_order(mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-outage")
    board = Board(tmp_path / "board", board_config(mosquitto)).start()
    try:
        watcher.wait_for(lambda: len(_seqs(watcher)) >= 10, 20, "telemetry before the outage", board)
        mosquitto.stop()
        before = len(_seqs(watcher))
        time.sleep(20)
        mosquitto.start()
        # the board reconnects by itself and drains its backlog
        watcher.wait_for(lambda: any(h["reconnects"] >= 1 and h["buffered"] == 0 for h in health(watcher)), 60,
                         "a health report after the backlog drained", board)
        board.kill()
        time.sleep(1)
        seqs = _once(_seqs(watcher), 1)
        assert len(seqs) > before + 100  # 20 s at 7 messages a second arrived after the outage
        assert seqs == list(range(len(seqs))), "gaps or reordering in %s" % seqs
        assert "connection lost" in board.output()
        _assert_healthy_console(board)
    finally:
        board.kill()
        watcher.close()


def test_overflow_drops_oldest_and_reports_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-overflow")
    config = board_config(mosquitto, buffer={"ram": 4, "file": 20, "replay_ms": 5, "confirm": False})
    board = Board(tmp_path / "board", config).start()
    try:
        watcher.wait_for(lambda: len(_seqs(watcher)) >= 5, 20, "telemetry before the outage", board)
        mosquitto.stop()
        last_before = max(_seqs(watcher))
        time.sleep(6)  # ~45 messages for a buffer of 20
        mosquitto.start()
        watcher.wait_for(
            lambda: any(h["dropped"] > 0 and h["reconnects"] >= 1 and h["buffered"] == 0 for h in health(watcher)),
            30, "a health report with dropped readings after the backlog drained", board)
        time.sleep(1)
        assert board.alive
        seqs = _once(_seqs(watcher), 1)
        assert seqs == sorted(seqs)  # in order
        missing = sorted(set(range(max(seqs))) - set(seqs))
        # one run of the oldest readings of the outage is gone (the one in flight when the broker went away
        # may still arrive before it: the client had it)...
        assert missing
        assert last_before < missing[0] <= last_before + 2
        # ...except records that were in flight while the buffer dropped them: the broker had them, so they
        # arrive although the one after them (the oldest one left) was dropped. How many depends on how many
        # publishes of the replay took longer than a sample interval (three on a loaded CI machine), so the
        # test bounds them by the run, not by a count: most of the run is gone, and the count below is exact.
        delivered_inside = [s for s in seqs if missing[0] < s < missing[-1]]
        assert len(delivered_inside) < len(missing) / 2, "missing %s, seqs %s" % (missing, seqs)
        assert set(missing) | set(delivered_inside) == set(range(missing[0], missing[-1] + 1))
        # ...and, once the backlog has drained, the report says exactly how many: a record dropped while in
        # flight and then acknowledged is taken off the count
        drained = [h for h in health(watcher) if h["reconnects"] >= 1 and h["buffered"] == 0]
        dropped = drained[-1]["dropped"]
        assert dropped == len(missing), "missing %s, dropped %s, seqs %s\n%s" % (
            missing, [h["dropped"] for h in health(watcher)], seqs, board.output()[-3000:])
        _assert_healthy_console(board)
    finally:
        board.kill()
        watcher.close()


def test_restart_keeps_unsent_readings(mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-restart")
    board = Board(tmp_path / "board", board_config(mosquitto))
    board.start()
    try:
        watcher.wait_for(lambda: len(_seqs(watcher)) >= 5, 20, "telemetry", board)
        mosquitto.stop()
        time.sleep(2)
        board.kill()  # a power cut during the outage
        mosquitto.start()
        board.start()
        watcher.wait_for(lambda: len(_seqs(watcher, 1)) >= 5, 30, "telemetry of the second boot", board)
        time.sleep(1)
        first = _once(_seqs(watcher, 0), 1)
        assert first == list(range(len(first)))
        assert len(first) > 12  # the readings sampled while the broker was down came after the reset
    finally:
        board.kill()
        watcher.close()


def test_bad_config_puts_the_board_in_safe_mode(mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-safe")
    config = board_config(mosquitto)
    config["sensors"]["air1"]["interval"] = "fast"
    board = Board(tmp_path / "board", config).start()
    try:
        watcher.wait_for(watcher.statuses, 20, "a status message", board)
        status, _ = watcher.statuses()[0]
        assert status.state == "safe"
        late = Watcher(mosquitto, "w-safe-late", f"qala/{SITE}/t1/status", clean=True)
        late.wait_for(late.statuses, 10, "the retained safe status")
        assert (late.statuses()[0][0].state, late.statuses()[0][1]) == ("safe", True)
        late.close()
        assert status.error == "config: sensors.air1.interval: must be a number, got 'fast'"
        assert "safe mode: config: sensors.air1.interval" in board.output()
        assert not watcher.telemetry()
        assert board.alive
    finally:
        board.kill()
        watcher.close()


def test_unreadable_config_reports_on_the_console(tmp_path: Path) -> None:
    board = Board(tmp_path / "board", "{not json").start()
    try:
        deadline = time.monotonic() + 10
        while "safe mode" not in board.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "safe mode: config: " in board.output()
        assert "is not valid JSON" in board.output()
        assert board.alive
    finally:
        board.kill()


class _BadBroker:
    """Misbehaves on the first connections; from the fifth on, proxies to the real broker (FakeProxyBroker)."""

    SCENARIOS = ("refuse", "close-mid-packet", "garbage", "huge", "proxy")

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.sockets.append(conn)
            scenario = self.SCENARIOS[min(self.connections, len(self.SCENARIOS) - 1)]
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, scenario), daemon=True).start()

    def _handle(self, conn: socket.socket, scenario: str) -> None:
        try:
            conn.recv(1024)  # the CONNECT
            if scenario == "refuse":
                conn.sendall(b"\x20\x02\x00\x05")  # CONNACK: not authorised
                time.sleep(0.5)
            elif scenario == "close-mid-packet":
                conn.sendall(b"\x20\x02\x00")  # a CONNACK cut short
            elif scenario == "garbage":
                conn.sendall(b"\x20\x02\x00\x00" + b"\xf0\x00\xde\xad\xbe\xef")  # accepted, then nonsense
                time.sleep(0.5)
            elif scenario == "huge":
                conn.sendall(b"\x20\x02\x00\x00" + b"\x30\xff\xff\xff\x7f")  # a 256 MB PUBLISH announced
                time.sleep(0.5)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.server.close()
        for s in self.sockets:
            s.close()


def test_misbehaving_brokers_are_survived(plain_mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Plain mode on purpose: the bad brokers are packet-level faults written by a proxy, which TLS would keep
    out; the client parses the same packets over TLS."""
    mosquitto = plain_mosquitto
    fake = FakeBroker(mosquitto.port)
    watcher = Watcher(mosquitto, "w-bad")
    config = board_config(mosquitto)
    config["mqtt"]["port"] = fake.port
    config["sensors"]["air1"]["options"] = {"fault_every": 4}
    board = Board(tmp_path / "board", config).start()
    try:
        watcher.wait_for(lambda: len(watcher.telemetry()) >= 10, 60, "telemetry through the proxy", board)
        watcher.wait_for(lambda: any(h["sensor_faults"] > 0 for h in health(watcher)), 10, "sensor faults", board)
        out = board.output()
        assert "connection refused, CONNACK code 5" in out
        assert "EOFError: broker closed the connection" in out
        assert "unexpected packet type 15" in out
        assert "over max_packet" in out
        assert "PUBACK for unknown packet id 999 ignored" in out
        assert "sensor air1: read failed: OSError: simulated fault" in out
        assert board.alive
        _assert_healthy_console(board)
        seqs = _seqs(watcher)
        assert seqs == list(range(len(seqs)))  # nothing lost (nor repeated) through the bad brokers
    finally:
        board.kill()
        watcher.close()
        fake.close()


class FakeBroker(_BadBroker):
    """_BadBroker whose last scenario forwards the board's own CONNECT to the real broker, then everything."""

    def _handle(self, conn: socket.socket, scenario: str) -> None:
        if scenario != "proxy":
            super()._handle(conn, scenario)
            return
        try:
            connect = conn.recv(1024)
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets.append(up)
            up.sendall(connect)
            connack = up.recv(4)
            conn.sendall(connack + b"\x40\x02\x03\xe7")  # a PUBACK for an id the board never used

            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(4096):
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    for s in (src, dst):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass

            threading.Thread(target=pump, args=(up, conn), daemon=True).start()
            pump(conn, up)
        except OSError:
            pass
        finally:
            conn.close()
