"""Control end to end: the real firmware under `micropython`, real mosquitto, influxd, the hub in-process.

- a setpoint by HTTP and by `qala set` reaches the board over MQTT, is applied and acknowledged; outcome and
  latency land in InfluxDB (`qala_command`);
- out-of-limit setpoints are refused by the hub; a signed out-of-limit `cmd` straight to the broker (as by a
  second hub) is refused by the board; the same command twice is applied once; a retained command is never
  acted on (the signature checks themselves: tests/trust/test_board_commands.py);
- with the broker gone the command times out visibly and, after `failsafe_after`, the board is in its
  fail-safe state, which it reports when it reconnects;
- a CO2 rule drives the board's fan up and back down with hysteresis.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest

from protocols import payloads, topics
from tests._plugins.trust import SITE, login, store_of
from tests.control.live import ACTUATORS, TOKEN, api
from tests.firmware.boards import Board, Watcher, board_config
from tests.hub.conftest import REPO, Publisher, async_wait_until, running_hub, v1_table, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from hub.service import Hub
    from simulators.services import Influxd, Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]



def hub_toml(tmp: Path, broker: Mosquitto, influx: dict[str, Any], extra: str = "", **control: float) -> Path:
    path = write_config(tmp, broker, influx, site={"id": SITE}, api={"control_token": TOKEN, "port": 0},
                        control={"ttl": 5.0, "retries": 1, "ack_timeout": 2.0} | control)
    path.write_text(path.read_text() + extra)
    return path


def board(tmp: Path, broker: Mosquitto, **overrides: Any) -> Board:
    cfg = board_config(broker, actuators=ACTUATORS, **overrides)
    cfg["sensors"] = {"air1": {"driver": "sim", "interval": 1, "quantities": ["pm25"]}}
    return Board(tmp / "board", cfg).start()


async def born(hub: Hub, device: str = "t1") -> None:
    def ok() -> bool:
        info = hub.registry.devices.get(device)
        return info is not None and info.state == "online" and "actuators" in info.caps
    await async_wait_until(ok, 30, what=f"{device}'s birth")


def post(port: int, body: dict[str, Any], token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    return api(port, "POST", "/v1/setpoints", body, token)


def qala_set(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "set", *args, "--api", f"http://127.0.0.1:{port}", "--token", TOKEN,
         "--timeout", "20"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def acks(watcher: Watcher) -> list[payloads.Ack]:
    """The acks seen, read without their signature (the hub checks those)."""
    return [payloads.read_ack(p) for t, p, _ in watcher.snapshot() if t.endswith("/ack")]


def commands(influxd: Influxd, db: str) -> list[dict[str, Any]]:
    return influxd.points(db, 'SELECT * FROM "qala_command" GROUP BY *')


def signed_cmd(broker: Mosquitto, cmd_id: str, value: float, *, ttl_ms: int = 30_000, n: int | None = None) -> bytes:
    """A cmd for t1 signed with its key, as the hub signs them (n: the clock in ms unless given)."""
    store = store_of(broker)
    assert store is not None, "a provisioned broker"
    key = store.cmd_key("t1")
    now = int(time.time() * 1000)
    return payloads.encode_cmd(key, SITE, "t1", cmd_id, "fan1", value, now, now + ttl_ms, now if n is None else n)


def forge(broker: Mosquitto, payload: bytes, *, retain: bool = False) -> None:
    """Publish a cmd for t1 straight to the broker, as a second hub would (a hub-role login)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    login(client, broker)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    info = client.publish(topics.build(SITE, "t1", topics.CMD), payload, qos=1, retain=retain)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


async def test_setpoints_by_http_and_cli_are_applied_acked_and_audited(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str
) -> None:
    path = hub_toml(tmp_path, mosquitto, v1_table(influxd, influxd_database))
    watcher = Watcher(mosquitto, "watch-acks", f"qala/{SITE}/+/ack")
    b = board(tmp_path, mosquitto)
    try:
        async with running_hub(path) as hub:
            await born(hub)
            port = hub.api_port
            assert port
            status, body = await asyncio.to_thread(post, port, {"device": "t1", "actuator": "fan1", "value": 80,
                                                                "wait": True})
            assert status == 200, body
            assert (body["state"], body["applied"]) == ("applied", 80)
            assert "actuator fan1 -> 80" in b.output()

            done = await asyncio.to_thread(qala_set, port, "t1", "fan1", "55")
            assert done.returncode == 0, done.stderr
            assert "t1.fan1 applied" in done.stdout
            assert "actuator fan1 -> 55" in b.output()

            refused = await asyncio.to_thread(qala_set, port, "t1", "fan1", "150")
            assert refused.returncode == 1
            assert "hub: 150 above max 100" in refused.stdout
            unknown = await asyncio.to_thread(qala_set, port, "t1", "fan9", "5")
            assert unknown.returncode == 2
            assert "no actuator 'fan9'" in unknown.stderr
            status, body = await asyncio.to_thread(post, port, {"device": "t1", "actuator": "fan1", "value": 5},
                                                   "wrong-token")
            assert status == 401

            # signed commands straight to the broker: out of limits, then one command twice
            await asyncio.to_thread(forge, mosquitto, signed_cmd(mosquitto, "c-forged", 150))
            twice = signed_cmd(mosquitto, "c-twice", 40)
            await asyncio.to_thread(forge, mosquitto, twice)
            await asyncio.to_thread(forge, mosquitto, twice)
            watcher.wait_for(lambda: len([a for a in acks(watcher) if a.id == "c-twice"]) == 2, 20,
                             "two acks of c-twice", b)
            forged = next(a for a in acks(watcher) if a.id == "c-forged")
            assert (forged.status, forged.reason) == ("rejected", "150 above max 100")
            assert b.output().count("actuator fan1 -> 40") == 1
            assert "cmd c-twice repeated" in b.output()
            await async_wait_until(lambda: hub.control.counts["unknown_ack"] >= 3, 10,  # not the hub's ids
                                   what="the forged acks refused by the hub")

            # a retained command: delivered live (retain flag 0 on an established subscription, MQTT 3.1.1
            # 3.3.1.3) it is a command like any other; replayed by the broker at the next subscription (retain
            # flag 1) it is never acted on again (Tasmota #2809, #8889)
            await asyncio.to_thread(forge, mosquitto, signed_cmd(mosquitto, "c-retained", 70), retain=True)
            watcher.wait_for(lambda: "actuator fan1 -> 70" in b.output(), 20, "the live command applied", b)
            b.stop()
            b.start()
            watcher.wait_for(lambda: any(a.id == "c-retained" and a.reason == "retained command ignored"
                                         for a in acks(watcher)), 30, "the retained command's refusal", b)
            assert b.output().count("actuator fan1 -> 70") == 1

            await async_wait_until(lambda: len(commands(influxd, influxd_database)) >= 3, 20,
                                   what="the audit points")
        rows = commands(influxd, influxd_database)
        outcomes = sorted((r["quality"], r["value"], r["source"]) for r in rows)
        assert outcomes == [("applied", 55, "cli:control"), ("applied", 80, "api:control"),
                            ("rejected", 150, "cli:control")]
        assert all(r["latency_ms"] >= 0 and r["id"].startswith("c-") for r in rows)
        assert all(r["device"] == "t1" and r["sensor"] == "fan1" for r in rows)
    finally:
        b.stop()
        watcher.close()


