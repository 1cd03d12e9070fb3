"""What each catalogue quantity means, for documentation, dashboards and the hub's API.

Kept apart from protocols/catalogue.py so that boards, which never show these texts, do not hold them in RAM.
"""

DESCRIPTIONS = {
    # air quality
    "pm1": "particulate matter <= 1 um",
    "pm25": "particulate matter <= 2.5 um",
    "pm10": "particulate matter <= 10 um",
    "co2": "carbon dioxide",
    "tvoc": "total volatile organic compounds",
    "voc_index": "Sensirion VOC index (100 = average)",
    "no2": "nitrogen dioxide",
    "o3": "ozone",
    "temperature": "air temperature",
    "humidity": "relative humidity",
    "pressure": "barometric pressure",
    "aqi": "US EPA air quality index from PM2.5 and PM10",
    # electrical energy
    "voltage": "RMS voltage",
    "current": "RMS current",
    "power_active": "active power (negative when exporting)",
    "power_reactive": "reactive power",
    "power_apparent": "apparent power",
    "power_factor": "power factor",
    "frequency": "grid frequency",
    "energy_import": "imported active energy (meter register)",
    "energy_export": "exported active energy (meter register)",
    # water
    "water_flow": "water flow rate",
    "water_volume": "water volume (meter register)",
    # gas
    "gas_volume": "gas volume (meter register)",
    # district heating
    "heat_supply_temp": "supply (flow) temperature",
    "heat_return_temp": "return temperature",
    "heat_flow": "heating water flow rate",
    "heat_power": "thermal power",
    "heat_energy": "thermal energy (meter register)",
    # device health
    "uptime": "seconds since boot",
    "heap_free": "free heap",
    "heap_max_block": "largest free heap block",
    "rssi": "Wi-Fi signal strength",
    "buffered": "readings waiting in the offline buffer",
    "dropped": "readings dropped from a full offline buffer since boot",
    "resets": "boots counted by the board",
    "reconnects": "uplink reconnects since boot",
    "sensor_faults": "sensor read failures since boot",
    "self_resets": "resets the board made because it could not work (stalled, out of memory), since it was flashed",
    "lagging": "1 while the sender cannot keep up with the sampling (records wait and pile up), else 0",
    # actuator positions, as reported back by boards and meters
    "setpoint": "an actuator's applied setpoint, in the actuator's unit",
}
