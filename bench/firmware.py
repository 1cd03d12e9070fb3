"""Firmware benchmark: the real board firmware (.mpy build) under the unix `micropython`, 4 sensors, real mosquitto.

    python bench/firmware.py                  # heaps 64k..128k, 20 s each
    python bench/firmware.py --seconds 30 --heaps 88k,128k --interval 0.5

For each heap size (`micropython -X heapsize=...`) it builds the bundle (hub/tools/bundle.py, as a board
gets it), starts a mosquitto on loopback, runs `firmware/main.py` with a board config of 4 `sim` sensors of
4 quantities each, sampling every `--interval` seconds (0.25: 16 messages a second plus health, about what
its QoS 1 sender sustains with the default `buffer.replay_ms`; faster sampling only fills and drops the RAM
buffer), and reports:

- whether it ran (a MemoryError or a crash is reported as such);
- peak heap in use = heapsize - the lowest free heap after a collection over the board's health reports
  (`heap_low`, which `gc.mem_free()` after `gc.collect()` gives; gc.mem_alloc() = heapsize - mem_free);
- messages the broker received from the board (counted by a `mosquitto_sub` on its telemetry topic);
- CPU time per sample-and-publish cycle = the board process's CPU seconds (from /proc) / messages sent,
  which includes everything the board does per message (sample, encode, buffer, QoS 1 publish, PUBACK).

Every process started here is stopped by PID, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.tools import bundle  # noqa: E402
from simulators.services import Mosquitto  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SENSORS = {
    "air1": ["pm1", "pm25", "pm10", "co2"],
    "air2": ["temperature", "humidity", "pressure", "tvoc"],
    "power": ["voltage", "current", "power_active", "energy_import"],
    "heat": ["heat_supply_temp", "heat_return_temp", "heat_flow", "heat_power"],
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_one(work: Path, bundle_dir: Path, broker: Mosquitto, heap: str, seconds: float, interval: float) -> dict:
    cfg = {
        "site": "lab", "device": f"bench-{heap}",
        "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 30},
        "sensors": {name: {"driver": "sim", "interval": interval, "quantities": q} for name, q in SENSORS.items()},
        "buffer": {"ram": 8, "file": 0},
        "health_interval": 1,
    }
    config = work / f"board-{heap}.json"
    config.write_text(json.dumps(cfg))
    counter = subprocess.Popen(
        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
         "-t", f"qala/lab/bench-{heap}/telemetry"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    out_path = work / f"board-{heap}.log"
    micropython = Path(sys.executable).with_name("micropython")
    with out_path.open("wb") as out:
        board = subprocess.Popen(
            [str(micropython), "-X", f"heapsize={heap}", str(bundle_dir / "firmware" / "main.py"), str(config)],
            cwd=work, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(2)  # start-up and connection
        cpu0 = cpu_seconds(board.pid) if board.poll() is None else 0.0
        t0 = time.monotonic()
        time.sleep(seconds)
        alive = board.poll() is None
        cpu = (cpu_seconds(board.pid) - cpu0) if alive else float("nan")
        elapsed = time.monotonic() - t0
    finally:
        if board.poll() is None:
            board.send_signal(signal.SIGTERM)
            try:
                board.wait(10)
            except subprocess.TimeoutExpired:
                board.kill()
                board.wait()
        counter.kill()
        received = counter.communicate()[0].count(b"\n")
    log = out_path.read_text(errors="replace")
    lows = [int(v) for v in re.findall(r"heap_low=(\d+)", log)]
    size = int(heap.rstrip("k")) * 1024
    memory_error = "MemoryError" in log
    return {
        "heap": heap, "ran": alive and not memory_error, "memory_error": memory_error,
        "peak_kb": (size - min(lows)) / 1024 if lows else float("nan"),
        "messages": received, "msg_s": received / (elapsed + 2),
        "cpu_ms_per_msg": 1000 * cpu / received if received and alive else float("nan"),
        "log_tail": "\n".join(log.splitlines()[-3:]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heaps", default="32k,64k,88k,96k,128k", help="heap sizes to try")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per heap size after start-up")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples, per sensor")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qala-fwbench-"))
    results = []
    try:
        bundle_dir = work / "bundle"
        bundle.build(bundle_dir)
        with Mosquitto(work / "mosquitto") as broker:
            results += [run_one(work, bundle_dir, broker, heap.strip(), args.seconds, args.interval)
                        for heap in args.heaps.split(",")]
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"real firmware (.mpy bundle) on the unix port, 4 sim sensors x 4 quantities every {args.interval:g} s, "
          f"{args.seconds:g} s per heap size")
    print(f"  {'heapsize':>8} {'runs':>5} {'peak heap KB':>13} {'msgs':>7} {'msg/s':>7} {'CPU ms/cycle':>13}")
    for r in results:
        print(f"  {r['heap']:>8} {'yes' if r['ran'] else 'NO':>5} {r['peak_kb']:>13.1f} {r['messages']:>7} "
              f"{r['msg_s']:>7.1f} {r['cpu_ms_per_msg']:>13.3f}")
        if not r["ran"]:
            print("           " + r["log_tail"].replace("\n", "\n           "))
    return 0


if __name__ == "__main__":
    from bench._run import run

    run(main)
