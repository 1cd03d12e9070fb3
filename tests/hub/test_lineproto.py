"""The schema as line protocol: measurement = domain, tags site/device/sensor/quality, ms timestamps."""

from __future__ import annotations

from hub.ingest.process import status_readings
from hub.metrics import Metrics
from hub.model import Reading, telemetry_readings
from hub.sinks.lineproto import encode, encode_bytes
from protocols import payloads

TS = 1_795_553_687_123


def test_one_line_per_sensor_sample_with_the_same_quality() -> None:
    t = payloads.decode_telemetry(
        payloads.encode_telemetry(1, TS, 7, "air1", [("pm25", 12.4), ("pm10", 20), ("co2", 1210, "warmup")])
    )
    lines = encode(telemetry_readings("ast-01", "aq-0001", t.sensor, t.ts, t.readings))
    assert lines == [
        "air,device=aq-0001,quality=ok,sensor=air1,site=ast-01 pm10=20,pm25=12.4 1795553687123",
        "air,device=aq-0001,quality=warmup,sensor=air1,site=ast-01 co2=1210 1795553687123",
    ]


def test_domains_become_measurements() -> None:
    t = payloads.decode_telemetry(
        payloads.encode_telemetry(1, TS, 7, "meter", [("voltage", 230.5), ("water_volume", 12.0), ("rssi", -60)])
    )
    lines = encode(telemetry_readings("s", "m1", t.sensor, t.ts, t.readings))
    assert [line.split(",", 1)[0] for line in lines] == ["energy", "water", "device"]


def test_out_of_range_is_stored_flagged() -> None:
    t = payloads.decode_telemetry(payloads.encode_telemetry(1, TS, 7, "air1", [("co2", 50_000)]))
    (line,) = encode(telemetry_readings("s", "d", t.sensor, t.ts, t.readings))
    assert ",quality=range," in line
    assert " co2=50000 " in line


def test_status_and_escaping_of_string_fields() -> None:
    status = payloads.decode_status(
        payloads.encode_status("safe", ts=TS, boot=2, fw='1.0 "rc"', error="config: bad\npin")
    )
    (line,) = encode(status_readings("s", "d", status, 0))
    assert line == (
        'qala_device_status,device=d,quality=ok,sensor=status,site=s boot=2,error="config: bad pin",'
        'fw="1.0 \\"rc\\"",online=1,safe=1,state="safe" 1795553687123'
    )
    offline = payloads.decode_status(payloads.encode_status("offline"))
    (line,) = encode(status_readings("s", "d", offline, 42))
    assert line.endswith(' online=0,safe=0,state="offline" 42')


def test_hub_metrics_line() -> None:
    metrics = Metrics()
    metrics.messages_in = 3
    metrics.reject("bad_payload")
    (line,) = encode(metrics.snapshot("s", "hub-1", TS, {"spool_bytes": 10.0}))
    assert line.startswith("qala_hub,device=hub-1,quality=ok,sensor=hub,site=s ")
    assert "messages_in=3," in line
    assert "rejects_bad_payload=1," in line
    assert "spool_bytes=10" in line


def test_encode_bytes_terminates_every_line() -> None:
    readings = [
        Reading("air", "s", "d", "x", "ok", "pm25", 1.0, TS),
        Reading("air", "s", "d", "x", "ok", "pm10", 2.0, TS + 1),
    ]
    body, n = encode_bytes(readings)
    assert n == 2
    assert body.endswith(b"\n")
    assert body.count(b"\n") == 2
    assert encode_bytes([]) == (b"", 0)
