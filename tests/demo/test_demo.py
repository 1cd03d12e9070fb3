"""`qala demo` end to end, as a user runs it: a subprocess in a fresh folder, real servers and firmware.

- a short run stores readings from every kind of board (air, energy, water) and from every meter (Modbus RTU
  over the socat pty pair, Modbus TCP) in its influxd, shows applied setpoints (output and `qala_command`),
  and stops everything it started;
- with --keep-running, SIGINT stops every process it started (no leftover pid) and leaves the data folder.
The demo writes summary.json (its influxd queries' results, made before it stops the server) and pids.json
(every process it started) into its run folder; the tests read both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from simulators.city import RTU_METERS, TCP_METERS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.micropython]

QALA = [sys.executable, "-m", "hub"]


def run_folder(tmp: Path) -> Path:
    folders = sorted((tmp / "run").glob("demo-*"))
    assert len(folders) == 1, folders
    return folders[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as stopped
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def assert_all_stopped(folder: Path) -> None:
    pids: dict[str, int] = json.loads((folder / "pids.json").read_text())
    assert {"mosquitto", "influxd", "hub", "socat"} <= set(pids), pids
    assert any(name.startswith("board ") for name in pids), pids
    deadline = time.monotonic() + 5
    while (left := {n: p for n, p in pids.items() if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running after the demo: {left}"


def test_demo_stores_every_kind_and_applies_setpoints(tmp_path: Path) -> None:
    done = subprocess.run([*QALA, "demo", "--boards", "3", "--duration", "25"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=150, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    folder = run_folder(tmp_path)
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    stored: dict[str, dict[str, int]] = summary["stored"]

    # every kind of board: air, energy and water measurements, each from its board
    boards: dict[str, str] = summary["boards"]
    assert sorted(boards.values()) == ["air", "energy", "water"]
    for device, kind in boards.items():
        assert stored.get(kind, {}).get(device, 0) > 0, (device, kind, stored)
    # every meter: SDM630 and SDM120 over RTU (socat pty pair), the heat meter over Modbus TCP
    for device in RTU_METERS:
        assert stored["energy"].get(device, 0) > 0, (device, stored)
    for device in TCP_METERS:
        assert stored["heat"].get(device, 0) > 0, (device, stored)

    # the hub's session existed before any board published: each board's first message of every sensor,
    # the actuator reports after its birth included, is stored (the demo used to lose each board's first second)
    first = summary["first_messages"]
    assert {f["device"] for f in first} == set(boards), first
    assert {f["device"] for f in first if f["sensor"] in ("fan1", "relay1", "valve1")} == set(boards), first
    assert [f for f in first if not f["stored"]] == [], first
    assert "hub online" in out

    # applied setpoints, in the output and in qala_command
    applied = [s for s in summary["setpoints"] if s["state"] == "applied"]
    assert {s["device"] for s in applied} == set(boards), summary["setpoints"]
    assert "-> applied" in out
    commands = summary["qala_command"]
    assert {c["device"] for c in commands if c["quality"] == "applied" and c["source"] == "api:control"} == set(boards)
    refused = [c for c in commands if c["quality"] == "rejected"]
    assert refused, commands
    assert refused[0]["reason"].startswith("hub:")
    assert "rejected" in out

    # with all of the trust model on: TLS, passwords, the ACL, signed commands (the boards refuse unsigned ones)
    broker_conf = (folder / "mosquitto" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in broker_conf
    assert "acl_file" in broker_conf
    assert "use_username_as_clientid true" in broker_conf
    assert "[trust]" in (folder / "hub.toml").read_text()
    for device in boards:
        board = json.loads((folder / "boards" / device / "board.json").read_text())
        assert board["mqtt"]["tls"] is True
        assert board["commands"]["key"]
    assert "TLS, passwords, ACL and signed commands are on" in out

    # the alert drill: a paused board's silent alert fired and resolved, in the API and on the northbound feed
    drill = summary["alert_drill"]
    alert = drill["alert"]
    assert alert is not None, (drill, out)
    assert (alert["kind"], alert["device"], alert["state"]) == ("silent", drill["device"], "resolved"), alert
    assert f"alert {alert['id']} fired: silent {drill['device']}" in out
    assert f"alert {alert['id']} resolved" in out
    assert "firing" in drill["northbound"], drill
    assert "resolved" in drill["northbound"], drill
    assert f"operator page {summary['operator_page']}" in out
    assert (folder / "api-token").stat().st_mode & 0o077 == 0  # the token is the operator's, not the world's

    assert "influx -host 127.0.0.1 -port" in out
    assert "SELECT count(*)" in out
    assert "stopped everything it started" in out
    assert_all_stopped(folder)
    assert (folder / "influxd" / "data").is_dir()


def test_sigint_stops_everything_and_keeps_the_data(tmp_path: Path) -> None:
    with (tmp_path / "out.txt").open("w") as out:
        demo = subprocess.Popen([*QALA, "demo", "--boards", "2", "--keep-running"], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "-> applied" not in (tmp_path / "out.txt").read_text():
            assert demo.poll() is None, (tmp_path / "out.txt").read_text()
            assert time.monotonic() < deadline, (tmp_path / "out.txt").read_text()
            time.sleep(0.5)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(40) == 0, (tmp_path / "out.txt").read_text()
    finally:
        if demo.poll() is None:  # a failed assertion above: stop it the way a user would, so that the demo
            demo.send_signal(signal.SIGINT)  # stops its servers and boards (a SIGKILL would orphan them)
            try:
                demo.wait(40)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    folder = run_folder(tmp_path)
    assert_all_stopped(folder)
    for kept in ("influxd/data", "influxd/wal", "mosquitto", "hub.toml", "hub.log", "summary.json"):
        assert (folder / kept).exists(), kept
    assert any((folder / "influxd" / "data").rglob("*")), "influxd's data folder is empty"


def test_refuses_clearly_when_a_tool_is_missing(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # neither socat nor mosquitto nor influxd on PATH
    done = subprocess.run([sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())",
                           "demo", "--boards", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "socat" in done.stderr
    assert "Debian package 'socat'" in done.stderr
    assert not (tmp_path / "run").exists()
