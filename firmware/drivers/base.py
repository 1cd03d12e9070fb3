"""What byte-level drivers share: bounded retries, stuck-value detection, quality flags, CRCs.

A driver subclasses `Driver` and implements `sample()`, which talks to the bus once and returns the list of
(quantity, value[, quality]) tuples, raising OSError (no answer) or FrameError (checksum, framing) on a bad
transaction. `read()` tries `options.retries` + 1 times (default 2 retries) and then raises OSError, which
the app counts as a sensor fault (health `sensor_faults`) while it marks the last value `fault` and goes on
with the other sensors. `stuck(raw)` reports the same raw data `options.stuck_after` times in a row (0: off).
"""

from protocols._compat import const

_RETRIES = const(2)


class FrameError(ValueError):
    """A frame or register read that failed its checksum or framing."""


class Driver:
    name = "?"
    stuck_default = 0

    def __init__(self, name, opts):
        self.name = name
        self.retries = opts.get("retries", _RETRIES)
        self.stuck_after = opts.get("stuck_after", self.stuck_default)
        self.same = 0
        self.raw = None
        self.errors = 0  # failed transactions, retried or not (tests and logs)

    def read(self):
        err = None
        for _ in range(self.retries + 1):
            try:
                return self.sample()
            except (OSError, FrameError) as exc:
                self.errors += 1
                err = exc
        msg = str(err)
        if not msg.startswith(self.name):
            msg = "%s: %s" % (self.name, msg or repr(err))
        raise OSError("%s after %d tries" % (msg, self.retries + 1))

    def stuck(self, raw):
        raw = bytes(raw)
        if raw == self.raw:
            self.same += 1
        else:
            self.same = 0
            self.raw = raw
        return 0 < self.stuck_after <= self.same


def flag(value, lo, hi, quality="ok"):
    """quality, or `range` if value is outside what the device can measure (its datasheet's range)."""
    return quality if lo <= value <= hi else "range"


def crc8(data, poly=0x31, init=0xFF):
    """CRC-8, MSB first: Sensirion's (poly 0x31, init 0xFF; 0xBEEF -> 0x92)."""
    crc = init
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc8_maxim(data):
    """Dallas/Maxim 1-Wire CRC-8 (x^8 + x^5 + x^4 + 1, LSB first, init 0): the DS18B20 ROM and scratchpad."""
    crc = 0
    for b in data:
        for _ in range(8):
            mix = (crc ^ b) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            b >>= 1
    return crc
