"""Messages cross between interpreters: what MicroPython encodes, CPython decodes to the same values, and back.

The MicroPython side runs the precompiled protocols/ as a board would: the encoder with only the modules a
board loads (telemetry_encode, status, control) in a 64k heap; the decoder with protocols.payloads, every kind
at once, in 96k. Signed cmd and ack payloads made on one side verify on the other (one HMAC, protocols/sign.py).
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

KEY = bytes(range(32))

ENCODE_ON_MICROPYTHON = """
import binascii
from protocols import control, status, telemetry_encode
KEY = bytes(range(32))
caps = {"sensors": {"air1": {"driver": "pms5003", "q": ["pm25", "pm10"]}},
        "actuators": {"fan1": {"kind": "pwm", "unit": "%", "min": 0, "max": 100, "failsafe": 20}}}
out = [
    telemetry_encode.encode_telemetry(41, 1795553687123, 3, "air1", [("pm25", 12.4), ("pm10", 20.0),
                                                                      ("co2", 1210, "warmup")]),
    telemetry_encode.encode_telemetry(0, 1795553687999, 0, "health", [("heap_free", 30123), ("rssi", -67.5),
                                                                       ("uptime", 12)]),
    status.encode_status("online", 1795553687123, 3, "0.1.0", caps),
    status.encode_status("offline"),
    control.encode_cmd(KEY, "lab", "t1", "c-1", "fan1", 80, 1795553687123, 1795553697123, 1795553687123),
    control.encode_ack(KEY, "lab", "t1", "c-1", "fan1", "rejected", 1795553687123, 1795553687123, None,
                       "150 above max 100"),
]
for data in out:
    print(binascii.hexlify(data).decode())
"""

DECODE_ON_MICROPYTHON = """
import binascii, json, sys
from protocols import payloads as p
KEY = bytes(range(32))
for line in sys.stdin.read().split():
    kind, data = line.split(":")
    data = binascii.unhexlify(data)
    if kind == "cmd":
        m = p.decode_cmd(data, KEY, "lab", "t1")
    elif kind == "ack":
        m = p.decode_ack(data, KEY, "lab", "t1")
    else:
        m = p.decode(kind, data)
    if kind == "telemetry":
        rows = sorted([[q, v, f] for q, v, f in m.readings])
        print(json.dumps([m.seq, m.ts, m.boot, m.sensor, rows]))
    elif kind == "status":
        print(json.dumps([m.state, m.ts, m.boot, m.fw, m.caps, m.error]))
    elif kind == "cmd":
        print(json.dumps([m.id, m.actuator, m.value, m.ts, m.expires, m.n]))
    else:
        print(json.dumps([m.id, m.actuator, m.status, m.value, m.reason, m.ts, m.n]))
"""


def _micropython(binary: str, bundle: Path, script: str, stdin: str = "", heap: str = "64k") -> list[str]:
    env = {**os.environ, "MICROPYPATH": f"{bundle}:.frozen"}
    # cwd is the bundle: MicroPython puts "" first on sys.path, and the source tree must not shadow it
    done = subprocess.run([binary, "-X", f"heapsize={heap}", "-c", script], input=stdin, capture_output=True, text=True,
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
    cmd = p.decode_cmd(blobs[4], KEY, "lab", "t1")  # signed on MicroPython, verified here
    assert (cmd.id, cmd.actuator, cmd.value, cmd.expires, cmd.n) == ("c-1", "fan1", 80.0, TS + 10000, TS)
    assert blobs[4] == p.encode_cmd(KEY, "lab", "t1", "c-1", "fan1", 80, TS, TS + 10000, TS)  # the same bytes
    ack = p.decode_ack(blobs[5], KEY, "lab", "t1")
    assert (ack.status, ack.reason, ack.n) == ("rejected", "150 above max 100", TS)
    # telemetry bytes are identical whichever interpreter encodes them
    assert blobs[0] == p.encode_telemetry(41, TS, 3, "air1", [("pm25", 12.4), ("pm10", 20.0), ("co2", 1210, "warmup")])


def test_cpython_encodes_micropython_decodes(micropython_binary: str, micropython_bundle: Path) -> None:
    messages = [
        ("telemetry", p.encode_telemetry(7, TS, 2, "env1", [("temperature", -12.75), ("humidity", 81.5),
                                                              ("pressure", 99999)])),
        ("status", p.encode_status("safe", TS, 2, "0.1.0", error='config: "wifi.ssid" required')),
        ("status", p.encode_status("online", TS, 2, "0.1.0", CAPS)),
        ("cmd", p.encode_cmd(KEY, "lab", "t1", "c-9", "fan1", 55.5, TS, TS + 1, 7)),
        ("ack", p.encode_ack(KEY, "lab", "t1", "c-9", "fan1", "applied", TS, 7, value=55.5)),
    ]
    stdin = "\n".join(f"{kind}:{data.hex()}" for kind, data in messages)
    rows = [json.loads(line) for line in _micropython(micropython_binary, micropython_bundle, DECODE_ON_MICROPYTHON,
                                                       stdin, heap="96k")]
    assert rows[0] == [7, TS, 2, "env1", [["humidity", 81.5, "ok"], ["pressure", 99999.0, "range"],
                                          ["temperature", -12.75, "ok"]]]
    assert rows[1] == ["safe", TS, 2, "0.1.0", None, 'config: "wifi.ssid" required']
    assert rows[2] == ["online", TS, 2, "0.1.0", CAPS, None]
    assert rows[3] == ["c-9", "fan1", 55.5, TS, TS + 1, 7]  # verified on MicroPython
    assert rows[4] == ["c-9", "fan1", "applied", 55.5, None, TS, 7]
