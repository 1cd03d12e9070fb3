"""Modbus TCP polling benchmark: how many simulated SDM630 meters one hub polls at 1 Hz, on time, under half a core.

For each N in --devices: a child process (`--serve N`, so its CPU is not counted as the hub's) starts N
simulators.modbus_devices.TcpDeviceServer on 127.0.0.1, each an SDM630 on its own port (one bus per meter,
as N meters behind N gateways). This process runs hub.modbus.poller.ModbusService over the production
pymodbus transport with every device at `interval = 1.0`, lets it settle (--warmup), then measures for
--seconds: the poller process's CPU (getrusage) and, per device, the poll start times the poller records.
A device is on time when it was polled at least 90 % of the expected count and its mean interval is within
10 % of 1 s. The answer is the largest N with every device on time and CPU under 50 % of one core.

RTU wire timing (9,600 / 19,200 baud, bus utilisation) is not part of this script; see docs/performance.md.

    .venv/bin/python -m bench.modbus --devices 400 800 1000 1200 1400 1600 --seconds 10   # the default

Loopback only; bounded in time (about (warmup + seconds + 2) per N); the child is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from itertools import pairwise

from hub.modbus import config
from hub.modbus import profile as profiles
from hub.modbus.poller import ModbusService
from simulators.modbus_devices import SimulatedDevice, TcpDeviceServer

INTERVAL = 1.0


async def _serve(n: int) -> None:
    prof = profiles.load(profiles.resolve("sdm630"))
    servers = [TcpDeviceServer(SimulatedDevice(prof, seed=i)) for i in range(n)]
    ports = [await s.start() for s in servers]
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        await s.stop()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _poll(ports: list[int], warmup: float, seconds: float) -> dict[str, float]:
    cfg = config.parse({
        "buses": {f"b{i}": {"transport": "tcp", "host": "127.0.0.1", "port": p, "timeout": 1.0, "retries": 1}
                  for i, p in enumerate(ports)},
        "devices": {f"m{i}": {"bus": f"b{i}", "unit": 1, "profile": "sdm630", "interval": INTERVAL}
                    for i in range(len(ports))},
    })
    svc = ModbusService(cfg, "bench")
    readings = 0

    def emit(batch: list) -> None:
        nonlocal readings
        readings += len(batch)

    task = asyncio.create_task(svc.run(emit))
    try:
        await asyncio.sleep(warmup)
        t0, c0, r0 = time.monotonic(), _cpu(), readings
        await asyncio.sleep(seconds)
        t1, c1, r1 = time.monotonic(), _cpu(), readings
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    expected = seconds / INTERVAL
    on_time = 0
    means = []
    polls = 0
    for poller in svc.pollers.values():
        starts = [s for s in poller.stats.poll_starts if t0 <= s < t1]
        gaps = [b - a for a, b in pairwise(starts)]
        mean = statistics.fmean(gaps) if gaps else float("inf")
        means.append(mean)
        polls += len(starts)
        if len(starts) >= 0.9 * expected and abs(mean - INTERVAL) <= 0.1 * INTERVAL:
            on_time += 1
    wall = t1 - t0
    return {
        "n": len(ports), "on_time": on_time, "cpu_pct": 100 * (c1 - c0) / wall,
        "polls_per_s": polls / wall,
        "readings_per_s": (r1 - r0) / wall, "worst_mean_interval": max(means) if means else 0.0,
    }


def _run_one(n: int, warmup: float, seconds: float) -> dict[str, float]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.modbus", "--serve", str(n)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line:
            msg = f"simulator process for {n} devices did not start"
            raise RuntimeError(msg)
        ports = json.loads(line)
        return asyncio.run(_poll(ports, warmup, seconds))
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[400, 800, 1000, 1200, 1400, 1600],
                        help="values of N")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per N")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window opens")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.serve))
        return 0
    print(f"SDM630 over Modbus TCP at {INTERVAL:g} s, window {args.seconds:g} s after {args.warmup:g} s warm-up")
    print(f"{'N':>5} {'on time':>8} {'hub CPU %':>10} {'polls/s':>8} {'readings/s':>11} {'worst mean s':>13}")
    best = 0
    for n in args.devices:
        r = _run_one(n, args.warmup, args.seconds)
        print(f"{r['n']:>5} {r['on_time']:>8} {r['cpu_pct']:>10.1f} {r['polls_per_s']:>8.1f} "
              f"{r['readings_per_s']:>11.0f} {r['worst_mean_interval']:>13.3f}", flush=True)
        if r["on_time"] == n and r["cpu_pct"] < 50:
            best = max(best, n)
    print(f"most devices on time under 50 % of a core: {best or 'none of those tried'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
