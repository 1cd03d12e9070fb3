"""The command journal (hub/control/journal.py) and what the control service does with it after a restart;
schedules and rules that cannot send leave an audited command, and a schedule tries again within its window.

No broker here: a recording publish function and a fake clock (test_service_api.py's rig).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING

import pytest

from hub.config import ControlConfig
from hub.control import command as lc
from hub.control.journal import Journal, JournalError
from hub.control.rules import Schedule
from hub.control.service import ControlService
from hub.model import COMMAND
from tests.control.test_service_api import Rig

if TYPE_CHECKING:
    from pathlib import Path


def restarted(rig: Rig, tmp_path: Path) -> ControlService:
    """A new control service on the same journal, as after a hub restart."""
    return ControlService("lab", ControlConfig(ttl=10, retries=1, ack_timeout=2), rig.registry,
                          publish=lambda t, p: rig.sent.append((t, p)), emit=rig.stored.extend,
                          clock_ms=lambda: rig.now, signer=rig.signer, journal=Journal(tmp_path / "commands.jsonl"))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)
    r.control = restarted(r, tmp_path)
    return r


async def test_every_change_is_on_disk_before_the_command_is_sent(rig: Rig, tmp_path: Path) -> None:
    sent_before: list[int] = []
    publish = rig.control.publish

    def watching(topic: str, payload: bytes) -> None:
        lines = (tmp_path / "commands.jsonl").read_text().splitlines()
        sent_before.append(sum(1 for line in lines if json.loads(line)["state"] == "sent"))
        publish(topic, payload)

    rig.control.publish = watching
    cmd = rig.control.submit("t1", "fan1", 80)
    assert sent_before == [1]  # the `sent` line was written (and fsynced) before the publish
    rig.now += 100
    rig.ack(cmd.id)
    states = [json.loads(line)["state"] for line in (tmp_path / "commands.jsonl").read_text().splitlines()]
    assert states == ["pending", "sent", "applied"]


async def test_a_restart_takes_open_and_final_commands_back(rig: Rig, tmp_path: Path) -> None:
    done = rig.control.submit("t1", "fan1", 80)
    rig.ack(done.id)
    refused = rig.control.submit("t1", "fan1", 150)
    pending = rig.control.submit("t1", "fan1", 60)
    with (tmp_path / "commands.jsonl").open("a") as f:
        f.write('{"id":"c-cut","dev')  # a line cut by the crash
    rig.sent.clear()
    control = restarted(rig, tmp_path)  # the hub was killed; its successor reads the journal
    rig.control = control
    assert control.commands[done.id].state == "applied"
    assert control.commands[refused.id].state == "rejected"
    back = control.commands[pending.id]
    assert (back.state, back.n, back.attempts) == ("sent", pending.n, 1)
    assert "c-cut" not in control.commands
    assert rig.sent == []
    task = asyncio.create_task(control.run())
    await asyncio.sleep(0.01)
    # sent once more when the service runs (the hub may have died before the publish left it): the same
    # message, so a board that has it answers again without applying it again
    assert [p for _, p in rig.sent] == [control.signer.cmd(back)]  # type: ignore[union-attr]
    assert back.attempts == 2
    rig.now += 3000
    assert lc.due(back, rig.now) is None  # no further resend
    task.cancel()
    rig.ack(pending.id, value=60)  # its ack, queued at the broker while the hub was down
    assert back.state == "applied"
    audits = [r for r in rig.stored if r.measurement == COMMAND and r.field == "id" and r.value == pending.id]
    assert len(audits) == 1
    lines = (tmp_path / "commands.jsonl").read_text().splitlines()
    assert len({json.loads(line)["id"] for line in lines}) == 3  # compacted at load: one line per command + changes


async def test_an_open_command_times_out_after_a_restart_and_a_modbus_one_ends(rig: Rig, tmp_path: Path) -> None:
    pending = rig.control.submit("t1", "fan1", 60)
    journal = tmp_path / "commands.jsonl"
    modbus = lc.Command(id="c-mb", device="m1", actuator="reg", value=5, transport="modbus", source="api",
                        created_ms=rig.now, expires_ms=rig.now + 10_000, state="sent", attempts=1, sent_ms=rig.now)
    Journal(journal).record(modbus)
    control = restarted(rig, tmp_path)
    assert control.commands["c-mb"].state == "timed_out"
    assert "hub restarted during the Modbus write" in (control.commands["c-mb"].reason or "")
    back = control.commands[pending.id]
    rig.now = back.expires_ms + back.ack_timeout_ms
    assert lc.due(back, rig.now) == lc.TIMEOUT


async def test_recent_outcomes_are_audited_again_at_start(rig: Rig, tmp_path: Path) -> None:
    cmd = rig.control.submit("t1", "fan1", 80)
    rig.ack(cmd.id)
    rig.stored.clear()
    control = restarted(rig, tmp_path)
    control._reaudit()
    assert {r.value for r in rig.stored if r.field == "id"} == {cmd.id}  # the same point, once more
    rig.stored.clear()
    rig.now += 700_000
    control._reaudit()
    assert rig.stored == []


async def test_an_unwritable_journal_refuses_the_command(rig: Rig, tmp_path: Path) -> None:
    assert rig.control.journal is not None

    def refuse(_cmd: lc.Command) -> None:
        raise JournalError(28, f"{tmp_path}/commands.jsonl: cannot write the command journal: No space left")

    rig.control.journal.record = refuse  # type: ignore[method-assign]
    cmd = rig.control.submit("t1", "fan1", 80)
    assert cmd.state == "rejected"
    assert "cannot journal the command" in (cmd.reason or "")
    assert rig.sent == []


async def test_a_schedule_that_cannot_send_is_audited_and_tried_again(rig: Rig) -> None:
    morning = Schedule("morning", "t1", "fan1", dt.time(7, 0), 40, retry_every=60, retry_window=300)
    nowhere = Schedule("ghost", "t9", "fan1", dt.time(7, 0), 40, retry_every=60, retry_window=120)
    rig.control.schedules = [morning, nowhere]
    rig.control._schedule(morning, rig.now, first=True)
    rig.control._schedule(nowhere, rig.now, first=True)
    ghost = [c for c in rig.control.commands.values() if c.device == "t9"]
    assert [(c.state, c.transport) for c in ghost] == [("rejected", "none")]
    assert "unknown device 't9'" in (ghost[0].reason or "")
    assert any(r.field == "id" and r.value == ghost[0].id for r in rig.stored)  # audited
    first = next(c for c in rig.control.commands.values() if c.source == "schedule:morning")
    rig.ack(first.id, "rejected")  # the board refused it this time
    rig.now += 60_000
    rig.control._schedule_retries(rig.now)
    tries = [c for c in rig.control.commands.values() if c.source == "schedule:morning"]
    assert len(tries) == 2
    rig.ack(tries[1].id)  # applied: no more tries
    rig.now += 60_000
    rig.control._schedule_retries(rig.now)
    assert len([c for c in rig.control.commands.values() if c.source == "schedule:morning"]) == 2
    for _ in range(5):  # the ghost: tried again until its window is over, each try audited
        rig.now += 60_000
        rig.control._schedule_retries(rig.now)
    assert len([c for c in rig.control.commands.values() if c.device == "t9"]) == 2  # at 0 and 60 s: 120 is the end
    assert "ghost" not in rig.control._schedule_tries


