"""Firmware benchmark: the real board firmware under the unix `micropython`, 4 sensors, real mosquitto.

    python bench/firmware.py                  # both code placements, heaps 32k..128k, 20 s each
    python bench/firmware.py --modes romfs --heaps 24k,32k --runs 3
    python bench/firmware.py --seconds 30 --heaps 88k,128k --interval 0.5
    python bench/firmware.py --plain          # plain MQTT to an anonymous broker (the lab bench), for comparison

It builds the bundle (hub/tools/bundle.py, `.mpy`, as a board gets it), starts a mosquitto on loopback and,
for each mode and heap size (`micropython -X heapsize=...`), runs the bundle's `firmware/main.py` with a
board config of 4 `sim` sensors of 4 quantities each, sampling every `--interval` seconds (0.25: 16 messages
a second plus health, about what its QoS 1 sender sustains with the default `buffer.replay_ms`; faster
sampling only fills and drops the RAM buffer). As shipped, the broker is a provisioned one (a store made by
hub.trust.provision: TLS, passwords, ACL) and each board logs in with its own identity over TLS verified
against the site CA (mbedtls' memory comes from the MicroPython heap on this port, so it is counted);
`--plain` runs a plain, anonymous broker instead. Two modes, the same `.mpy` files:

- `mpy`: the bundle folder on sys.path, as a board with `.mpy` files on its filesystem: every import loads
  the module's bytecode, constants and strings into the heap;
- `romfs`: the bundle packed into a ROMFS image (`mpremote romfs build`), read into one bytes object and
  mounted with `vfs.VfsRom` at /rom, as a board's ROMFS partition in flash (MicroPython 1.25+): imports run
  the bytecode in place. The image sits in the heap here, so `-X heapsize` is the given size plus the
  image's allocation, and the firmware's own RAM = peak in use - the image's allocation (printed by the
  bootstrap from `gc.mem_alloc()` before and after reading it).

Both modes start through the same small bootstrap script, which imports the bundle's `firmware/main.py` and
wraps `asyncio.run` to print `gc.mem_alloc()` after a collection once start-up is over (all start-up
imports, the config and the Board object; the board's tasks not started yet). It reports:

- whether it ran (a MemoryError or a crash is reported as such);
- peak heap in use = heapsize - the lowest free heap after a collection over the board's health reports
  (`heap_low`, which `gc.mem_free()` after `gc.collect()` gives; gc.mem_alloc() = heapsize - mem_free),
  minus the image in `romfs` mode;
- heap in use at start (above, minus the image) and the growth from there to the peak while running;
- messages the broker received from the board (counted by a stand-in for the hub, `HubStandIn`, which also
  confirms them once a second and announces a hub online, so the board runs as it does beside a hub:
  end-to-end confirmation, docs/protocol.md);
- the interned names (qstrs) at start and the pools holding them: MicroPython interns every name a module
  uses in pools that double in size, so one name past a pool's end allocates a pool as large as all before it
  (on this unix build the sixth pool starts at 620 names and takes 7.5 KB: docs/performance.md);
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from paho.mqtt import client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from hub.tools import bundle  # noqa: E402
from hub.trust import provision  # noqa: E402
from hub.trust.store import TrustStore  # noqa: E402
from protocols import confirm, liveness, topics  # noqa: E402
from simulators.services import Mosquitto  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SENSORS = {
    "air1": ["pm1", "pm25", "pm10", "co2"],
    "air2": ["temperature", "humidity", "pressure", "tvoc"],
    "power": ["voltage", "current", "power_active", "energy_import"],
    "heat": ["heat_supply_temp", "heat_return_temp", "heat_flow", "heat_power"],
}
MODES = ("mpy", "romfs")
# Run by `micropython bootstrap.py board.json`: IMAGE (None for the plain bundle) and ROOT are filled in.
BOOTSTRAP = """\
import gc
import sys

IMAGE = %r
gc.collect()
if IMAGE:
    import vfs

    a = gc.mem_alloc()
    with open(IMAGE, "rb") as f:
        img = f.read()
    gc.collect()
    print("bench: image=%%d in_heap=%%d" %% (len(img), gc.mem_alloc() - a))
    vfs.mount(vfs.VfsRom(img), "/rom")
    del vfs, f, a
import asyncio

_run = asyncio.run


def _started(coro):
    gc.collect()
    print("bench: start_alloc=%%d" %% gc.mem_alloc())
    import micropython

    micropython.qstr_info()  # "qstr pool: ... n_total_bytes=N": the interned names in RAM
    return _run(coro)


