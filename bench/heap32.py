"""The firmware's heap on a 32-bit MicroPython, measured next to the 64-bit unix port with one script.

    python bench/heap32.py                 # a few seconds once the npm package is cached
    python bench/heap32.py --cycles 200

No 32-bit MicroPython binary is on PyPI or Debian, but MicroPython's webassembly port is on npm
(`@micropython/micropython-webassembly-pyscript`): wasm32, 4-byte pointers, objects as on an ESP32 or a
Pico W (floats boxed). This installs it with npm into a cache folder outside the repository
(`~/.cache/qala/mpwasm`, or `$QALA_CACHE/mpwasm`) unless it is there, builds the board bundle as
bench/firmware.py does (hub/tools/bundle.py, `.mpy`; a ROMFS image of it with `mpremote romfs build`) and
runs ONE MicroPython script (`PROBE` below) under the unix `micropython` (64-bit) and under the webassembly
port (through bench/heap32_runner.mjs, under node), in two code placements:

- `romfs`: the bundle as a ROMFS image mounted at /rom: the bytecode runs in place. The webassembly port
  keeps the image outside its GC heap (as a board keeps it in flash) and mounts it itself; the unix port
  has to read it into the heap, and the script takes that allocation off every figure;
- `mpy`: the `.mpy` files on a filesystem (the webassembly port's in-memory one): imports copy them into RAM.

The script reports `gc.mem_alloc()` after `gc.collect()` at each stage, cumulatively, from `base` (the
interpreter, the image mounted, firmware.hw loaded):

0. `asyncio`: `import asyncio` (the webassembly port has its own asyncio, run from the JavaScript event
   loop, with more modules: this step is not the same code on both ports);
1. `start-up`: firmware/start.py's `prepare()` as firmware/main.py runs it (reads and validates bench
   firmware.py's config of 4 `sim` sensors of 4 quantities, counts the boot, drops the validator);
2. `modules`: then the board's own imports (firmware.app, firmware.mqtt, the `sim` driver): the set a
   running board holds in sys.modules (checked at the end against the list from a real board run,
   `BOARD_MODULES`; both ports use their built-in `os` and `time`, as a board does);
3. `board`: then `app.Board(...)` (buffer, MQTT client object, topics; no socket is opened) and the four
   sensor drivers: what bench/firmware.py calls the heap at start;
4. `tasks`: then the coroutines of the board's 6 guarded tasks (outer and inner generator), created and not
   run: the webassembly port's asyncio runs tasks from the JavaScript event loop, so none is started;
5. `peak`: the largest of those figures over `--cycles` sample -> stamp -> encode -> RAM buffer cycles of the
   four sensors plus a health record every 4 cycles (Board.emit, as the sampler task calls it).

What cannot run on the webassembly port: the MQTT connection (no `socket` module, no `asyncio.stream`) and the
running event loop, so the connection, the message in flight and the tasks' running frames are not measured
on it. The firmware's full peak on a 32-bit board is therefore an estimate: bench/firmware.py's measured
64-bit ROMFS figures (heap at start, growth while running), each scaled by the ratio measured here for the
matching part (asyncio + start-up + modules + board; tasks + cycles). The base differs between the ports
(the webassembly port's JavaScript bridge; the unix port holds this script's compiled code) and is taken off
before the ratios. The webassembly port cannot scan its own stack, so its gc.collect() only asks for a
collection, done when control returns to JavaScript: bench/heap32_runner.mjs runs the script in steps.

Every process started here is stopped by PID, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.firmware import SENSORS, build_image  # noqa: E402 - the same config and image as bench/firmware.py
from hub.tools import bundle  # noqa: E402

NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
NPM_VERSION = "1.29.0-6"  # MicroPython 1.29, the unix port's version; .mpy version 6
RUNNER = Path(__file__).with_name("heap32_runner.mjs")
TIMEOUT = 60.0  # seconds per interpreter run
# bench/firmware.py at 96k, 3 runs at 98b9073 (docs/performance.md), medians: heap at start, growth while running
START64_KB = 39.4
GROWTH64_KB = 17.8
START64_MPY_KB = 58.6
GROWTH64_MPY_KB = 17.8
# sys.modules of a running board (unix port, bench/firmware.py's config) minus firmware.main, which imports
# them, and asyncio.stream, which the MQTT connection imports (needs sockets; not on the webassembly port)
BOARD_MODULES = (
    "asyncio", "asyncio.core", "asyncio.event", "asyncio.funcs", "firmware", "firmware.app", "firmware.backoff",
    "firmware.buffer", "firmware.drivers", "firmware.drivers.sim", "firmware.hw", "firmware.hw.unix",
    "firmware.log", "firmware.mqtt", "firmware.vitals", "protocols", "protocols._compat",
    "protocols.confirm", "protocols.errors", "protocols.fields", "protocols.liveness", "protocols.mqtt_codec",
    "protocols.status", "protocols.telemetry_encode", "protocols.topics",
)
STAGES = ("base", "asyncio", "start-up", "modules", "board", "tasks", "peak")

# Run identically by both ports, as one script (unix) or step by step (webassembly: heap32_runner.mjs runs each
# part between `#--step` lines as its own call). The webassembly port cannot scan its stack, so its
# gc.collect() only asks for a collection, done when control returns to JavaScript: every step ends with
# gc.collect() and the next one reads gc.mem_alloc(). MODE, IMAGE, BUNDLE, CONFIG and MODULES are filled in.
STEP = "\n#--step\n"
PROBE = """\
import gc
import sys

