"""Modbus TCP polling benchmark: how many simulated SDM630 meters one hub polls at 1 Hz, on time, under half a core.

For each N in --devices: a child process (`--serve N`, so its CPU is not counted as the hub's) starts N
simulators.modbus_devices.TcpDeviceServer on 127.0.0.1, each an SDM630 on its own port (one bus per meter,
as N meters behind N gateways). This process runs hub.modbus.poller.ModbusService over the production
pymodbus transport with every device at `interval = 1.0`, lets it settle (--warmup), then measures for
--seconds: the poller process's CPU (getrusage) and, per device, the poll start times the poller records.
A device is on time when it was polled at least 90 % of the expected count and its mean interval is within
10 % of 1 s. The answer is the largest N with every device on time and CPU under 50 % of one core.

`--rtu`: Modbus RTU bus utilisation. A child process (`--serve-rtu BAUD`) runs one
simulators.modbus_devices.RtuBusSimulator that honours wire timing (LineTiming: character time, t3.5 before
each answer) with --rtu-units SDM630s on it. This process polls them over the production pymodbus serial
client through ModbusService, every device at the shortest interval (0.05 s) so the bus arbiter always has
a job queued: the bus is saturated and the only limit is the line plus the hub's own time between an
answer and the next request (it keeps t3.5 of silence there). The child measures the window: transactions
answered, busy time (characters carried x character time) and gap violations (requests sent too early).
Utilisation = busy time / window; the limit a perfect master reaches for the workload is
(request + response chars) / (request + response chars + 2 x t3.5 + turnaround), so achieved / limit says how
close the hub comes (target 90 %). Two workloads: the SDM630 profile's plan (one read of 76 registers:
8 + 157 characters) and a worst case of 2-register reads (8 + 9 characters: per-transaction overhead
weighs most). Then the practical figure: SDM630s per bus at 1 Hz = floor(SDM630 transactions/s), checked
by polling that many at interval 1.0 (on time as above).

    .venv/bin/python -m bench.modbus --devices 400 800 1000 1200 1400 1600 --seconds 10   # the default (TCP)
    .venv/bin/python -m bench.modbus --rtu                                                # RTU, about 2 minutes

Loopback only; bounded in time (about (warmup + seconds + 2) per N or per RTU case); the child is stopped on
exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._run import run
from hub.modbus import config
from hub.modbus import profile as profiles
from hub.modbus.poller import ModbusService
from simulators.modbus_devices import LineTiming, RtuBusSimulator, SimulatedDevice, TcpDeviceServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hub.model import Reading

INTERVAL = 1.0
SATURATING = 0.05  # the shortest interval the config allows: with 8 devices the arbiter is never idle
# 8N1 only: pyserial cannot set parity on a Linux pty (tcsetattr EINVAL). The simulator times 8E1 (one more
# bit a character), but the limit a perfect master reaches is the same share, so 8N1 loses nothing here.
RTU_CASES = ((9600, "N"), (19200, "N"))
SMALL_READ = """\
[profile]
name = "small_read"
table = "input"
type = "f32"
order = "ABCD"

