"""The measurement catalogue: every quantity a Qala board or meter reports, with unit and plausible range.

A quantity key is what travels on the wire (telemetry `r` keys) and becomes the InfluxDB field name.
`lo`/`hi` bound what is physically plausible for city deployments, not what is healthy: a value outside is
kept but flagged `range` (see `check`), never dropped, because a sensor reading 0 ppm CO2 is a fact an
operator must see. Units are SI or the trade's usual unit, spelled as in the `UNIT` column of the docs.
What each quantity means is in protocols/catalogue_text.py, which boards never load. COUNTERS are meter
registers that only grow (dashboards chart their differences).
"""

from protocols.errors import ProtocolError, describe

# domain names
AIR = "air"
ENERGY = "energy"
WATER = "water"
GAS = "gas"
HEAT = "heat"
DEVICE = "device"
ACTUATOR = "actuator"
DOMAINS = (AIR, ENERGY, WATER, GAS, HEAT, DEVICE, ACTUATOR)

# quantity: (domain, unit, lo, hi); ranges are whole numbers so a board holds no float objects for them
QUANTITIES = {
    # air quality
    "pm1": (AIR, "ug/m3", 0, 1000),
    "pm25": (AIR, "ug/m3", 0, 1000),
    "pm10": (AIR, "ug/m3", 0, 1000),
    "co2": (AIR, "ppm", 300, 10000),
    "tvoc": (AIR, "ppb", 0, 60000),
    "voc_index": (AIR, "index", 0, 500),
    "no2": (AIR, "ppb", 0, 2000),
    "o3": (AIR, "ppb", 0, 1000),
    "temperature": (AIR, "degC", -50, 70),
    "humidity": (AIR, "%RH", 0, 100),
    "pressure": (AIR, "hPa", 500, 1100),
    "aqi": (AIR, "index", 0, 500),
    # electrical energy
    "voltage": (ENERGY, "V", 0, 500),
    "current": (ENERGY, "A", 0, 1000),
    "power_active": (ENERGY, "W", -1000000, 1000000),
    "power_reactive": (ENERGY, "var", -1000000, 1000000),
    "power_apparent": (ENERGY, "VA", 0, 1000000),
    "power_factor": (ENERGY, "", -1, 1),
    "frequency": (ENERGY, "Hz", 45, 65),
    "energy_import": (ENERGY, "kWh", 0, 1000000000),
    "energy_export": (ENERGY, "kWh", 0, 1000000000),
    # water
    "water_flow": (WATER, "m3/h", 0, 1000),
    "water_volume": (WATER, "m3", 0, 1000000000),
    # gas
    "gas_volume": (GAS, "m3", 0, 1000000000),
    # district heating
    "heat_supply_temp": (HEAT, "degC", 0, 150),
    "heat_return_temp": (HEAT, "degC", 0, 150),
    "heat_flow": (HEAT, "m3/h", 0, 1000),
    "heat_power": (HEAT, "kW", 0, 100000),
    "heat_energy": (HEAT, "kWh", 0, 1000000000),
    # device health
    "uptime": (DEVICE, "s", 0, 1000000000),
    "heap_free": (DEVICE, "B", 0, 1000000000),
    "heap_max_block": (DEVICE, "B", 0, 1000000000),
    "rssi": (DEVICE, "dBm", -120, 0),
    "buffered": (DEVICE, "", 0, 10000000),
    "dropped": (DEVICE, "", 0, 1000000000),
    "resets": (DEVICE, "", 0, 1000000000),
    "reconnects": (DEVICE, "", 0, 1000000000),
    "sensor_faults": (DEVICE, "", 0, 1000000000),
    # actuator positions, as reported back by boards and meters
    "setpoint": (ACTUATOR, "", -1000000, 1000000),
    # device health added later: appended, as protocols/boardmap.py's register slots follow this order
    "self_resets": (DEVICE, "", 0, 1000000000),
    "lagging": (DEVICE, "", 0, 1),
}

# meter registers: monotonically increasing totals
COUNTERS = ("energy_import", "energy_export", "water_volume", "gas_volume", "heat_energy", "uptime", "dropped",
            "resets", "reconnects", "sensor_faults", "self_resets")

# reading quality flags, carried into InfluxDB as the `quality` tag
OK = "ok"
WARMUP = "warmup"
RANGE = "range"
FAULT = "fault"
STALE = "stale"
LOST = "lost"
QUALITIES = (OK, WARMUP, RANGE, FAULT, STALE, LOST)


def info(quantity: str) -> tuple[str, str, int, int]:
    """(domain, unit, lo, hi) of a catalogued quantity; ProtocolError if unknown."""
    try:
        return QUANTITIES[quantity]
    except (KeyError, TypeError):
        raise ProtocolError("quantity", "unknown quantity %s" % describe(quantity)) from None


def unit(quantity: str) -> str:
    return str(info(quantity)[1])


def domain(quantity: str) -> str:
    return str(info(quantity)[0])


def in_range(quantity: str, value: float) -> bool:
    """True if `value` lies within the quantity's plausible range (bounds included)."""
    row = info(quantity)
    return bool(row[2] <= value <= row[3])


def check(quantity: str, value: float, quality: str = OK) -> str:
    """The quality a reading should carry: `range` when an `ok` value falls outside the plausible range.

    A quality the sender already set (warmup, fault, ...) is kept: it says more than the range does.
    """
    if quality == OK and not in_range(quantity, value):
        return RANGE
    return quality


def by_domain(name: str) -> list[str]:
    """The quantity keys of one domain, sorted."""
    if name not in DOMAINS:
        raise ProtocolError("domain", "unknown domain %s" % describe(name))
    return sorted(q for q in QUANTITIES if QUANTITIES[q][0] == name)
