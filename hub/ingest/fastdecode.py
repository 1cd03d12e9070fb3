"""Telemetry payload decode for the hub's hot path, with protocols.telemetry.decode_telemetry as the rule.

`decode(payload)` returns what `decode_telemetry(payload)` returns and raises what it raises. For a payload
that passes every rule it checks them in fewer Python calls (protocols/ is written for MicroPython too, one
small function per rule); at the first doubt it calls `decode_telemetry`, which then raises the precise
ProtocolError or decodes. tests/hub/test_fastdecode.py compares `_fast` with `decode_telemetry` on random
and mutated payloads.

Pure: no I/O. Imports protocols/ only.
"""

from __future__ import annotations

import json

from protocols import catalogue
from protocols.errors import ProtocolError
from protocols.fields import BOOT_MAX, SEQ_MAX, TS_MAX, TS_MIN, VERSIONS
from protocols.telemetry import KEYS, MAX_READINGS, MAX_TELEMETRY, QUALITIES, Telemetry, decode_telemetry
from protocols.topics import check_id

_KEYS = frozenset(KEYS)
_SENSORS_MAX = 10_000
_sensors: set[str] = set()
"""Sensor ids seen valid (an id that passed check_id always does)."""


def decode(payload: bytes) -> Telemetry:
    t = _fast(payload)
    return t if t is not None else decode_telemetry(payload)


def _fast(payload: object) -> Telemetry | None:  # noqa: C901, PLR0911, PLR0912 - one rule per line, as in protocols/
    """The decoded telemetry, or None when any rule might fail (decode_telemetry then decides)."""
    if type(payload) is not bytes or len(payload) > MAX_TELEMETRY:
        return None
    try:
        obj = json.loads(payload.decode("utf-8"))
    except Exception:  # noqa: BLE001 - whatever it is, decode_telemetry reports it
        return None
    if type(obj) is not dict or not _KEYS.issuperset(obj):
        return None
    version, seq, ts, boot = obj.get("v"), obj.get("seq"), obj.get("ts"), obj.get("boot")
    if type(version) is not int or version not in VERSIONS:
        return None
    if type(seq) is not int or not 0 <= seq <= SEQ_MAX:
        return None
    if type(ts) is not int or not TS_MIN <= ts <= TS_MAX:
        return None
    if type(boot) is not int or not 0 <= boot <= BOOT_MAX:
        return None
    sensor = obj.get("s")
    if type(sensor) is not str:
        return None
    if sensor not in _sensors:
        try:
            check_id("s", sensor)
        except ProtocolError:
            return None
        if len(_sensors) < _SENSORS_MAX:
            _sensors.add(sensor)
    values = obj.get("r")
    if type(values) is not dict or not values or len(values) > MAX_READINGS:
        return None
    flags: object = obj.get("q", {})
    if type(flags) is not dict:
        return None
    for quantity, quality in flags.items():
        if quantity not in values or quality not in QUALITIES:
            return None
    quantities = catalogue.QUANTITIES
    readings: list[tuple[str, float, str]] = []
    for quantity, value in values.items():
        row = quantities.get(quantity)
        if row is None:
            return None
        kind = type(value)
        if kind is float:
            number = value
        elif kind is int:
            try:
                number = float(value)
            except OverflowError:
                return None
        else:
            return None
        if number - number != 0.0:  # NaN or infinite
            return None
        quality = flags.get(quantity, catalogue.OK)
        if quality == catalogue.OK and not row[2] <= number <= row[3]:
            quality = catalogue.RANGE
        readings.append((quantity, number, quality))
    return Telemetry(seq, ts, boot, sensor, readings)