async def test_disconnected_board_times_out_and_goes_fail_safe(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str
) -> None:
    path = hub_toml(tmp_path, mosquitto, v1_table(influxd, influxd_database), ttl=2.0, ack_timeout=1.0)
    b = board(tmp_path, mosquitto, failsafe_after=2)
    try:
        async with running_hub(path) as hub:
            await born(hub)
            cmd = hub.control.submit("t1", "fan1", 60)
            await hub.control.wait(cmd.id, 20)
            assert cmd.state == "applied"
            await asyncio.to_thread(mosquitto.stop)
            lost = hub.control.submit("t1", "fan1", 65)
            await hub.control.wait(lost.id, 20)
            assert lost.state == "timed_out"
            assert lost.reason is not None
            assert "no ack" in lost.reason
            await async_wait_until(lambda: "actuators to fail-safe" in b.output(), 20, what="the fail-safe")
            assert b.output().rstrip().endswith("actuator fan1 -> 20") or "actuator fan1 -> 20" in b.output()
            await asyncio.to_thread(mosquitto.start)

            def reported() -> bool:
                rows = influxd.points(influxd_database, 'SELECT * FROM "actuator" WHERE "quality" = \'lost\'')
                return any(r["setpoint"] == 20 and r["sensor"] == "fan1" for r in rows)
            await async_wait_until(reported, 40, what="the fail-safe report after reconnecting")
            def timed_out() -> bool:
                return any(r["quality"] == "timed_out" for r in commands(influxd, influxd_database))
            await async_wait_until(timed_out, 20, what="the time-out in InfluxDB")
            assert hub.control.last[("t1", "fan1")].value == 20
    finally:
        b.stop()


async def test_co2_rule_drives_the_fan_with_hysteresis(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str
) -> None:
    rule = ('\n[[rules]]\nname = "co2fan"\ndevice = "co2box"\nsensor = "air1"\nquantity = "co2"\nabove = 1000.0\n'
            'below = 800.0\nhold_s = 1.0\ntarget_device = "t1"\nactuator = "fan1"\nhigh = 80.0\nlow = 20.0\n')
    path = hub_toml(tmp_path, mosquitto, v1_table(influxd, influxd_database), extra=rule)
    b = board(tmp_path, mosquitto)
    pub = Publisher(mosquitto, "co2box")
    seq = iter(range(1000))

    def co2(value: float, n: int) -> None:
        for _ in range(n):
            body = payloads.encode_telemetry(next(seq), int(time.time() * 1000), 1, "air1", [("co2", value)])
            pub.publish(topics.build(SITE, "co2box", "telemetry"), body)
            pub.wait()
            time.sleep(0.3)

    def fan() -> list[tuple[float, str]]:
        return [(c.value, c.state) for c in hub.control.commands.values() if c.source == "rule:co2fan"]

    try:
        async with running_hub(path) as hub:
            caps = {"sensors": {"air1": {"driver": "sim", "q": ["co2"]}}}
            pub.publish(topics.build(SITE, "co2box", "status"),
                        payloads.encode_status("online", int(time.time() * 1000), 1, "1.0", caps), retain=True)
            await born(hub)
            await asyncio.to_thread(co2, 1200, 6)  # above 1000 for more than hold_s
            await async_wait_until(lambda: fan() == [(80, "applied")], 20, what="the fan up")
            await asyncio.to_thread(co2, 900, 6)  # inside the band: no change
            await asyncio.to_thread(co2, 1100, 2)  # above again, already high: no change
            await asyncio.to_thread(co2, 700, 6)  # below 800 for more than hold_s
            await async_wait_until(lambda: fan() == [(80, "applied"), (20, "applied")], 20, what="the fan down")
            assert "actuator fan1 -> 80" in b.output()
            assert b.output().count("actuator fan1 -> 20") == 2  # at boot (fail-safe) and by the rule
    finally:
        pub.close()
        b.stop()
