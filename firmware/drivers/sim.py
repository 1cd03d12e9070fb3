"""The `sim` driver: plausible, slowly changing values for any catalogue quantity, with no hardware.

Runs on every port (the unix port's only sensor; on a board it is useful for bring-up). Each quantity follows
a slow sine (period about an hour) around a typical city value with a little noise, inside the catalogue's
plausible range; meter registers (energy, volumes) only grow. `options.fault_every` = N makes every Nth read
raise, to exercise the app's fault path; `options.seed` shifts the phase between boards; `options.limit` = N
makes it stop after N samples (nothing more is sent: a test then knows exactly what the board produced);
`options.leak` = N keeps N bytes more on every read, a memory leak that ends in MemoryErrors everywhere (a
test of the board's vitals, firmware/vitals.py).
Its table of typical values stands in for the catalogue, which a board does not keep in RAM while it runs
(tests/firmware/test_sim_driver.py checks every value against the catalogue's ranges).
"""

import math
import os

# typical value and swing per quantity; meter registers (_COUNTERS) grow from 0 instead
_TYPICAL = {
    "pm1": (8, 6), "pm25": (12, 9), "pm10": (20, 14), "co2": (650, 250), "tvoc": (150, 100),
    "voc_index": (100, 40), "no2": (20, 15), "o3": (30, 20), "temperature": (12, 8), "humidity": (55, 20),
    "pressure": (1013, 8), "aqi": (45, 25), "voltage": (230, 4), "current": (6, 5),
    "power_active": (1200, 900), "power_reactive": (150, 100), "power_apparent": (1300, 900),
    "power_factor": (0.95, 0.04), "frequency": (50, 0.05), "water_flow": (1.5, 1.2),
    "heat_supply_temp": (75, 10), "heat_return_temp": (45, 8), "heat_flow": (2, 1.5), "heat_power": (40, 30),
    "rssi": (-65, 10), "setpoint": (50, 20),
}
_COUNTERS = ("energy_import", "energy_export", "water_volume", "gas_volume", "heat_energy")


class SimSensor:
    def __init__(self, name, spec, hw):
        self.quantities = spec["quantities"]
        opts = spec["options"]
        self.fault_every = opts.get("fault_every", 0)
        self.limit = opts.get("limit", 0)
        self.leak = (opts["leak"], []) if opts.get("leak") else None  # (bytes per read, what was kept)
        self.phase = opts.get("seed", 0) + len(name)
        self.hw = hw
        self.n = 0
        self.total = 0.0

    def read(self):
        if self.limit and self.n >= self.limit:
            return []
        self.n += 1
        if self.leak:
            self.leak[1].append(bytearray(self.leak[0]))
        if self.fault_every and self.n % self.fault_every == 0:
            raise OSError("simulated fault on read %d" % self.n)
        t = self.hw.uptime_ms() / 570000 + self.phase
        out = []
        for i, q in enumerate(self.quantities):
            if q in _COUNTERS:
                self.total += 0.01
                out.append((q, round(self.total, 3)))
                continue
            base, swing = _TYPICAL.get(q) or (10, 2)
            v = base + swing * (math.sin(t + i) + (os.urandom(1)[0] - 128) / 2560)
            out.append((q, round(v, 2)))
        return out


def make(name, spec, hw):
    return SimSensor(name, spec, hw)
