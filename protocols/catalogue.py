"""The measurement catalogue: every quantity a Qala board or meter reports, with unit and plausible range.

A quantity key is what travels on the wire (telemetry `r` keys) and becomes the InfluxDB field name.
`lo`/`hi` bound what is physically plausible for city deployments, not what is healthy: a value outside is
kept but flagged `range` (see `check`), never dropped, because a sensor reading 0 ppm CO2 is a fact an
operator must see. Units are SI or the trade's usual unit, spelled as in the `UNIT` column of the docs.
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

# quantity: (domain, unit, lo, hi, description)
QUANTITIES = {
    # air quality
    "pm1": (AIR, "ug/m3", 0.0, 1000.0, "particulate matter <= 1 um"),
    "pm25": (AIR, "ug/m3", 0.0, 1000.0, "particulate matter <= 2.5 um"),
    "pm10": (AIR, "ug/m3", 0.0, 1000.0, "particulate matter <= 10 um"),
    "co2": (AIR, "ppm", 300.0, 10000.0, "carbon dioxide"),
    "tvoc": (AIR, "ppb", 0.0, 60000.0, "total volatile organic compounds"),
    "voc_index": (AIR, "index", 0.0, 500.0, "Sensirion VOC index (100 = average)"),
    "no2": (AIR, "ppb", 0.0, 2000.0, "nitrogen dioxide"),
    "o3": (AIR, "ppb", 0.0, 1000.0, "ozone"),
    "temperature": (AIR, "degC", -50.0, 70.0, "air temperature"),
    "humidity": (AIR, "%RH", 0.0, 100.0, "relative humidity"),
    "pressure": (AIR, "hPa", 500.0, 1100.0, "barometric pressure"),
    "aqi": (AIR, "index", 0.0, 500.0, "US EPA air quality index from PM2.5 and PM10"),
    # electrical energy
    "voltage": (ENERGY, "V", 0.0, 500.0, "RMS voltage"),
    "current": (ENERGY, "A", 0.0, 1000.0, "RMS current"),
    "power_active": (ENERGY, "W", -1.0e6, 1.0e6, "active power (negative when exporting)"),
    "power_reactive": (ENERGY, "var", -1.0e6, 1.0e6, "reactive power"),
    "power_apparent": (ENERGY, "VA", 0.0, 1.0e6, "apparent power"),
    "power_factor": (ENERGY, "", -1.0, 1.0, "power factor"),
    "frequency": (ENERGY, "Hz", 45.0, 65.0, "grid frequency"),
    "energy_import": (ENERGY, "kWh", 0.0, 1.0e9, "imported active energy (meter register)"),
    "energy_export": (ENERGY, "kWh", 0.0, 1.0e9, "exported active energy (meter register)"),
    # water
    "water_flow": (WATER, "m3/h", 0.0, 1000.0, "water flow rate"),
    "water_volume": (WATER, "m3", 0.0, 1.0e9, "water volume (meter register)"),
    # gas
    "gas_volume": (GAS, "m3", 0.0, 1.0e9, "gas volume (meter register)"),
    # district heating
    "heat_supply_temp": (HEAT, "degC", 0.0, 150.0, "supply (flow) temperature"),
    "heat_return_temp": (HEAT, "degC", 0.0, 150.0, "return temperature"),
    "heat_flow": (HEAT, "m3/h", 0.0, 1000.0, "heating water flow rate"),
    "heat_power": (HEAT, "kW", 0.0, 1.0e5, "thermal power"),
    "heat_energy": (HEAT, "kWh", 0.0, 1.0e10, "thermal energy (meter register)"),
    # device health
    "uptime": (DEVICE, "s", 0.0, 1.0e10, "seconds since boot"),
    "heap_free": (DEVICE, "B", 0.0, 1.0e9, "free heap"),
    "heap_max_block": (DEVICE, "B", 0.0, 1.0e9, "largest free heap block"),
    "rssi": (DEVICE, "dBm", -120.0, 0.0, "Wi-Fi signal strength"),
    "buffered": (DEVICE, "", 0.0, 1.0e7, "readings waiting in the offline buffer"),
    "dropped": (DEVICE, "", 0.0, 1.0e12, "readings dropped from a full offline buffer since boot"),
    "resets": (DEVICE, "", 0.0, 1.0e9, "boots counted by the board"),
    "reconnects": (DEVICE, "", 0.0, 1.0e9, "uplink reconnects since boot"),
    "sensor_faults": (DEVICE, "", 0.0, 1.0e12, "sensor read failures since boot"),
    # actuator positions, as reported back by boards and meters
    "setpoint": (ACTUATOR, "", -1.0e6, 1.0e6, "an actuator's applied setpoint, in the actuator's unit"),
}

# reading quality flags, carried into InfluxDB as the `quality` tag
OK = "ok"
WARMUP = "warmup"
RANGE = "range"
FAULT = "fault"
STALE = "stale"
LOST = "lost"
QUALITIES = (OK, WARMUP, RANGE, FAULT, STALE, LOST)


def info(quantity: str) -> tuple[str, str, float, float, str]:
    """(domain, unit, lo, hi, description) of a catalogued quantity; ProtocolError if unknown."""
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