MODE = %r
IMAGE = %r
BUNDLE = %r
CONFIG = %r
MODULES = %r
IMG = 0


def alloc():
    gc.collect()
    return gc.mem_alloc() - IMG


def at(stage):
    print("heap32: %%s %%d" %% (stage, alloc()))


print("heap32: port %%s %%s maxsize=%%d" %% (sys.platform, sys.implementation._machine, sys.maxsize))
if MODE == "romfs":
    if "/rom" not in sys.path:  # the unix port: the image goes into the heap, and is taken off every figure
        import vfs

        gc.collect()
        IMG = gc.mem_alloc()
        with open(IMAGE, "rb") as f:
            img = f.read()
        gc.collect()
        IMG = gc.mem_alloc() - IMG
        vfs.mount(vfs.VfsRom(img), "/rom")
        sys.path.insert(0, "/rom")
        del vfs, f
else:
    sys.path.insert(0, BUNDLE)
# A board's os and time are the interpreter's built-in modules; the webassembly port shadows them with
# micropython-lib's Python `os` and `time` packages (and its os has no urandom): use the built-ins on both
import uos
import utime

sys.modules["time"] = utime
if hasattr(uos, "urandom"):
    sys.modules["os"] = uos
else:

    class _Os:
        def __getattr__(self, name):
            return getattr(uos, name)

        def urandom(self, n):
            import random

            return bytes(random.getrandbits(8) for _ in range(n))

    sys.modules["os"] = _Os()
del utime
# firmware.hw.load() picks hw.board (machine, network) on anything but linux: hand it hw.unix on both ports
import firmware.hw
import firmware.hw.unix

firmware.hw.board = firmware.hw.unix
gc.collect()
#--step
at("base")
import asyncio

gc.collect()
#--step
at("asyncio")
from firmware import start

job = start.prepare(CONFIG)
del start
sys.modules.pop("firmware.start", None)
import firmware

del firmware.start
gc.collect()
#--step
at("start-up")
if job[0] != "board":
    raise SystemExit("heap32: the board started in safe mode: %%s" %% (job[1][1],))
from firmware import app
import firmware.mqtt
import firmware.drivers.sim

del firmware.hw.board
gc.collect()
#--step
at("modules")
board = app.Board(*job[1])
del job
sensors = {}
for name in board.cfg["sensors"]:
    sensors[name] = firmware.drivers.sim.make(name, board.cfg["sensors"][name], board.hw)
last = {}
gc.collect()
#--step
at("board")
import micropython

micropython.qstr_info()  # "qstr pool: ... n_total_bytes=N": the interned names in RAM
coros = [
    app._guarded("network", board.hw.network, (board.cfg,)), board.hw.network(board.cfg),
    app._guarded("watchdog", board.watchdog, ()), board.watchdog(),
    app._guarded("mqtt", board.client.run, (board.birth,)), board.client.run(board.birth),
    app._guarded("sender", board.sender, ()), board.sender(),
    app._guarded("health", board.health, ()), board.health(),
]
coros.append(app._guarded("sensors", board.sampler, ()))  # one task samples every sensor
coros.append(board.sampler())


