"""OTA benchmark: the board's heap and interned names with A/B slots, in a normal run and during an update.

    python bench/ota.py                           # 128k and 160k, 512-byte chunks (as shipped)
    python bench/ota.py --heaps 128k --chunks 512,1024,2048 --runs 2
    python bench/ota.py --heaps 128k --kinds update --nodelay   # the download with Nagle off on the broker

The real firmware on the unix `micropython`, its `.mpy` files loaded into the heap as a board loads them from
its filesystem (the slots are folders of `.mpy` files: the `romfs` mode of bench/firmware.py does not apply to
them), the configuration of bench/firmware.py (4 `sim` sensors of 4 quantities every 0.25 s, confirmations
from a stand-in hub, MQTT over TLS to a provisioned mosquitto). Per heap size and chunk size:

- `flat`: the bundle's `firmware/main.py` (the layout before A/B slots), bench/firmware.py's own run: the
  baseline;
- `slots`: the same bundle laid out by `hub.tools.fw.install_unix` (slot `a/`, `loader.mpy`, `main.py`), no
  update: what a slotted board costs in a normal run;
- `update`: a slotted board offered a new version (the same firmware, VERSION 0.2.0) by a stand-in for the
  hub's OTA server: the offer (the process exits 3, a reset into update mode), the download into slot b,
  verification, install (exit 3 again), the trial boot run until the loader has committed it (exit 3), then
  update mode again, which reports `healthy` (exit 3). Columns: the normal run before the offer, update mode
  (`update peak`), the trial, the report.

A bootstrap script wraps `asyncio.run` to print `gc.mem_alloc()` after a collection once start-up is over
(heap at start) and `micropython.qstr_info()` (interned names, pools), then samples both every 0.25 s while the
board runs (a task of its own): peak heap in use = the highest `gc.mem_alloc()` after a collection, the same
figure as bench/firmware.py's (heapsize - the lowest free heap). A board that cannot keep up (MemoryError,
out-of-memory reset, no `healthy` within the time) is reported as such. Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from paho.mqtt import client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.firmware import SENSORS, HubStandIn, kb, spread  # noqa: E402
from hub.tools import bundle, fw  # noqa: E402
from hub.trust import provision  # noqa: E402
from hub.trust.store import TrustStore  # noqa: E402
from protocols import ota, topics  # noqa: E402
from simulators.services import Mosquitto  # noqa: E402

# Run by `micropython bootstrap.py board.json`: FIRST is `import loader` (slots) or `import firmware.main` (flat),
# ROOT the folder put first on sys.path.
BOOTSTRAP = """\
import gc
import sys
import micropython
import asyncio

_run = asyncio.run


async def _probe():
    while True:
        await asyncio.sleep_ms(250)
        gc.collect()
        print("bench: alloc=%%d" %% gc.mem_alloc())
        micropython.qstr_info()


async def _both(coro):
    asyncio.create_task(_probe())
    await coro


def _started(coro):
    gc.collect()
    print("bench: start_alloc=%%d" %% gc.mem_alloc())
    micropython.qstr_info()
    return _run(_both(coro))


