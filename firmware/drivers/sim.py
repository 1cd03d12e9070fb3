"""The `sim` driver: plausible, slowly changing values for any catalogue quantity, with no hardware.

Runs on every port (the unix port's only sensor; on a board it is useful for bring-up). Each quantity follows
a slow sine (period about an hour) around a typical city value with a little noise, inside the catalogue's
plausible range; meter registers (energy, volumes) only grow. `options.fault_every` = N makes every Nth read
raise, to exercise the app's fault path; `options.seed` shifts the phase between boards.
"""

import math
import os

from protocols import catalogue

# a few typical values (value, swing); other quantities sit at a fifth of their plausible range
_TYPICAL = {"co2": (650, 250), "temperature": (12, 8), "pressure": (1013, 8), "voltage": (230, 4),
            "frequency": (50, 0.05), "power_factor": (0.95, 0.04), "humidity": (55, 20)}


class SimSensor:
    def __init__(self, name, spec, hw):
        self.quantities = spec["quantities"]
        opts = spec["options"]
        self.fault_every = opts.get("fault_every", 0)
        self.phase = opts.get("seed", 0) + len(name)
        self.hw = hw
        self.n = 0
        self.total = 0.0

    def read(self):
        self.n += 1
        if self.fault_every and self.n % self.fault_every == 0:
            raise OSError("simulated fault on read %d" % self.n)
        t = self.hw.uptime_ms() / 570000 + self.phase
        out = []
        for i, q in enumerate(self.quantities):
            if catalogue.QUANTITIES[q][4].endswith("(meter register)"):
                self.total += 0.01
                out.append((q, round(self.total, 3)))
                continue
            lo, hi = catalogue.QUANTITIES[q][2:4]
            base, swing = _TYPICAL.get(q) or (lo + (hi - lo) / 5, (hi - lo) / 20)
            v = base + swing * (math.sin(t + i) + (os.urandom(1)[0] - 128) / 2560)
            out.append((q, round(v, 2)))
        return out


def make(name, spec, hw):
    return SimSensor(name, spec, hw)
