"""Helpers for the hub's tests: configs, a test publisher (paho, QoS 1), running the hub in-process or as a
subprocess, and reading back what InfluxDB / VictoriaMetrics stored.

The configs and the publisher follow the broker: with a provisioned broker (the `mosquitto` fixture's) the
hub trusts the broker's store ([trust] store, TLS, its login from the store) and the publisher logs in as a
test observer (tests/_plugins/trust.py: `login`); with a plain one, [trust] plain = true and no login."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub import config as hub_config
from hub.service import Hub
from protocols import payloads, topics
from tests._plugins.trust import login

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator

    from simulators.services import Influxd, Mosquitto, VictoriaMetrics

REPO = Path(__file__).resolve().parents[2]
SITE = "t-site"
T0 = 1_795_553_687_000  # 2026-11-24, a fixed board clock for the tests
CAPS: dict[str, object] = {"sensors": {"air1": {"driver": "sim", "q": ["pm25", "co2"]}}}


def device_name(i: int) -> str:
    return f"dev-{i:04d}"


def write_config(tmp: Path, broker: Mosquitto, influx: dict[str, Any], **sections: dict[str, Any]) -> Path:
    """A hub.toml in tmp for the broker and an [influxdb] table; extra tables/keys override defaults.

    A provisioned broker's store becomes [trust] store (hub identity `main`; trust={"hub": ...} picks
    another), a plain broker gives [trust] plain = true."""
    trust: dict[str, Any] = {"store": str(broker.store)} if broker.store is not None else {"plain": True}
    mqtt: dict[str, Any] = {"host": broker.host, "port": broker.port, "reconnect_min": 0.2, "reconnect_max": 2.0}
    if broker.store is None:
        mqtt["client_id"] = f"hub-{tmp.name}"[:60]
    tables: dict[str, dict[str, Any]] = {
        "site": {"id": SITE, "require_birth": True},
        "trust": trust,
        "mqtt": mqtt,
        "influxdb": {"timeout": 5.0, "retry_min": 0.2, "retry_max": 2.0} | influx,
        "spool": {"path": str(tmp / "state")},
        "batch": {"size": 5000, "flush_interval": 0.2},
        "metrics": {"interval": 1.0},
        "hub": {"shutdown_timeout": 10.0},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f'{key} = "{value}"')
        lines.append("")
    path = tmp / "hub.toml"
    path.write_text("\n".join(lines))
    return path


def v1_table(influxd: Influxd, database: str) -> dict[str, Any]:
    return {"api": "v1", "url": influxd.url, "database": database}


def v2_table(vm: VictoriaMetrics) -> dict[str, Any]:
    return {"api": "v2", "url": vm.url, "org": "qala", "bucket": "qala", "token": "t"}


class Publisher:
    """A paho client publishing at QoS 1 and waiting until the broker acknowledged everything."""

    def __init__(self, broker: Mosquitto, client_id: str = "test-publisher", identity: str | None = None) -> None:
        """identity: the test observer to log in as on a provisioned broker (default: the next free one)."""
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        login(self.client, broker, identity)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self._infos: list[paho.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._infos.append(self.client.publish(topic, payload, qos=qos, retain=retain))

    def birth(self, device: str, site: str = SITE) -> None:
        body = payloads.encode_status("online", ts=T0, boot=1, fw="1.0.0", caps=CAPS)
        self.publish(topics.build(site, device, "status"), body, retain=True)

    def telemetry(self, device: str, seq: int, ts: int, value: float, site: str = SITE) -> None:
        body = payloads.encode_telemetry(seq, ts, 1, "air1", [("pm25", value)])
        self.publish(topics.build(site, device, "telemetry"), body)

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for info in self._infos:
            if info.rc == paho.MQTT_ERR_SUCCESS:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._infos.clear()

    def close(self) -> None:
        self.wait()
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto)
    try:
        yield pub
    finally:
        pub.close()


def publish_fleet(
    pub: Publisher, devices: int, readings: int, start_seq: int = 0, births: bool = True, site: str = SITE
) -> None:
    """devices x readings telemetry messages (one pm25 reading each), interleaved across devices.

    Reading k of device i has ts T0 + k*1000 + i (distinct per device) and value i + k/1000.
    """
    if births:
        for i in range(devices):
            pub.birth(device_name(i), site)
    for k in range(start_seq, start_seq + readings):
        for i in range(devices):
            pub.telemetry(device_name(i), k, T0 + k * 1000 + i, i + k / 1000, site)
        if k % 10 == 9:
            pub.wait()
    pub.wait()


def influx_count(influxd: Influxd, database: str, measurement: str = "air", field: str = "pm25") -> int:
    rows = influxd.points(database, f'SELECT count("{field}") FROM "{measurement}"')
    return int(rows[0]["count"]) if rows else 0


def influx_pm25(influxd: Influxd, database: str) -> list[tuple[str, int, float]]:
    rows = influxd.points(database, 'SELECT "pm25" FROM "air" GROUP BY "device"')
    return sorted((r["device"], r["time"] // 1_000_000, r["pm25"]) for r in rows)


def expected_pm25(devices: int, readings: int) -> list[tuple[str, int, float]]:
    return sorted(
        (device_name(i), T0 + k * 1000 + i, i + k / 1000) for i in range(devices) for k in range(readings)
    )


def wait_until(predicate: Any, timeout: float, interval: float = 0.25, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is True:
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


async def async_wait_until(
    predicate: Any,
    timeout: float,  # noqa: ASYNC109 - a deadline for a polled condition, not a cancellation
    interval: float = 0.25,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(predicate)
        if last is True:
            return
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@contextlib.asynccontextmanager
async def running_hub(config_path: Path) -> AsyncIterator[Hub]:
    """A Hub in this event loop; stopped (gracefully) on exit."""
    hub = Hub(hub_config.load(config_path))
    task = asyncio.create_task(hub.run())
    await hub.ready.wait()
    # A new persistent session has no subscription until SUBACK: the broker would not queue earlier messages.
    await asyncio.to_thread(hub.broker.subscribed.wait, 20)
    try:
        yield hub
    finally:
        hub.request_stop()
        await asyncio.wait_for(task, 60)


class HubProcess:
    """`python -m hub hub run --config ...` as a subprocess, output in <config folder>/hub.log."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.log_path = config_path.with_name("hub.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub", "hub", "run", "--config", str(self.config_path)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | {"PYTHONPATH": str(REPO)},
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def hub_processes() -> Iterator[list[HubProcess]]:
    procs: list[HubProcess] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.alive():
                proc.kill()


class Background:
    """Run a blocking function in a thread (a publisher while the hub is killed, for instance)."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target, *args), daemon=True)
        self.thread.start()

    def _run(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background publisher did not finish"
        if self.error is not None:
            raise self.error


def vm_samples(vm: VictoriaMetrics, match: str) -> list[tuple[str, int, float]]:
    """(device, ts ms, value) of every raw sample VictoriaMetrics holds for a selector (duplicates kept)."""
    out = []
    for series in vm.export(match):
        device = series["metric"].get("device", "")
        out += [(device, ts, value) for ts, value in zip(series["timestamps"], series["values"], strict=True)]
    return sorted(out)


def unique(items: Iterable[Any]) -> int:
    return len(set(items))