[registers.voltage]
address = 0
quantity = "voltage"
"""
# (name, hub profile, request characters, response characters): unit, function, 4 bytes, CRC; unit,
# function, byte count, 2 bytes a register, CRC
WORKLOADS = (("SDM630", "sdm630", 8, 5 + 2 * 76), ("2-register reads", "small_read", 8, 5 + 2 * 2))


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


async def _serve_rtu(baudrate: int, parity: str, units: int, warmup: float, seconds: float) -> None:
    """One timed RTU line with `units` SDM630s; prints its port, then the window's counts as JSON."""
    prof = profiles.load(profiles.resolve("sdm630"))
    line = LineTiming(baudrate, parity=parity)
    async with RtuBusSimulator({u: SimulatedDevice(prof, seed=u) for u in range(1, units + 1)}, line) as sim:
        sys.stdout.write(json.dumps({"port": sim.port}) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()  # the hub has started polling
        await asyncio.sleep(warmup)
        s0 = dataclasses.replace(sim.stats)
        await asyncio.sleep(seconds)
        s1 = dataclasses.replace(sim.stats)
        # from one response's end to another's: whole transactions only
        sys.stdout.write(json.dumps({
            "t0": s0.last_answer, "wall": s1.last_answer - s0.last_answer, "answered": s1.answered - s0.answered,
            "requests": s1.requests - s0.requests,
            "busy": s1.busy_seconds - s0.busy_seconds, "violations": s1.gap_violations - s0.gap_violations,
        }) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()  # wait to be stopped


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

    def emit(batch: list[Reading]) -> None:
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


def _stop(child: subprocess.Popen[str]) -> None:
    """Stop a simulator child: SIGTERM, then its whole process group by SIGKILL after 5 s."""
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


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
        _stop(child)


@contextlib.contextmanager
def _rtu_child(
    baudrate: int, parity: str, units: int, warmup: float, seconds: float,
) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.modbus", "--serve-rtu", str(baudrate), "--parity", parity,
         "--rtu-units", str(units), "--warmup", str(warmup), "--seconds", str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        yield child
    finally:
        if child.stdin:
            with contextlib.suppress(BrokenPipeError):
                child.stdin.close()
        _stop(child)


async def _poll_rtu(
    child: subprocess.Popen[str], baudrate: int, parity: str, prof: str, units: int, interval: float,
) -> tuple[dict[str, Any], ModbusService, float, float]:
    """Poll the child's line until it reports its window; (its counts, the service, hub CPU %, window start)."""
    if child.stdin is None or child.stdout is None:
        msg = "the simulator's stdin and stdout must be pipes"
        raise RuntimeError(msg)
    line = await asyncio.to_thread(child.stdout.readline)
    if not line:
        msg = f"RTU simulator at {baudrate} baud did not start"
        raise RuntimeError(msg)
    port = json.loads(line)["port"]
    cfg = config.parse({
        "buses": {"rs485": {"transport": "rtu", "port": port, "baudrate": baudrate, "parity": parity,
                            "timeout": 1.0, "retries": 1}},
        "devices": {f"m{u}": {"bus": "rs485", "unit": u, "profile": prof, "interval": interval}
                    for u in range(1, units + 1)},
    })
    svc = ModbusService(cfg, "bench")
    task = asyncio.create_task(svc.run(lambda _batch: None))
    try:
        child.stdin.write("go\n")
        child.stdin.flush()
        started = time.monotonic()
        c0 = _cpu()
        result = await asyncio.to_thread(child.stdout.readline)
        cpu = 100 * (_cpu() - c0) / (time.monotonic() - started)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if not result:
        msg = "RTU simulator stopped before reporting"
        raise RuntimeError(msg)
    counts = json.loads(result)
    return counts, svc, cpu, counts["t0"]


def _rtu_saturated(baudrate: int, parity: str, workload: tuple[str, str, int, int], units: int,
                   warmup: float, seconds: float) -> dict[str, Any]:
    _name, prof, req, resp = workload
    with _rtu_child(baudrate, parity, units, warmup, seconds) as child:
        counts, _svc, cpu, _t0 = asyncio.run(_poll_rtu(child, baudrate, parity, prof, units, SATURATING))
    line = LineTiming(baudrate, parity=parity)
    wall = counts["wall"]
    util = counts["busy"] / wall
    limit = line.max_utilisation(req, resp)
    tx = counts["answered"] / wall
    return {
        "tx_per_s": tx, "util": util, "limit": limit, "ratio": util / limit, "violations": counts["violations"],
        "overhead_ms": 1000 * (1 / tx - line.min_cycle(req, resp)) if tx else float("inf"), "cpu": cpu,
    }


def _rtu_at_1hz(baudrate: int, parity: str, meters: int, warmup: float, seconds: float) -> dict[str, Any]:
    """Poll `meters` SDM630s at 1 Hz on one timed line: how many stay on time (the TCP criterion)."""
    with _rtu_child(baudrate, parity, meters, warmup, seconds) as child:
        counts, svc, _cpu_pct, t0 = asyncio.run(
            _poll_rtu(child, baudrate, parity, "sdm630", meters, INTERVAL))
    t1 = t0 + counts["wall"]
    on_time = 0
    worst = 0.0
    for poller in svc.pollers.values():
        starts = [s for s in poller.stats.poll_starts if t0 <= s < t1]
        gaps = [b - a for a, b in pairwise(starts)]
        mean = statistics.fmean(gaps) if gaps else float("inf")
        worst = max(worst, mean)
        if len(starts) >= 0.9 * counts["wall"] / INTERVAL and abs(mean - INTERVAL) <= 0.1 * INTERVAL:
            on_time += 1
    return {"on_time": on_time, "worst_mean": worst, "violations": counts["violations"]}


def _main_rtu(args: argparse.Namespace) -> int:
    print(f"Modbus RTU, one saturated bus ({args.rtu_units} devices at {SATURATING:g} s), "
          f"window {args.seconds:g} s after {args.warmup:g} s warm-up")
    print(f"{'workload':<17} {'line':>9} {'tx/s':>7} {'util %':>7} {'limit %':>8} {'of limit %':>11} "
          f"{'hub ms/tx':>10} {'hub CPU %':>10} {'gap viol.':>10}")
    per_second: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small_read.toml"
        small.write_text(SMALL_READ)
        for name, prof, req, resp in WORKLOADS:
            workload = (name, str(small) if prof == "small_read" else prof, req, resp)
            for baudrate, parity in RTU_CASES:
                r = _rtu_saturated(baudrate, parity, workload, args.rtu_units, args.warmup, args.seconds)
                if prof == "sdm630":
                    per_second[baudrate, parity] = r["tx_per_s"]
                print(f"{name:<17} {baudrate:>6} 8{parity}1 {r['tx_per_s']:>7.1f} {100 * r['util']:>7.1f} "
                      f"{100 * r['limit']:>8.1f} {100 * r['ratio']:>11.1f} {r['overhead_ms']:>10.2f} "
                      f"{r['cpu']:>10.1f} {r['violations']:>10}", flush=True)
    print("SDM630s one RTU bus carries at 1 Hz (floor of the measured transactions/s), checked at interval 1.0:")
    for baudrate, parity in RTU_CASES:
        meters = int(per_second[baudrate, parity])
        check = _rtu_at_1hz(baudrate, parity, meters, args.warmup, args.seconds)
        print(f"  {baudrate:>6} 8{parity}1: {meters} meters; {check['on_time']} of {meters} on time "
              f"(worst mean interval {check['worst_mean']:.3f} s), gap violations {check['violations']}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[400, 800, 1000, 1200, 1400, 1600],
                        help="values of N")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per N")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window opens")
    parser.add_argument("--rtu", action="store_true", help="the RTU bus-utilisation benchmark instead of TCP")
    parser.add_argument("--rtu-units", type=int, default=8, help="devices on the saturated RTU bus")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-rtu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parity", default="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its shutdown noise: a cancelled request's frames
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.serve))
        return 0
    if args.serve_rtu:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_rtu(args.serve_rtu, args.parity, args.rtu_units, args.warmup, args.seconds))
        return 0
    if args.rtu:
        return _main_rtu(args)
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
    run(main)
