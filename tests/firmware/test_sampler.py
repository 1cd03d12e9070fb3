"""Board.sampler (firmware/app.py): one task samples every sensor, each on its own interval, each failing alone.

Runs the sampler for about a second under `micropython` (it needs ticks_ms and asyncio.sleep_ms) on a Board
whose emit counts what it gets: four `sim` sensors, one slower, one whose reads fail every other time, and one
whose first emit raises (as a fault outside the driver would), which restarts that sensor alone, 1 s later.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.firmware.boards import ROOT, tool

pytestmark = pytest.mark.micropython

SCRIPT = """
import json
import sys
import time

sys.path.insert(0, ".")
import asyncio

from firmware import app
from firmware.vitals import Vitals


class Hw:
    def uptime_ms(self):
        return time.ticks_ms()


class Board(app.Board):
    def __init__(self, sensors):
        self.cfg = {"sensors": sensors}
        self.hw = Hw()
        self.faults = 0
        self.out = {}
        self.vitals = Vitals(time.ticks_ms(), 120000, 200, time.ticks_diff)  # the sampler reports to it

    def emit(self, sensor, readings):
        self.out.setdefault(sensor, []).append(readings[0][2] if len(readings[0]) > 2 else "ok")
        if sensor == "bad" and len(self.out[sensor]) == 1:
            raise ValueError("emit broke")


def spec(interval, **options):
    return {"driver": "sim", "interval": interval, "warmup": 0, "quantities": ["co2"], "pins": {},
            "options": options}


board = Board({"fast": spec(0.05), "slow": spec(0.2), "flaky": spec(0.05, fault_every=2), "bad": spec(0.05)})


async def main():
    try:
        await asyncio.wait_for(board.sampler(), 1.3)
    except asyncio.TimeoutError:
        pass


asyncio.run(main())
print("RESULT " + json.dumps({"out": board.out, "faults": board.faults}))
"""


def test_one_task_samples_each_sensor_on_its_interval_and_fails_them_alone() -> None:
    done = subprocess.run([tool("micropython"), "-X", "heapsize=256k", "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    out = result["out"]
    assert 15 <= len(out["fast"]) <= 28, out  # every 0.05 s over 1.3 s (fewer on a loaded machine)
    assert 4 <= len(out["slow"]) <= 8, out  # every 0.2 s
    flaky = out["flaky"]
    assert 15 <= len(flaky) <= 28, out  # a failed read repeats the last readings, flagged fault
    assert flaky[:4] == ["ok", "fault", "ok", "fault"], out
    assert result["faults"] == flaky.count("fault")
    # the first emit of `bad` raised: that sensor alone starts again 1 s later, the others never paused
    assert 2 <= len(out["bad"]) <= 8, out
    assert "task sensor bad failed: ValueError: emit broke; restarting" in done.stdout
    assert "read failed: OSError: simulated fault" in done.stdout
