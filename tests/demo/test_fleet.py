"""`qala sim fleet`: argument errors, and a short light-mode run whose payloads decode with protocols/."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from hub.trust.store import TrustStore
from protocols import payloads, topics
from simulators import fleet
from tests._plugins.trust import provision_site
from tests.firmware.boards import Watcher

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto
    from tests._plugins.services import ServiceFactory

QALA = [sys.executable, "-m", "hub"]


def qala(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QALA, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:1883", ("127.0.0.1", 1883)),
    ("broker.lan:8883", ("broker.lan", 8883)),
    ("[::1]:1883", ("::1", 1883)),
])
def test_parse_broker(text: str, expected: tuple[str, int]) -> None:
    assert fleet.parse_broker(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("localhost", "expected HOST:PORT"),
    (":1883", "expected HOST:PORT"),
    ("host:mqtt", "must be a number"),
    ("host:0", "must be 1..65535"),
    ("host:70000", "must be 1..65535"),
])
def test_parse_broker_refuses(text: str, message: str) -> None:
    with pytest.raises(fleet.FleetError, match=message):
        fleet.parse_broker(text)


@pytest.mark.parametrize(("args", "message"), [
    (["--boards", "2", "--rate", "1", "--broker", "127.0.0.1:1883"], "give --store STORE"),
    (["--boards", "2", "--rate", "1", "--broker", "127.0.0.1:1883", "--store", "/nowhere"],
     "--store: /nowhere: not a provisioning store"),
    (["--boards", "2", "--rate", "1", "--broker", "127.0.0.1:1883", "--store", "/s", "--plain"], "not allowed with"),
    (["--boards", "0", "--rate", "1", "--broker", "127.0.0.1:1883"], "--boards: must be at least 1"),
    (["--boards", "x", "--rate", "1", "--broker", "127.0.0.1:1883"], "--boards: expected a whole number"),
    (["--boards", "2", "--rate", "-1", "--broker", "127.0.0.1:1883"], "--rate: must be a positive number"),
    (["--boards", "2", "--rate", "nan", "--broker", "127.0.0.1:1883"], "--rate: must be a positive number"),
    (["--boards", "2", "--rate", "1", "--broker", "127.0.0.1:1883", "--duration", "0"],
     "--duration: must be a positive number"),
    (["--boards", "2", "--rate", "1"], "the following arguments are required: --broker"),
    (["--boards", "2", "--rate", "1", "--broker", "nohostport"], "--broker: expected HOST:PORT"),
    (["--boards", "2", "--rate", "1", "--broker", "h:99999"], "--broker: the port must be 1..65535"),
    (["--boards", "2", "--rate", "1", "--broker", "h:1883", "--site", "bad site"], "site"),
    (["--boards", "500", "--rate", "1", "--broker", "h:1883"], "use --light"),
])
def test_fleet_argument_errors(args: list[str], message: str) -> None:
    if "--boards" in args and args[args.index("--boards") + 1] != "2":
        args = [*args, "--plain"]  # the argument under test, on a lab bench
    done = qala("sim", "fleet", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr


def test_a_fleet_needs_its_boards_provisioned(tmp_path: Path) -> None:
    store = provision_site(tmp_path / "store", [fleet.board_name(0)[0]], site="load-1")
    done = qala("sim", "fleet", "--light", "--boards", "3", "--rate", "1", "--broker", "127.0.0.1:1",
                "--store", str(store.root))
    assert done.returncode == 2
    assert "2 of the fleet's boards are not provisioned" in done.stderr
    assert "add --provision" in done.stderr
    done = qala("sim", "fleet", "--light", "--boards", "3", "--rate", "1", "--broker", "127.0.0.1:1",
                "--store", str(store.root), "--site", "other")
    assert "--site other: the store" in done.stderr
    done = qala("sim", "fleet", "--light", "--boards", "3", "--rate", "1", "--broker", "127.0.0.1:1",
                "--store", str(store.root), "--provision", "--duration", "1")
    assert "provisioned 2 boards" in done.stdout  # then no broker on port 1: a one-line error, no traceback
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert TrustStore.load(store.root).devices() == {fleet.board_name(i)[0] for i in range(3)}


@pytest.mark.integration
def test_light_fleet_publishes_what_the_firmware_publishes(
    mosquitto_factory: ServiceFactory[Mosquitto], tmp_path: Path
) -> None:
    store = provision_site(tmp_path / "store", [fleet.board_name(i)[0] for i in range(4)], site="load-1")
    mosquitto = mosquitto_factory(store=store.root)
    watcher = Watcher(mosquitto, "fleet-test-watch", clean=True)
    try:
        watcher.wait_for(watcher.client.is_connected, 10, "the watcher's connection")
        done = qala("sim", "fleet", "--light", "--boards", "4", "--rate", "5", "--duration", "3",
                    "--broker", f"127.0.0.1:{mosquitto.port}", "--store", str(store.root))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.returncode == 0, done.stdout + done.stderr
        assert "done, sent" in done.stdout
        watcher.wait_for(lambda: len(watcher.telemetry()) >= 4 * 10, 10, "telemetry from the fleet")
        messages = watcher.snapshot()
    finally:
        watcher.close()
    devices = {fleet.board_name(i)[0] for i in range(4)}
    seen: dict[str, list[payloads.Telemetry]] = {}
    for topic, body, _retain in messages:
        site, device, kind = topics.parse(topic)
        assert site == "load-1"
        assert device in devices
        if kind == topics.TELEMETRY:
            seen.setdefault(device, []).append(payloads.decode_telemetry(body))
    assert set(seen) == devices
    for device, telemetry in seen.items():
        assert [m.seq for m in telemetry] == list(range(len(telemetry))), device  # QoS 1, in order, no gaps
        assert len(telemetry) >= 10
    births = [payloads.decode_status(b) for t, b, _ in messages if t.endswith("/status") and b]
    online = [s for s in births if s.state == "online"]
    assert len(online) == 4
    assert all(s.caps["sensors"] and s.caps["actuators"] for s in online)
    assert sum(1 for s in births if s.state == "offline") == 4  # each board says goodbye at the end


@pytest.mark.integration
@pytest.mark.micropython
def test_firmware_fleet_boards_publish(mosquitto_factory: ServiceFactory[Mosquitto], tmp_path: Path) -> None:
    store = provision_site(tmp_path / "store", [fleet.board_name(i)[0] for i in range(2)], site="astana")
    mosquitto = mosquitto_factory(store=store.root)
    watcher = Watcher(mosquitto, "fleet-fw-watch", clean=True)
    try:
        watcher.wait_for(watcher.client.is_connected, 10, "the watcher's connection")
        done = qala("sim", "fleet", "--boards", "2", "--rate", "2", "--duration", "8",
                    "--broker", f"127.0.0.1:{mosquitto.port}", "--store", str(store.root))
        assert done.returncode == 0, done.stdout + done.stderr
        devices = {t.split("/")[2] for t, _, _ in watcher.snapshot()
                   if t.endswith("/telemetry")}
    finally:
        watcher.close()
    assert devices == {fleet.board_name(0)[0], fleet.board_name(1)[0]}