asyncio.run = _started
sys.path.insert(0, %r)
import firmware.main
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def build_image(bundle_dir: Path, image: Path) -> int:
    """Pack the compiled bundle into a ROMFS image (no recompiling: the same .mpy files); returns its size."""
    mpremote = Path(sys.executable).with_name("mpremote")
    done = subprocess.run([str(mpremote), "romfs", "--no-mpy", "-o", str(image), "build", str(bundle_dir)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0 or not image.is_file():
        raise SystemExit(f"mpremote romfs build failed (needs mpremote 1.25+ in the venv; or --modes mpy): "
                         f"{(done.stderr or done.stdout).strip()}")
    return image.stat().st_size


def kb(text: str) -> int:
    return int(text.rstrip("k")) * 1024


def device_name(mode: str, heap: str, run: int) -> str:
    return f"bench-{mode}-{heap}-{run}"


class HubStandIn:
    """What a hub does for a board, without running one (no InfluxDB here): counts the board's telemetry,
    confirms it once a second (protocols/confirm.py: the highest seq received, retained on the board's conf
    topic) and announces a hub online (protocols/liveness.py), so the board runs as it does beside a hub:
    records leave its buffer when confirmed and nothing is resent. One paho client with the store's `tools`
    login (the hub's role)."""

    def __init__(self, broker: Mosquitto, device: str, store: TrustStore | None) -> None:
        self.received = 0
        self.mark: tuple[int, int] | None = None
        self.confirmations = 0
        self._stop = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-hub-{device}", clean_session=True)
        if store is not None:
            self.client.tls_set(ca_certs=str(store.ca_file))
            self.client.username_pw_set(*store.hub("tools"))
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"qala/lab/{device}/telemetry", 1)
        self.conf_topic = f"qala/lab/{device}/conf"
        self.client.publish(topics.hub_topic("lab", "bench"), liveness.encode_hub_state(
            liveness.ONLINE, int(time.time() * 1000), 3600), qos=1, retain=True)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._confirm, daemon=True)
        self.thread.start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        self.received += 1
        boot, seq = confirm.record_id(message.payload)
        if self.mark is None or (boot, seq) > self.mark:
            self.mark = (boot, seq)

    def _confirm(self) -> None:
        sent = None
        while not self._stop.wait(1.0):
            if self.mark is not None and self.mark != sent:
                sent = self.mark
                self.client.publish(self.conf_topic, confirm.encode_conf(*sent), qos=0, retain=True)
                self.confirmations += 1

    def stop(self) -> int:
        self._stop.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()
        return self.received


