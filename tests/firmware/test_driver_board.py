"""A unix-port board with one of each byte-level sensor (each talking to its twin) publishing to mosquitto.

The firmware runs precompiled under `micropython`, its sensors configured as on a real board (driver, pins,
options) plus `options.twin` for the simulated device. A fifth sensor whose twin never answers shows the
rest of the board carrying on while the health report counts its faults. A second board runs the meter,
heat and VOC drivers (pulse, ds18b20, sgp40) and is killed and restarted to show the pulse count kept.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tests.firmware.boards import Board, Watcher, board_config, health

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

# the smallest heap (of 136k, 144k, 152k, 160k) that ran this board for 45 s without MemoryError (docs/hardware.md)
DRIVER_BOARD_HEAP = os.environ.get("QALA_DRIVER_HEAP", "160k")

SENSORS = {
    "pm": {"driver": "pms5003", "interval": 0.5, "quantities": ["pm1", "pm25", "pm10"],
           "pins": {"tx": 17, "rx": 16}},
    "co2": {"driver": "scd4x", "interval": 1, "quantities": ["co2", "temperature", "humidity"],
            "pins": {"sda": 21, "scl": 22}, "options": {"stop_ms": 0}},
    "climate": {"driver": "bme280", "interval": 0.5, "quantities": ["temperature", "humidity", "pressure"],
                "pins": {"sda": 21, "scl": 22}, "options": {"address": 0x76}},
    "mains": {"driver": "pzem004t", "interval": 0.5,
              "quantities": ["voltage", "current", "power_active", "energy_import", "frequency", "power_factor"],
              "pins": {"tx": 26, "rx": 25}},
    "dead": {"driver": "scd4x", "interval": 0.5, "quantities": ["co2"], "pins": {"sda": 21, "scl": 22},
             "options": {"twin": {"silent": True}}},
}


def test_every_driver_publishes_through_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-drivers")
    cfg = board_config(mosquitto, sensors=SENSORS, actuators={})
    board = Board(tmp_path / "board", cfg, heap=DRIVER_BOARD_HEAP).start()
    try:
        def seen() -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for m in watcher.telemetry():
                out.setdefault(m.sensor, set()).update(r[0] for r in m.readings)
            return out

        want = {name: set(SENSORS[name]["quantities"]) for name in ("pm", "co2", "climate", "mains")}
        watcher.wait_for(lambda: all(want[s] <= seen().get(s, set()) for s in want), 30,
                         "every quantity of every driver", board)
        watcher.wait_for(lambda: any(h.get("sensor_faults", 0) >= 3 for h in health(watcher)), 15,
                         "the dead sensor counted in health", board)
        assert "dead" not in seen()
        by_sensor = {m.sensor: m for m in watcher.telemetry()}
        climate = {r[0]: r[1] for r in by_sensor["climate"].readings}
        assert 15 < climate["temperature"] < 30
        assert 990 < climate["pressure"] < 1010
        mains = {r[0]: r[1] for r in by_sensor["mains"].readings}
        assert 225 < mains["voltage"] < 235
        assert mains["frequency"] == 50.0
        assert "MemoryError" not in board.output()
        assert "sensor dead: read failed" in board.output()
        assert board.alive
    finally:
        board.stop()
        watcher.close()


# the meter, heat and VOC drivers on a board of their own; 128k ran it for 45 s, 120k not always (docs/hardware.md)
METER_BOARD_HEAP = os.environ.get("QALA_METER_HEAP", "136k")

METERS = {
    "water": {"driver": "pulse", "interval": 0.5, "quantities": ["water_volume", "water_flow"],
              "pins": {"pulse": 27}, "options": {"litres_per_pulse": 1, "save_every": 1,
                                                 "twin": {"bouncing": True}}},
    "heat": {"driver": "ds18b20", "interval": 1, "quantities": ["heat_supply_temp", "heat_return_temp"],
             "pins": {"data": 4}},
    "voc": {"driver": "sgp40", "interval": 1, "quantities": ["voc_index"], "pins": {"sda": 21, "scl": 22}},
}


def test_meter_heat_and_voc_drivers_publish_and_the_count_survives_a_restart(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    watcher = Watcher(mosquitto, "w-meters")
    cfg = board_config(mosquitto, sensors=METERS, actuators={})
    board = Board(tmp_path / "board", cfg, heap=METER_BOARD_HEAP).start()
    try:
        def latest(boot: int | None = None) -> dict[str, dict[str, tuple[float, str]]]:
            out: dict[str, dict[str, tuple[float, str]]] = {}
            for m in watcher.telemetry():
                if boot is None or m.boot == boot:
                    out.setdefault(m.sensor, {}).update({r[0]: (r[1], r[2]) for r in m.readings})
            return out

        want = {name: set(METERS[name]["quantities"]) for name in METERS}
        watcher.wait_for(lambda: all(want[s] <= set(latest().get(s, {})) for s in want), 30,
                         "every quantity of the meter, heat and VOC drivers", board)
        watcher.wait_for(lambda: latest()["water"]["water_volume"][0] >= 0.004, 30, "four pulses", board)
        seen = latest()
        assert 60 < seen["heat"]["heat_supply_temp"][0] < 80
        assert 35 < seen["heat"]["heat_return_temp"][0] < 55
        assert 1 <= seen["voc"]["voc_index"][0] <= 500
        assert seen["water"]["water_flow"][1] == "ok"
        boot = max(m.boot for m in watcher.telemetry())
        board.kill()  # a power cut
        before = latest()["water"]["water_volume"][0]
        board.start()
        watcher.wait_for(lambda: "water" in latest(boot + 1), 20, "the meter after the restart", board)
        first = min((m for m in watcher.telemetry() if m.boot == boot + 1 and m.sensor == "water"),
                    key=lambda m: m.seq)
        restored = {r[0]: r[1] for r in first.readings}["water_volume"]
        assert restored >= before - 0.0011, (restored, before)  # save_every 1: at most a pulse lost
        assert "MemoryError" not in board.output()
        assert board.alive
    finally:
        board.stop()
        watcher.close()
