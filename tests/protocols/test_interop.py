"""Messages cross between interpreters: what MicroPython encodes, CPython decodes to the same values, and back.

The MicroPython side runs the precompiled protocols/ in a 64k heap, as a board would.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from protocols import payloads as p

pytestmark = pytest.mark.micropython

TS = 1795553687123
CAPS = {"sensors": {"air1": {"driver": "pms5003", "q": ["pm25", "pm10"]}},
        "actuators": {"fan1": {"kind": "pwm", "unit": "%", "min": 0, "max": 100, "failsafe": 20}}}

ENCODE_ON_MICROPYTHON = """
import binascii
from protocols import payloads as p
caps = {"sensors": {"air1": {"driver": "pms5003", "q": ["pm25", "pm10"]}},
        "actuators": {"fan1": {"kind": "pwm", "unit": "%", "min": 0, "max": 100, "failsafe": 20}}}
out = [
    p.encode_telemetry(41, 1795553687123, 3, "air1", [("pm25", 12.4), ("pm10", 20.0), ("co2", 1210, "warmup")]),
    p.encode_telemetry(0, 1795553687999, 0, "health", [("heap_free", 30123), ("rssi", -67.5), ("uptime", 12)]),
    p.encode_status("online", 1795553687123, 3, "0.1.0", caps),
    p.encode_status("offline"),
    p.encode_cmd("c-1", "fan1", 80, 1795553687123, 1795553697123),
    p.encode_ack("c-1", "fan1", "rejected", 1795553687123, reason="150 above max 100"),
]
for data in out:
    print(binascii.hexlify(data).decode())
"""

DECODE_ON_MICROPYTHON = """
import binascii, json, sys
from protocols import payloads as p
for line in sys.stdin.read().split():
    kind, data = line.split(":")
    m = p.decode(kind, binascii.unhexlify(data))
    if kind == "telemetry":
        rows = sorted([[q, v, f] for q, v, f in m.readings])
        print(json.dumps([m.seq, m.ts, m.boot, m.sensor, rows]))
    elif kind == "status":
        print(json.dumps([m.state, m.ts, m.boot, m.fw, m.caps, m.error]))
    elif kind == "cmd":
        print(json.dumps([m.id, m.actuator, m.value, m.ts, m.expires]))
    else:
        print(json.dumps([m.id, m.actuator, m.status, m.value, m.reason, m.ts]))
"""


def _micropython(binary: str, bundle: Path, script: str, stdin: str = "") -> list[str]:
    env = {**os.environ, "MICROPYPATH": f"{bundle}:.frozen"}
    # cwd is the bundle: MicroPython puts "" first on sys.path, and the source tree must not shadow it
    done = subprocess.run([binary, "-X", "heapsize=64k", "-c", script], input=stdin, capture_output=True, text=True,
                          env=env, cwd=bundle, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().split("\n")


def test_micropython_encodes_cpython_decodes(micropython_binary: str, micropython_bundle: Path) -> None:
    lines = _micropython(micropython_binary, micropython_bundle, ENCODE_ON_MICROPYTHON)
    blobs = [bytes.fromhex(line) for line in lines]
    tel = p.decode_telemetry(blobs[0])
    assert (tel.seq, tel.ts, tel.boot, tel.sensor) == (41, TS, 3, "air1")
    assert sorted(tel.readings) == [("co2", 1210.0, "warmup"), ("pm10", 20.0, "ok"), ("pm25", 12.4, "ok")]
    health = p.decode_telemetry(blobs[1])
    assert sorted(health.readings) == [("heap_free", 30123.0, "ok"), ("rssi", -67.5, "ok"), ("uptime", 12.0, "ok")]
    birth = p.decode_status(blobs[2])
    assert (birth.state, birth.fw, birth.caps) == ("online", "0.1.0", CAPS)
    assert p.decode_status(blobs[3]).state == "offline"
    cmd = p.decode_cmd(blobs[4])
    assert (cmd.id, cmd.actuator, cmd.value, cmd.expires) == ("c-1", "fan1", 80.0, TS + 10000)
    ack = p.decode_ack(blobs[5])
    assert (ack.status, ack.reason) == ("rejected", "150 above max 100")
    # telemetry bytes are identical whichever interpreter encodes them
    assert blobs[0] == p.encode_telemetry(41, TS, 3, "air1", [("pm25", 12.4), ("pm10", 20.0), ("co2", 1210, "warmup")])


def test_cpython_encodes_micropython_decodes(micropython_binary: str, micropython_bundle: Path) -> None:
    messages = [
        ("telemetry", p.encode_telemetry(7, TS, 2, "env1", [("temperature", -12.75), ("humidity", 81.5),
                                                              ("pressure", 99999)])),
        ("status", p.encode_status("safe", TS, 2, "0.1.0", error='config: "wifi.ssid" required')),
        ("status", p.encode_status("online", TS, 2, "0.1.0", CAPS)),
        ("cmd", p.encode_cmd("c-9", "fan1", 55.5, TS, TS + 1)),
        ("ack", p.encode_ack("c-9", "fan1", "applied", TS, value=55.5)),
    ]
    stdin = "\n".join(f"{kind}:{data.hex()}" for kind, data in messages)
    rows = [json.loads(line) for line in _micropython(micropython_binary, micropython_bundle, DECODE_ON_MICROPYTHON,
                                                       stdin)]
    assert rows[0] == [7, TS, 2, "env1", [["humidity", 81.5, "ok"], ["pressure", 99999.0, "range"],
                                          ["temperature", -12.75, "ok"]]]
    assert rows[1] == ["safe", TS, 2, "0.1.0", None, 'config: "wifi.ssid" required']
    assert rows[2] == ["online", TS, 2, "0.1.0", CAPS, None]
    assert rows[3] == ["c-9", "fan1", 55.5, TS, TS + 1]
    assert rows[4] == ["c-9", "fan1", "applied", 55.5, None, TS]
