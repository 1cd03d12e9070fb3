"""Helpers for control tests with a real hub process and a board under `micropython`: the HTTP API with the
control token, and a hub plus one board with a fan, started together.

Imports the test fixtures' helpers; knows nothing of what a test then does with them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from simulators.services import free_port
from tests.firmware.boards import Board, board_config
from tests.hub.conftest import HubProcess, v1_table, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Influxd, Mosquitto

TOKEN = "control-test-token-0123"
ACTUATORS = {"fan1": {"kind": "pwm", "pin": 4, "unit": "%", "min": 0, "max": 100, "failsafe": 20}}


def api(port: int, method: str, path: str, body: dict[str, Any] | None = None,
        token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of an API call; (0, {}) when the hub does not answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def hub_and_board(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, database: str,
                  hub_processes: list[HubProcess], board: dict[str, Any], **sections: dict[str, Any],
                  ) -> tuple[int, HubProcess, Board]:
    """A hub (its API on a free port, `sections` added to its config) and board t1 (fan1, a pm25 sensor every
    second, `board` added to its config), both started: (API port, hub, board)."""
    port = free_port()
    path = write_config(tmp_path, mosquitto, v1_table(influxd, database), site={"require_birth": False},
                        api={"control_token": TOKEN, "port": port}, **sections)
    cfg = board_config(mosquitto, actuators=ACTUATORS, **board)
    cfg["sensors"] = {"air1": {"driver": "sim", "interval": 1, "quantities": ["pm25"]}}
    hub = HubProcess(path)
    hub_processes.append(hub)
    the_board = Board(tmp_path / "board", cfg)
    hub.start()
    the_board.start()
    return port, hub, the_board
