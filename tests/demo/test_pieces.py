"""The demo's pieces without servers: the generated hub.toml, board configs, the progress view."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from hub import config as hub_config
from hub.demo_cli import View
from simulators import city, fleet
from simulators.services import Influxd, Mosquitto

if TYPE_CHECKING:
    from pathlib import Path

    from hub.trust.store import TrustStore


def test_generated_hub_toml_loads_with_everything_the_demo_needs(tmp_path: Path) -> None:
    demo = city.Demo(city.Options(boards=3, root=tmp_path), lambda _t: None, lambda _p: None)
    demo.folder.mkdir(parents=True)
    demo.store = demo._provision()
    demo.mosquitto = Mosquitto(tmp_path / "m", store=demo.store.root)
    demo.influxd = Influxd(tmp_path / "i")
    demo.tcp = SimpleNamespace(port=15020)  # type: ignore[assignment]
    config = hub_config.load(demo._write_hub_toml())
    assert config.site.id == city.SITE
    assert config.trust.store == demo.store.root  # secure: the store's login, TLS, signed commands
    assert config.mqtt.tls
    assert demo.store.devices() == {fleet.board_name(i)[0] for i in range(3)}
    assert city.WATCH in demo.store.hubs()
    assert config.mqtt.port == demo.mosquitto.port
    assert config.influxdb.url == demo.influxd.url
    assert config.api is not None
    assert config.api.control_token == demo.token
    assert config.api.port == demo.api_port
    assert config.modbus is not None
    assert {d.name for d in config.modbus.devices} == set(city.RTU_METERS) | set(city.TCP_METERS)
    assert all(d.district in fleet.DISTRICTS and d.lat and d.lon for d in config.modbus.devices)
    for i in range(3):  # every board placed in its district of Astana
        entry = demo.store.entry(fleet.board_name(i)[0])
        assert entry is not None
        assert (entry.district, entry.lat, entry.lon) == fleet.board_place(i)
        assert entry.district in fleet.DISTRICTS
    assert [rule.device for rule in config.rules] == [fleet.board_name(0)[0]]


@pytest.mark.parametrize("index", range(6))
def test_board_configs_pass_the_firmware_checks(index: int, test_store: TrustStore) -> None:
    device, kind = fleet.board_name(index)
    config = fleet.board_config("astana", device, kind, "127.0.0.1", 1883, seed=index)
    assert config["device"] == device
    assert len(config["actuators"]) == 1
    assert config["mqtt"]["tls"] is False  # no identity: a lab-bench board
    identity = test_store.board("dev-0000")
    secure = fleet.board_config("t-site", "dev-0000", kind, "127.0.0.1", 8883, identity=identity,
                                ca=test_store.ca_file)
    assert identity is not None
    assert secure["mqtt"]["tls"] is True
    assert secure["mqtt"]["user"] == identity.user
    assert secure["commands"]["key"] == identity.cmd_key.hex()
    assert len({fleet.board_name(i)[0] for i in range(100)}) == 100  # names never repeat


def progress(elapsed: float) -> city.Progress:
    return city.Progress(elapsed, 60, 2, 3, 4.5, 90, 300, 3, 3, 4, {"applied": 3, "rejected": 1})


def test_view_plain_lines_every_few_seconds() -> None:
    out = io.StringIO()
    view = View(out, tty=False, plain_every=3600)
    view.progress(progress(1))
    view.progress(progress(2))  # within plain_every: nothing
    view.event("setpoint x.fan1 = 60 -> applied in 40 ms")
    lines = out.getvalue().splitlines()
    assert lines == [
        ("qala demo: t=1s boards_online=2/3 readings_per_s=4.5 stored=300 meters=3/3 commands=4 "
        "outcomes=3 applied, 1 rejected"),
        "qala demo: setpoint x.fan1 = 60 -> applied in 40 ms",
    ]
    assert "\x1b" not in out.getvalue()


def test_view_redraws_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    view = View(out, tty=True)
    view.progress(progress(1))
    first = out.getvalue()
    assert "\x1b" not in first
    assert "boards online   2/3" in first
    view.progress(progress(2))
    assert out.getvalue()[len(first):].startswith(f"\x1b[{len(first.splitlines())}F\x1b[J")
    view.event("done")
    assert out.getvalue().endswith("\x1b[J" + "qala demo: done\n")


def test_the_influx_lines_the_demo_prints_run(influxd: Influxd, influxd_database: str) -> None:
    """The `influx` CLI the demo and docs/demo.md point to is installed by scripts/setup (Debian's
    influxdb-client; it was not) and every query the demo prints runs in it without an error."""
    import shlex  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    assert influxd.port is not None
    argv = shlex.split(city.influx_cli(influxd.port).replace(f"-database {city.DATABASE}",
                                                              f"-database {influxd_database}"))
    assert argv[0] == "influx"
    for what, query in city.queries(influxd.port):
        done = subprocess.run([*argv, "-execute", query], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (what, done.stdout, done.stderr)
        assert "ERR" not in done.stdout + done.stderr, (what, done.stdout, done.stderr)
