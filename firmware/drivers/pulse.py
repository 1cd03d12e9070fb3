"""Pulse counter for water and gas meters: a reed contact or open collector on an input pin with pull-up.

One pulse per `options.litres_per_pulse` litres (default 1; gas meters often 10). The pin
(firmware/hw/buses.py pulse_pin) interrupts on the falling edge. The handler follows MicroPython's ISR
rules: it allocates nothing (small-int arithmetic on attributes and a clock read), so it is safe as a hard
IRQ. An edge closer than `options.debounce_ms` (default 50) to the last counted one is a contact bounce:
counted apart (`bounced`), otherwise ignored.

read() returns the volume in m3 (`water_volume` or `gas_volume`, whichever the sensor's quantities name,
plus `options.offset_m3`, the meter's register when counting began) and, if the quantities include
`water_flow`, the flow in m3/h from the time between the last two pulses, or from the time since the last
pulse when that is longer (so a flow that stops falls off), 0 after 10 minutes without a pulse and until the
second pulse after a start. Quality `range` for a flow above `options.max_flow` (m3/h, default 10; a DN20
household water meter's Q4 is 5).

The count survives resets in `<state dir>/<sensor>.pulses` (firmware/start.py puts the board's state
folder at `hw.state`): restored at start, rewritten (a temporary file, then a rename) at a read() when
`options.save_every` pulses (default 100) came since the last write, or `options.save_s` seconds (default
600) passed with at least one new pulse, and by close() on a clean stop. A power cut loses the pulses since
the last write: at most the fewer of (save_every - 1 + the pulses of one interval) and (the pulses of
save_s seconds + one interval). The app has no stop path that calls close() yet: a board that is switched
off or killed loses that much. Without a state folder (tests) nothing is kept.
"""

import os

from firmware.drivers.base import Driver, flag
from firmware.hw import buses
from protocols._compat import const

_IDLE_MS = const(600000)


class Pulse(Driver):
    name = "pulse"

    def __init__(self, pin, clock, opts, quantities=("water_volume",), path=None):
        super().__init__(self.name, opts)
        self.pin = pin
        self.clock = clock
        self.lpp = opts.get("litres_per_pulse", 1)
        self.debounce = opts.get("debounce_ms", 50)
        self.offset = opts.get("offset_m3", 0)
        self.max_flow = opts.get("max_flow", 10)
        self.save_every = opts.get("save_every", 100)
        self.save_ms = int(opts.get("save_s", 600) * 1000)
        self.volume = "gas_volume" if "gas_volume" in quantities else "water_volume"
        self.flow = "water_flow" in quantities
        self.path = path
        self.count = self.restore()
        self.saved = self.count
        self.saved_at = clock()
        self.seen = 0  # pulses since start
        self.bounced = 0
        self.t_last = clock()
        self.t_prev = self.t_last
        self.save_errors = 0
        pin.irq(handler=self._edge, trigger=pin.IRQ_FALLING)

    def _edge(self, pin):
        t = self.clock()
        if self.seen and buses.ticks_diff(t, self.t_last) < self.debounce:
            self.bounced += 1
            return
        self.t_prev = self.t_last
        self.t_last = t
        self.seen += 1
        self.count += 1

    def restore(self):
        if self.path is None:
            return 0
        try:
            with open(self.path) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def save(self, n, now, force=False):
        if self.path is None or n == self.saved:
            return
        if not force and n - self.saved < self.save_every and buses.ticks_diff(now, self.saved_at) < self.save_ms:
            return
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write("%d" % n)
            try:
                os.rename(tmp, self.path)
            except OSError:  # FAT will not rename onto an existing file
                os.remove(self.path)
                os.rename(tmp, self.path)
        except OSError:
            self.save_errors += 1
            return
        self.saved = n
        self.saved_at = now

    def snapshot(self):
        """(count, seen, last, prev) read consistently while the handler may run between the reads."""
        for _ in range(3):
            n = self.count
            snap = (n, self.seen, self.t_last, self.t_prev)
            if n == self.count:
                break
        return snap

    def sample(self):
        n, seen, last, prev = self.snapshot()
        now = self.clock()
        self.save(n, now)
        out = [(self.volume, round(self.offset + n * self.lpp / 1000, 4))]
        if self.flow:
            f = 0.0
            since = buses.ticks_diff(now, last)
            if seen > 1 and since < _IDLE_MS:
                f = round(self.lpp * 3600 / max(since, buses.ticks_diff(last, prev), 1), 4)
            out.append(("water_flow", f, flag(f, 0, self.max_flow)))
        if self.stuck(n.to_bytes(8, "little")):
            out[0] = (out[0][0], out[0][1], "fault")
        return out

    def close(self):
        """Write the count now (a clean stop)."""
        self.save(self.count, self.clock(), True)


def make(name, spec, hw):
    state = getattr(hw, "state", None)
    return Pulse(buses.pulse_pin(spec, hw), hw.uptime_ms, spec["options"], spec["quantities"],
                 state + "/" + name + ".pulses" if state else None)
