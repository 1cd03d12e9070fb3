"""What every twin shares: fault switches, a step counter and slowly changing plausible values.

Fault switches, from `options.twin` in the board config (or set on the object in tests): `bad_checksum`,
`silent` (I2C NACK, UART silence, no 1-Wire presence), `stuck` (the same value every time), `out_of_range`
(a value the device cannot measure), `warming_up` (the device's own not-ready-yet answer). Each is False,
True (always) or a positive int: misbehave for that many transactions, then recover (a transient glitch,
for the drivers' retries). For the hub's detectors (docs/detect.md) two more, set on the object only (the
board config's list stays as it is: the firmware's qstr pool is nearly full): `spike` (a value
`spike_size` swings off, once per count) and `drift` (an offset growing by one swing every 50 values).
"""

import math

FAULTS = ("bad_checksum", "silent", "stuck", "out_of_range", "warming_up", "spike", "drift")


class Base:
    cannot = ()  # faults this device has no way to show (no checksum on its bus, no warm-up)
    extra = ()  # faults of this device only (the pulse meter's `bouncing`)
    spike_size = 12  # swings a `spike` adds to a value

    def __init__(self, faults, clock):
        self.faults = {}
        for key in faults:
            if key not in FAULTS + self.extra or key in self.cannot:
                raise ValueError("options.twin.%s: not a fault of this twin (faults: %s; not %s)" % (
                    key, ", ".join(FAULTS + self.extra), ", ".join(self.cannot) or "-"))
            self.faults[key] = faults[key]
        self.clock = clock
        self.n = 0
        self.drifted = 0

    def set(self, fault, value=True):
        self.faults[fault] = value

    def hit(self, fault):
        """True if the fault is on for this transaction; counts a transient fault down."""
        v = self.faults.get(fault, False)
        if v is True:
            return True
        if v:
            self.faults[fault] = v - 1
            return True
        return False

    def wave(self, base, swing, period=40):
        """base + swing * a slow sine of the step counter (frozen while `stuck`), with `drift` and `spike`."""
        if not self.faults.get("stuck"):
            self.n += 1
        value = base + swing * math.sin(self.n * 6.2832 / period)
        if self.faults.get("drift"):
            self.drifted += 1
            value += swing * self.drifted / 50
        if self.hit("spike"):
            value += swing * self.spike_size
        return value


def sensirion_crc(word):
    """Sensirion CRC-8 of a 16-bit word (poly 0x31, init 0xFF), written apart from the driver's on purpose."""
    crc = 0xFF
    for b in (word >> 8, word & 0xFF):
        crc ^= b
        for _ in range(8):
            crc = (crc << 1) ^ 0x31 if crc & 0x80 else crc << 1
            crc &= 0xFF
    return crc