def run_one(work: Path, bundle_dir: Path, image: Path | None, broker: Mosquitto, heap: str, seconds: float,
            interval: float, run: int, store: TrustStore | None) -> dict[str, Any]:
    mode = "romfs" if image else "mpy"
    tag = f"{mode}-{heap}-{run}"
    device = device_name(mode, heap, run)
    mqtt: dict[str, Any] = {"host": broker.host, "port": broker.port, "tls": False, "keepalive": 30}
    if store is not None:
        identity = store.board(device)
        assert identity is not None, "provisioned by main()"
        mqtt = {"host": broker.host, "port": broker.port, "tls": True, "ca": str(store.ca_file),
                "user": identity.user, "password": identity.password, "keepalive": 30}
    cfg = {
        "site": "lab", "device": device,
        "mqtt": mqtt,
        "sensors": {name: {"driver": "sim", "interval": interval, "quantities": q} for name, q in SENSORS.items()},
        "buffer": {"ram": 8, "file": 0},
        "health_interval": 1,
    }
    config = work / f"board-{tag}.json"
    config.write_text(json.dumps(cfg))
    script = work / f"bootstrap-{mode}.py"
    script.write_text(BOOTSTRAP % (str(image) if image else None, "/rom" if image else str(bundle_dir)))
    # the image is allocated in the heap here (in flash on a board): give it room on top of the given size
    size = kb(heap) + (image.stat().st_size + 1024 if image else 0)
    counter = HubStandIn(broker, device, store)
    out_path = work / f"board-{tag}.log"
    micropython = Path(sys.executable).with_name("micropython")
    with out_path.open("wb") as out:
        board = subprocess.Popen(
            [str(micropython), "-X", f"heapsize={size}", str(script), str(config)],
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
        received = counter.stop()
    log = out_path.read_text(errors="replace")
    lows = [int(v) for v in re.findall(r"heap_low=(\d+)", log)]
    found = re.search(r"bench: image=\d+ in_heap=(\d+)", log)
    in_heap = int(found.group(1)) if found else 0
    found = re.search(r"bench: start_alloc=(\d+)", log)
    start = (int(found.group(1)) - in_heap) / 1024 if found else float("nan")
    found = re.search(r"qstr pool: .*n_total_bytes=(\d+)", log)
    qstr = int(found.group(1)) / 1024 if found else float("nan")
    found = re.search(r"qstr pool: n_pool=(\d+), n_qstr=(\d+)", log)
    pools, names = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    peak = (size - min(lows) - in_heap) / 1024 if lows else float("nan")
    memory_error = "MemoryError" in log
    return {
        "mode": mode, "heap": heap, "ran": alive and not memory_error, "memory_error": memory_error,
        "image_kb": in_heap / 1024, "start_kb": start, "qstr_kb": qstr, "qstr_pools": pools, "qstr_names": names,
        "peak_kb": peak, "growth_kb": peak - start,
        "messages": received, "msg_s": received / (elapsed + 2),
        "cpu_ms_per_msg": 1000 * cpu / received if received and alive else float("nan"),
        "log_tail": "\n".join(log.splitlines()[-3:]),
    }


def spread(values: list[float], fmt: str) -> str:
    """One figure, or median (min-max) over several runs; "-" when none (NaN: not measured)."""
    values = [v for v in values if v == v]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt % values[0]
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(values), min(values), max(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="mpy,romfs", help="code placements to run: mpy, romfs or both")
    parser.add_argument("--heaps", default="32k,64k,96k,128k",
                        help="heap sizes to try (in romfs mode: on top of the image's allocation)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per heap size after start-up")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples, per sensor")
    parser.add_argument("--runs", type=int, default=1, help="runs of each mode and heap size")
    parser.add_argument("--plain", action="store_true", help="a plain anonymous broker and plain MQTT (no TLS)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    work = Path(tempfile.mkdtemp(prefix="qala-fwbench-"))
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        bundle_dir = work / "bundle"
        bundle.build(bundle_dir)
        image = work / "firmware.romfs"
        image_size = build_image(bundle_dir, image) if "romfs" in modes else 0
        heaps = [heap.strip() for heap in args.heaps.split(",") if heap.strip()]
        store = None
        if not args.plain:
            provision.init_store(work / "store", "lab")
            provision.add_boards(work / "store", [device_name(m, h, r) for m in modes for h in heaps
                                                  for r in range(args.runs)])
            store = TrustStore.load(work / "store")
        with Mosquitto(work / "mosquitto", store=None if store is None else store.root) as broker:
            for run in range(args.runs):
                for mode in modes:
                    for heap in heaps:
                        r = run_one(work, bundle_dir, image if mode == "romfs" else None, broker, heap,
                                    args.seconds, args.interval, run, store)
                        results.setdefault((mode, r["heap"]), []).append(r)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    link = "plain MQTT" if args.plain else "MQTT over TLS (verified) to a provisioned broker"
    print(f"real firmware (.mpy bundle) on the unix port, 4 sim sensors x 4 quantities every {args.interval:g} s, "
          f"{link}, {args.seconds:g} s per heap size, {args.runs} run(s) each")
    if image_size:
        print(f"ROMFS image {image_size} bytes; romfs rows: heapsize = the given size + the image's allocation, "
              f"and every heap figure has the image taken off")
    columns = (("at start KB", "start_kb", "%.1f", 12), ("qstr KB", "qstr_kb", "%.1f", 8),
               ("names", "qstr_names", "%d", 9), ("pools", "qstr_pools", "%d", 7),
               ("peak heap KB", "peak_kb", "%.1f", 13), ("growth KB", "growth_kb", "%.1f", 10),
               ("msgs", "messages", "%d", 7), ("msg/s", "msg_s", "%.1f", 7),
               ("CPU ms/cycle", "cpu_ms_per_msg", "%.3f", 22))
    print(f"  {'mode':>5} {'heapsize':>8} {'runs':>5} " + " ".join(title.rjust(w) for title, _, _, w in columns))
    for (mode, heap), rs in results.items():
        ran = sum(r["ran"] for r in rs)
        print(f"  {mode:>5} {heap:>8} {f'{ran}/{len(rs)}':>5} "
              + " ".join(spread([r[key] for r in rs], fmt).rjust(w) for _, key, fmt, w in columns))
        failed = [r for r in rs if not r["ran"]]
        if failed:  # the first failure's last lines
            print("           " + failed[0]["log_tail"].replace("\n", "\n           "))
    return 0


if __name__ == "__main__":
    from bench._run import run

    run(main)