def cycle(n):
    for name in sensors:
        last[name] = sensors[name].read()
        board.emit(name, last[name])
    if n %% 4 == 3:
        board.emit("health", [
            ("uptime", board.hw.uptime_ms() // 1000), ("heap_free", 123456), ("heap_max_block", 65432),
            ("buffered", len(board.buf)), ("dropped", board.buf.dropped), ("resets", board.boot),
            ("reconnects", board.client.reconnects), ("sensor_faults", board.faults),
            ("self_resets", board.self_resets), ("lagging", 0)])


peak = 0
gc.collect()
#--step
at("tasks")
"""
# one sample-encode-buffer cycle per step, n filled in
CYCLE = """\
cycle(%d)
gc.collect()
#--step
peak = max(peak, alloc())
"""
TAIL = """\
print("heap32: imported missing=%s extra=%s" % (
    ",".join(m for m in MODULES if m not in sys.modules) or "-",
    ",".join(m for m in sys.modules if m not in MODULES and m not in ("os", "time")) or "-"))
print("heap32: peak %d" % peak)
print("heap32: records seq=%d buffered=%d dropped=%d" % (board.seq, len(board.buf), board.buf.dropped))
"""


def probe(mode: str, image: Path, bundle_dir: Path, config: Path, cycles: int) -> str:
    """The MicroPython script both ports run."""
    head = PROBE % (mode, str(image), str(bundle_dir), str(config), BOARD_MODULES)
    return head + "".join(CYCLE % n for n in range(cycles)) + TAIL


def cache_dir() -> Path:
    return Path(os.environ.get("QALA_CACHE") or Path.home() / ".cache" / "qala") / "mpwasm"


def ensure_wasm_port() -> Path:
    """The package's micropython.mjs, installed with npm into the cache folder unless it is already there."""
    folder = cache_dir()
    mjs = folder / "node_modules" / NPM_PACKAGE / "micropython.mjs"
    manifest = mjs.with_name("package.json")
    if mjs.is_file() and json.loads(manifest.read_text()).get("version") == NPM_VERSION:
        return mjs
    folder.mkdir(parents=True, exist_ok=True)
    print(f"installing {NPM_PACKAGE}@{NPM_VERSION} into {folder} (npm)", flush=True)
    execute(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(folder),
             f"{NPM_PACKAGE}@{NPM_VERSION}"], folder, 180.0)
    if not mjs.is_file():
        raise SystemExit(f"npm did not install {mjs}")
    return mjs


def execute(argv: list[str], cwd: Path, timeout: float) -> str:
    """Run argv, stopping it by PID on timeout or Ctrl-C; its stdout and stderr, merged."""
    if shutil.which(argv[0]) is None:
        msg = f"{argv[0]} not found: bench/heap32.py needs node and npm (Debian: apt-get install nodejs npm)"
        raise SystemExit(msg)
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise SystemExit(f"{argv[0]} did not finish within {timeout:g} s:\n{out[-2000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{out[-3000:]}")
    return out


def parse(out: str) -> dict[str, float]:
    """Stage -> KB from the script's `heap32: STAGE BYTES` lines."""
    found = {m.group(1): int(m.group(2)) / 1024 for m in re.finditer(r"^heap32: (\S+) (\d+)$", out, re.MULTILINE)}
    missing = [s for s in STAGES if s not in found]
    if missing:
        raise SystemExit(f"the probe reported no {', '.join(missing)}:\n{out[-3000:]}")
    qstr = re.search(r"qstr pool: .*n_total_bytes=(\d+)", out)
    found["qstr"] = int(qstr.group(1)) / 1024 if qstr else float("nan")
    return found