asyncio.run = _started
sys.path.insert(0, %r)
%s
"""


def build(out: Path, version: str, chunk: int, source: Path = REPO) -> Path:
    """The firmware of `source` with VERSION = version and the board's chunk size set to `chunk`, as `qala fw
    build` builds it."""
    root = Path(tempfile.mkdtemp(prefix="qala-otabench-src-"))
    try:
        for package in bundle.PACKAGES:
            shutil.copytree(source / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
        init = root / "firmware" / "__init__.py"
        init.write_text(re.sub(r'VERSION = "[^"]*"', f'VERSION = "{version}"', init.read_text()))
        client = root / "firmware" / "ota.py"
        if client.exists():
            client.write_text(re.sub(r"_CHUNK = const\(\d+\)", f"_CHUNK = const({chunk})", client.read_text()))
        fw.build_bundle(out, root=root)
    finally:
        shutil.rmtree(root)
    return out


class Server:
    """The hub's OTA server for one board, standing in: an offer signed with the board's key, chunks answered
    from the new bundle's folder, state reports kept. One paho client with a hub login of its own."""

    def __init__(self, broker: Mosquitto, device: str, store: TrustStore, folder: Path) -> None:
        identity = store.board(device)
        assert identity is not None
        self.key = identity.cmd_key
        self.device = device
        self.folder = folder
        self.manifest = (folder / fw.SLOT_MANIFEST).read_bytes()
        self.files = [(folder / rel).read_bytes() for rel, _, _ in ota.parse_manifest(self.manifest)["files"]]
        self.states: list[dict[str, Any]] = []
        self.chunks = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-ota-{device}", clean_session=True)
        self.client.tls_set(ca_certs=str(store.ca_file))
        self.client.username_pw_set(*store.hub("otaserver"))  # not `tools`: the stand-in hub logs in with it
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.build("lab", device, ota.OTAACK), 1)
        self.client.loop_start()

    def offer(self) -> None:
        parsed = ota.parse_manifest(self.manifest)
        payload = ota.encode_offer(self.key, "lab", self.device, "r1", "fw", parsed["version"],
                                   hashlib.sha256(self.manifest).hexdigest(), len(self.manifest), 300, 3,
                                   int(time.time() * 1000))
        self.client.publish(topics.build("lab", self.device, ota.OTA), payload, qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        m = ota.decode_board(self.key, "lab", self.device, message.payload)
        if m["op"] == "state":
            self.states.append(m)
            return
        data = self.manifest if m["f"] == -1 else self.files[m["f"]]
        part = data[m["o"]:m["o"] + m["n"]]
        self.chunks += 1
        self.client.publish(topics.build("lab", self.device, ota.OTA),
                            ota.encode_chunk_header("r1", m["f"], m["o"], len(part)) + part, qos=1)

    def state(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.states if m["state"] == name), None)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def figures(log: str) -> dict[str, Any]:
    """Heap at start, names and pools at start, peak heap in use and the most names seen, from a board's output."""
    out: dict[str, Any] = {"memory_error": "MemoryError" in log or "out of memory" in log}
    found = re.search(r"bench: start_alloc=(\d+)\nqstr pool: n_pool=(\d+), n_qstr=(\d+)", log)
    if found:
        out["start_kb"] = int(found.group(1)) / 1024
        out["pools"], out["names"] = int(found.group(2)), int(found.group(3))
    allocs = [int(v) for v in re.findall(r"bench: (?:start_)?alloc=(\d+)", log)]
    out["peak_kb"] = max(allocs) / 1024 if allocs else float("nan")
    pools = [(int(p), int(n)) for p, n in re.findall(r"qstr pool: n_pool=(\d+), n_qstr=(\d+)", log)]
    out["max_pools"], out["max_names"] = max(pools) if pools else (0, 0)
    return out


def start(work: Path, script: Path, heap: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    micropython = Path(sys.executable).with_name("micropython")
    with log.open("ab") as out:
        return subprocess.Popen([str(micropython), "-X", f"heapsize={kb(heap)}", str(script), str(config)],
                                cwd=work, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_one(work: Path, kind: str, old: Path, new: Path, broker: Mosquitto, store: TrustStore, heap: str,
            seconds: float, device: str) -> dict[str, Any]:
    identity = store.board(device)
    assert identity is not None
    cfg = {
        "site": "lab", "device": device,
        "mqtt": {"host": broker.host, "port": broker.port, "tls": True, "ca": str(store.ca_file),
                 "user": identity.user, "password": identity.password, "keepalive": 30},
        "commands": {"key": identity.cmd_key.hex()},
        "sensors": {name: {"driver": "sim", "interval": 0.25, "quantities": q} for name, q in SENSORS.items()},
        "buffer": {"ram": 8, "file": 0},
        "health_interval": 1,
    }
    board = work / device
    if kind == "flat":
        board.mkdir()
        (board / "board.json").write_text(json.dumps(cfg))
        root, first = str(old), "import firmware.main"
    else:
        fw.install_unix(board, old, cfg)
        root, first = str(board), "import loader"
    script = board / "bootstrap.py"
    script.write_text(BOOTSTRAP % (root, first))
    hub = HubStandIn(broker, device, store)
    server = Server(broker, device, store, new) if kind == "update" else None
    logs = [board / f"console-{n}.log" for n in range(1, 5)]
    result: dict[str, Any] = {"kind": kind, "heap": heap}
    process = start(board, script, heap, board / "board.json", logs[0])
    t0 = time.monotonic()
    try:
        if server is None:
            time.sleep(seconds)
            result["ran"] = process.poll() is None
        else:
            time.sleep(3)
            server.offer()
            code = process.wait(seconds + 120)  # the offer: a reset into update mode
            if code == 3:
                process = start(board, script, heap, board / "board.json", logs[1])
                code = process.wait(seconds + 120)
            result["download_s"] = time.monotonic() - t0 - 3
            result["installed"] = code == 3 and server.state("installed") is not None
            result["chunks"] = server.chunks
            process = start(board, script, heap, board / "board.json", logs[2])  # the reset: into the trial
            code = process.wait(60)  # committed by the loader (or rolled back): a reset into update mode
            process = start(board, script, heap, board / "board.json", logs[3])  # which sends the report
            code = process.wait(60)
            result["ran"] = result["installed"] and code == 3 and server.state("healthy") is not None
    except subprocess.TimeoutExpired:
        result["ran"] = False
    finally:
        stop(process)
        hub.stop()
        if server is not None:
            server.stop()
    texts = [log.read_text(errors="replace") for log in logs if log.exists()]
    result.update(figures(texts[0]))
    for name, text in zip(("update", "trial", "report"), texts[1:], strict=False):
        more = figures(text)
        result[name + "_peak_kb"] = more["peak_kb"]
        result[name + "_max_names"] = more["max_names"]
        result["memory_error"] = result["memory_error"] or more["memory_error"]
    result["ran"] = result["ran"] and not result["memory_error"]
    result["tail"] = "\n".join("\n".join(texts).splitlines()[-4:])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heaps", default="128k,160k", help="micropython -X heapsize values, comma-separated")
    parser.add_argument("--chunks", default="512", help="chunk sizes the board asks for (firmware/ota.py _CHUNK)")
    parser.add_argument("--kinds", default="flat,slots,update", help="runs: flat, slots, update")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of a normal run (flat, slots)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the boards' consoles)")
    parser.add_argument("--nodelay", action="store_true",
                        help="set_tcp_nodelay true on the broker (docs/ota.md, Speed): the download without Nagle")
    parser.add_argument("--source", type=Path, default=REPO,
                        help="the repository whose firmware runs (e.g. a checkout of an older commit: --kinds flat)")
    args = parser.parse_args()
    heaps = [h.strip() for h in args.heaps.split(",") if h.strip()]
    chunks = [int(c) for c in args.chunks.split(",") if c.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    work = Path(tempfile.mkdtemp(prefix="qala-otabench-"))
    results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    try:
        new = build(work / "new", "0.2.0", chunks[0])
        olds = {chunk: build(work / f"old-{chunk}", "0.1.0", chunk, args.source) for chunk in chunks}
        devices = [f"b-{k}-{h}-{c}-{r}" for k in kinds for h in heaps for c in chunks for r in range(args.runs)]
        provision.init_store(work / "store", "lab")
        provision.add_boards(work / "store", devices)
        provision.add_hub(work / "store", "otaserver")
        store = TrustStore.load(work / "store")
        extra = ["set_tcp_nodelay true"] if args.nodelay else []
        with Mosquitto(work / "mosquitto", store=store.root, extra_config=extra) as broker:
            for run in range(args.runs):
                for kind in kinds:
                    for heap in heaps:
                        for chunk in chunks if kind == "update" else chunks[:1]:
                            r = run_one(work, kind, olds[chunk], new, broker, store, heap, args.seconds,
                                        f"b-{kind}-{heap}-{chunk}-{run}")
                            results.setdefault((kind, heap, chunk), []).append(r)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"real firmware, .mpy files in the heap, 4 sim sensors x 4 quantities every 0.25 s, TLS, confirmations; "
          f"{args.runs} run(s) each; update: {new.name} offered 3 s after start")
    columns = (("start KB", "start_kb", "%.1f", 9), ("names", "names", "%d", 6), ("pools", "pools", "%d", 6),
               ("peak KB", "peak_kb", "%.1f", 9), ("most names", "max_names", "%d", 11),
               ("pools then", "max_pools", "%d", 11), ("download s", "download_s", "%.1f", 11),
               ("chunks", "chunks", "%d", 7), ("update peak KB", "update_peak_kb", "%.1f", 15),
               ("names then", "update_max_names", "%d", 11), ("trial peak KB", "trial_peak_kb", "%.1f", 14),
               ("names then", "trial_max_names", "%d", 11), ("report peak KB", "report_peak_kb", "%.1f", 15),
               ("names then", "report_max_names", "%d", 11))
    print(f"  {'run':>6} {'heap':>5} {'chunk':>6} {'ran':>4} " + " ".join(t.rjust(w) for t, _, _, w in columns))
    for (kind, heap, chunk), rs in results.items():
        ran = sum(bool(r["ran"]) for r in rs)
        print(f"  {kind:>6} {heap:>5} {chunk if kind == 'update' else '-':>6} {f'{ran}/{len(rs)}':>4} "
              + " ".join(spread([float(r.get(key, float("nan"))) for r in rs], fmt).rjust(w)
                         for _, key, fmt, w in columns))
        if ran < len(rs):
            print("         " + next(r for r in rs if not r["ran"])["tail"].replace("\n", "\n         "))
    return 0


if __name__ == "__main__":
    from bench._run import run

    run(main)
