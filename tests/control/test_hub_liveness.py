"""A dead hub with the broker up: the board's actuators go to their fail-safe values after `failsafe_after`,
and the move is stored once the hub is back. Real hub processes, mosquitto, influxd, a board under
`micropython`.

The landed board watched only its broker link: with the hub killed and the broker up, a fan stayed at 80 for
good. Now the hub announces itself (retained `online` with a heartbeat on `qala/{site}/_hub/main`, the will
`offline`), and the board counts the uplink down when no hub is alive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.control.live import api, hub_and_board
from tests.hub.conftest import HubProcess, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Influxd, Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]


def lost_setpoints(influxd: Influxd, database: str) -> list[float]:
    rows = influxd.points(database, 'SELECT "setpoint" FROM "actuator" WHERE "quality" = \'lost\' AND '
                                    '"device" = \'t1\'')
    return [r["setpoint"] for r in rows]


def test_a_killed_hub_sends_the_board_to_fail_safe(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str,
    hub_processes: list[HubProcess],
) -> None:
    port, hub, board = hub_and_board(tmp_path, mosquitto, influxd, influxd_database, hub_processes,
                                     {"failsafe_after": 3}, hub={"heartbeat": 1})
    try:
        wait_until(lambda: "hub main online" in board.output(), 30, what="the board seeing the hub")
        wait_until(lambda: bool(api(port, "GET", "/v1/devices")[1].get("devices")), 30, what="the board's birth")
        status, cmd = api(port, "POST", "/v1/setpoints", {"device": "t1", "actuator": "fan1", "value": 80,
                                                          "wait": True})
        assert (status, cmd.get("state")) == (200, "applied"), cmd
        hub.kill()  # the broker stays up and publishes the hub's will
        wait_until(lambda: "hub main offline" in board.output(), 10, what="the hub's will at the board")
        wait_until(lambda: "uplink down for 3 s (hub lost): actuators to fail-safe" in board.output(), 10,
                   what="the fail-safe")
        assert board.output().rstrip().endswith("actuator fan1 -> 20") or "actuator fan1 -> 20" in board.output()
        assert lost_setpoints(influxd, influxd_database) == []  # the hub is gone: not stored yet
        again = HubProcess(hub.config_path)
        hub_processes.append(again)
        again.start()
        wait_until(lambda: lost_setpoints(influxd, influxd_database) == [20], 30,
                   what="the fail-safe move stored once the hub is back")
        wait_until(lambda: board.output().count("hub main online") >= 2, 10, what="the hub online again")
        assert again.terminate() == 0
        wait_until(lambda: board.output().count("hub main offline") >= 2, 10, what="a clean stop's offline state")
    finally:
        board.stop()
