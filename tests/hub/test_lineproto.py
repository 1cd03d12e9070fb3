"""The schema as line protocol: measurement = domain, tags site/device/sensor/quality, ms timestamps."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from hub.ingest.process import status_readings
from hub.metrics import Metrics
from hub.model import Reading, telemetry_readings
from hub.sinks.lineproto import encode, encode_bytes, encode_telemetry, join
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


# --------------------------------------------------------------- the hand-written encoder against influxdb-client

HOSTILE = 'a ,=\\"\n\r\tzé#'
texts = st.text(alphabet=st.sampled_from(HOSTILE), max_size=6) | st.text(max_size=6)
values = st.floats(allow_nan=True, allow_infinity=True) | st.text(alphabet=st.sampled_from(HOSTILE), max_size=6) | \
    st.integers(-10**12, 10**12) | st.booleans() | st.sampled_from([1.0, -0.0, 1e16, 1.5e-7, 12.4, 230.0])


def _point_lines(readings: list[Reading]) -> list[str]:
    """influxdb-client's Point, grouped as encode groups (the reference)."""
    lines: list[str] = []
    point: Any = None
    key = None
    for r in readings:
        k = (r.measurement, r.site, r.device, r.sensor, r.quality, r.ts)
        if k != key:
            if point is not None:
                lines.append(point.to_line_protocol())
            key = k
            point = Point(r.measurement).tag("site", r.site).tag("device", r.device).tag("sensor", r.sensor)
            point = point.tag("quality", r.quality).time(r.ts, WritePrecision.MS)
        point.field(r.field, r.value)
    if point is not None:
        lines.append(point.to_line_protocol())
    return [line for line in lines if line]  # Point gives "" when every field was left out; encode skips it


readings_st = st.lists(
    st.builds(
        Reading,
        st.sampled_from(["air", "qala_hub"]) | texts.filter(lambda s: s and not s.startswith("#")),
        st.sampled_from(["ast-01"]) | texts,
        st.sampled_from(["d1", "d 2"]) | texts,
        st.sampled_from(["s1"]) | texts,
        st.sampled_from(["ok", "range"]),
        st.sampled_from(["pm25", "co2", "fw"]) | texts.filter(bool),
        values,
        st.sampled_from([TS, TS + 1]),
    ),
    max_size=12,
)


@given(readings_st)
def test_encode_equals_influxdb_client_point(readings: list[Reading]) -> None:
    assert encode(readings) == _point_lines(readings)


def test_escaping_of_tags_fields_and_strings() -> None:
    readings = [
        Reading("my air", "site,1", "dev=2", "s 3\\", "ok", "f=x y", 'say "hi" \\ there', TS),
        Reading("my air", "site,1", "dev=2", "s 3\\", "ok", "n", 230.0, TS),
        Reading("my air", "site,1", "dev=2", "s 3\\", "ok", "i", 7, TS),
    ]
    (line,) = encode(readings)
    assert line == _point_lines(readings)[0]
    assert line == ('my\\ air,device=dev\\=2,quality=ok,sensor=s\\ 3\\ ,site=site\\,1 '
                    'f\\=x\\ y="say \\"hi\\" \\\\ there",i=7i,n=230 1795553687123')


samples_st = st.lists(
    st.tuples(
        st.sampled_from(["pm25", "co2", "voltage", "water_flow", "rssi", "temperature"]),
        st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1.0, 230.0, -0.0]),
        st.sampled_from(["ok", "range", "warmup"]),
    ),
    min_size=1,
    max_size=8,
)


@given(samples_st, texts.filter(bool), texts.filter(bool))
def test_encode_telemetry_equals_encode_of_readings(values: list[tuple[str, float, str]], device: str,
                                                     sensor: str) -> None:
    from protocols.catalogue import QUANTITIES  # noqa: PLC0415

    lines = encode_telemetry("ast-01", device, sensor, TS, values, QUANTITIES)
    assert lines == encode(telemetry_readings("ast-01", device, sensor, TS, values))
    assert join(lines) == encode_bytes(telemetry_readings("ast-01", device, sensor, TS, values))[0]
