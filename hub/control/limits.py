"""Pure limit checks for a setpoint, against the limits a device announced (birth caps or Modbus profile).

`check(spec, value, last, now_ms)` returns None when the setpoint may be sent, or the reason it may not,
in the words the board uses for the same refusal. Rules, in order:
- the value is a finite number (a bool is not a number); a relay takes only its min or its max (off/on);
- min <= value <= max;
- `rate` (largest change per second): |value - last value| <= rate * seconds since the last change;
- relays: `min_on` seconds must have passed since it was switched on before it may be switched off, and
  `min_off` seconds since it was switched off before it may be switched on (compressors, pumps).
`last` is the latest applied value and when it changed (hub clock ms), or None when unknown: rate and
minimum times are then not checked here (the board, which always knows, checks them again).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping


class Last(NamedTuple):
    value: float
    changed_ms: int


def fmt(value: float) -> str:
    return f"{value:g}"


def number(value: object) -> float | None:
    """value as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def check(spec: Mapping[str, object], value: float, last: Last | None, now_ms: int) -> str | None:  # noqa: PLR0911 - a return per rule, in order
    """None if `value` is allowed now, else why not."""
    lo = number(spec.get("min"))
    hi = number(spec.get("max"))
    if lo is not None and value < lo:
        return f"{fmt(value)} below min {fmt(lo)}"
    if hi is not None and value > hi:
        return f"{fmt(value)} above max {fmt(hi)}"
    relay = spec.get("kind") == "relay"
    if relay and value not in (lo, hi):
        return f"{fmt(value)} is neither off ({fmt(lo or 0)}) nor on ({fmt(hi or 1)}) for a relay"
    if last is None or value == last.value:
        return None
    elapsed = max(0.0, (now_ms - last.changed_ms) / 1000)
    rate = number(spec.get("rate"))
    if rate is not None and rate > 0 and abs(value - last.value) > rate * elapsed + 1e-9:
        return f"change of {fmt(abs(value - last.value))} in {elapsed:.1f} s exceeds rate {fmt(rate)}/s"
    if relay:
        was_on = last.value != lo
        key = "min_on" if was_on else "min_off"
        need = number(spec.get(key))
        if need is not None and elapsed < need:
            state = "on" if was_on else "off"
            return f"{key}: {state} for {elapsed:.1f} s, less than {fmt(need)} s"
    return None