def info(out: str, key: str) -> str:
    found = re.search(rf"^heap32: {key} (.*)$", out, re.MULTILINE)
    return found.group(1) if found else "?"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(mode: str, r64: dict[str, float], r32: dict[str, float], start64: float, growth64: float) -> None:
    print(f"\n{mode}: gc.mem_alloc() after gc.collect(), KB, cumulative")
    print(f"  {'stage':<10} {'64-bit':>8} {'32-bit':>8} {'ratio':>6}   "
          f"{'64-bit step':>11} {'32-bit step':>11} {'ratio':>6}")
    prev = None
    for stage in STAGES:
        a, b = r64[stage], r32[stage]
        step = ""
        if prev is not None:
            da, db = a - r64[prev], b - r32[prev]
            step = f"{da:>11.1f} {db:>11.1f} {ratio(db, da):>6.2f}"
        print(f"  {stage:<10} {a:>8.1f} {b:>8.1f} {ratio(b, a):>6.2f}   {step}")
        prev = stage
    # the firmware's own part: from the interpreter's base
    r_start = ratio(r32["board"] - r32["base"], r64["board"] - r64["base"])
    r_growth = ratio(r32["peak"] - r32["board"], r64["peak"] - r64["board"])
    print(f"  firmware at start (asyncio + start-up + modules + board, over the base): 32/64 = {r_start:.2f}; "
          f"running (tasks + cycles, over the board): 32/64 = {r_growth:.2f}")
    print(f"  interned names (qstr pools) once the board is built: {r64['qstr']:.1f} KB 64-bit, "
          f"{r32['qstr']:.1f} KB 32-bit")
    est = start64 * r_start + growth64 * r_growth
    print(f"  ESTIMATE, 32-bit board ({mode}): {start64:.1f} KB at start x {r_start:.2f} + {growth64:.1f} KB growth "
          f"x {r_growth:.2f} = {est:.1f} KB peak (bench/firmware.py's 64-bit figures, {start64 + growth64:.1f} KB "
          f"peak, scaled part by part) -> {'under' if est < 32 else 'NOT under'} 32 KB")
    # the part of the running board's growth not reproduced here (connection, message in flight, running frames)
    unseen = max(0.0, growth64 - (r64["peak"] - r64["board"]))
    high = start64 * r_start + (growth64 - unseen) * r_growth + unseen
    print(f"  if the {unseen:.1f} KB of the 64-bit growth not reproduced here did not shrink at all: {high:.1f} KB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=64, help="sample-encode-buffer cycles of the 4 sensors")
    parser.add_argument("--start64", type=float, default=START64_KB,
                        help="bench/firmware.py's 64-bit ROMFS heap at start, KB (to scale)")
    parser.add_argument("--growth64", type=float, default=GROWTH64_KB,
                        help="bench/firmware.py's 64-bit ROMFS growth while running, KB (to scale)")
    args = parser.parse_args()
    mjs = ensure_wasm_port()
    micropython = Path(sys.executable).with_name("micropython")
    work = Path(tempfile.mkdtemp(prefix="qala-heap32-"))
    try:
        bundle_dir = work / "bundle"
        bundle.build(bundle_dir)
        image = work / "firmware.romfs"
        size = build_image(bundle_dir, image)
        cfg = {
            "site": "lab", "device": "heap32",
            "mqtt": {"host": "127.0.0.1", "port": 1, "tls": False, "keepalive": 30},  # never connected
            "sensors": {name: {"driver": "sim", "interval": 0.25, "quantities": q} for name, q in SENSORS.items()},
            "buffer": {"ram": 8, "file": 0},
            "health_interval": 1,
        }
        config = work / "board.json"
        config.write_text(json.dumps(cfg))
        results: dict[tuple[str, str], dict[str, float]] = {}
        for mode in ("romfs", "mpy"):
            script = work / f"probe-{mode}.py"
            script.write_text(probe(mode, image, bundle_dir, config, args.cycles))
            out64 = execute([str(micropython), "-X", "heapsize=1m", str(script)], work, TIMEOUT)
            runner = ["node", str(RUNNER), str(mjs), str(script), "--copy", str(config)]
            runner += ["--romfs", str(image)] if mode == "romfs" else ["--copy", str(bundle_dir)]
            out32 = execute(runner, work, TIMEOUT)
            for bits, out in (("64", out64), ("32", out32)):
                print(f"{mode} {bits}-bit: {info(out, 'port')}; modules {info(out, 'imported')}; "
                      f"{info(out, 'records')}")
                results[mode, bits] = parse(out)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"\nthe board bundle (.mpy, ROMFS image {size} bytes), bench/firmware.py's 4 sim sensors x 4 quantities, "
          f"{args.cycles} cycles; 64-bit = unix port, 32-bit = webassembly port ({NPM_PACKAGE}@{NPM_VERSION})")
    report("romfs", results["romfs", "64"], results["romfs", "32"], args.start64, args.growth64)
    report("mpy", results["mpy", "64"], results["mpy", "32"], START64_MPY_KB, GROWTH64_MPY_KB)
    print("\nnot measured on the 32-bit port: the MQTT connection and message in flight (no sockets), the tasks' "
          "running frames (no event loop run here); they are in the 64-bit figures being scaled")
    return 0


if __name__ == "__main__":
    from bench._run import run

    run(main)
