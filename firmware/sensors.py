"""The sensor interface and the driver registry.

A sensor is an object built by its driver module's `make(name, spec, hw)` from the board config
(`spec` holds driver, interval, warmup, quantities, pins, options). It has `read()`, which returns a list of
(quantity, value) or (quantity, value, quality) tuples, or raises when the device fails; the app catches,
logs and counts the failure and carries on. `warmup` (seconds since boot) marks early readings `warmup`.
Drivers receive the hardware layer and build their own buses from `pins`; byte-level drivers (PMS5003,
SCD4x, BME280, PZEM...) plug in by adding a module under firmware/drivers/ and a line to DRIVERS.
"""

# driver name -> module under firmware.drivers; imported only when a config names it. Keep each name equal to
# its module's: a running board imports the driver by name without this module (firmware.app.Board.sampler)
DRIVERS = {
    "sim": "sim",
    "pms5003": "pms5003",
    "scd4x": "scd4x",
    "bme280": "bme280",
    "pzem004t": "pzem004t",
    "pulse": "pulse",
    "ds18b20": "ds18b20",
    "sgp40": "sgp40",
}


class UnknownDriverError(ValueError):
    pass


def make(name, spec, hw):
    module = DRIVERS.get(spec["driver"])
    if module is None:
        raise UnknownDriverError("sensors.%s.driver: no driver %r in this firmware (have: %s)" % (
            name, spec["driver"], ", ".join(sorted(DRIVERS))))
    mod = __import__("firmware.drivers." + module, None, None, ("make",))
    return mod.make(name, spec, hw)
