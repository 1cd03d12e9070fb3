"""A command pending when the hub is SIGKILLed has one final state after the restart, the API returns it, and
the audit holds exactly one row for it. Real hub processes, mosquitto, influxd and a board under `micropython`.

The board is stopped while the command is sent, so it waits at the broker (the board's persistent session);
the hub is killed; the board comes back and applies it, its ack waits at the broker (the hub's session); the
hub comes back, reads its journal, sends the open command once more (the same message: the board answers it
again without applying it again; if the first publish never left the killed hub, this copy is the one the board
applies), takes the ack and audits the outcome once. The landed hub answered 404 for
such a command after the restart and wrote no audit row.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.control.live import api, hub_and_board
from tests.control.test_integration import commands
from tests.hub.conftest import HubProcess, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Influxd, Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_a_command_pending_at_a_hub_crash_ends_once(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str,
    hub_processes: list[HubProcess],
) -> None:
    port, hub, board = hub_and_board(tmp_path, mosquitto, influxd, influxd_database, hub_processes, {},
                                     control={"ttl": 120.0, "retries": 0, "ack_timeout": 5.0})
    try:
        wait_until(lambda: any(d["actuators"] for d in api(port, "GET", "/v1/devices")[1].get("devices", ())), 30,
                   what="the board known to the hub")
        board.stop()  # offline: the command will wait at the broker in the board's session
        status, cmd = api(port, "POST", "/v1/setpoints", {"device": "t1", "actuator": "fan1", "value": 70})
        assert status == 202, cmd
        assert cmd["state"] == "sent"
        hub.kill()  # SIGKILL with the command open
        board.start()  # it takes the command from its session, applies it, acks (the ack waits for the hub)
        # unless the hub died before its publish left it (the journal's `sent` line comes first): then the
        # restarted hub's resend brings it
        applied_before = wait_for(lambda: f"cmd {cmd['id']}:" in board.output(), 10)
        again = HubProcess(hub.config_path)
        hub_processes.append(again)
        again.start()

        def final() -> bool | str:
            status, body = api(port, "GET", f"/v1/commands/{cmd['id']}")
            return (status == 200 and body.get("state") == "applied") or f"{status} {body.get('state')}"

        wait_until(final, 30, what="the command's outcome after the restart")
        _, body = api(port, "GET", f"/v1/commands/{cmd['id']}")
        assert (body["applied"], body["attempts"]) == (70, 2)  # sent once more at the restart
        wait_until(lambda: applied_before is False or "answered again, not applied again" in board.output(), 30,
                   what="the board answering the second copy")
        assert board.output().count(f"cmd {cmd['id']}:") == 1  # applied once
        wait_until(lambda: any(r["id"] == cmd["id"] for r in commands(influxd, influxd_database)), 30,
                   what="the audit row")
        assert again.terminate() == 0
        rows = [r for r in commands(influxd, influxd_database) if r["id"] == cmd["id"]]
        assert len(rows) == 1
        assert (rows[0]["quality"], rows[0]["applied"]) == ("applied", 70)
        assert "command journal: 1 commands taken back, 1 waiting for an ack" in again.log()
    finally:
        board.stop()
