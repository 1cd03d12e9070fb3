"""The board config validates the options of the pulse, ds18b20 and sgp40 drivers like every other key."""

from firmware.config import ConfigError, validate

MICROPYTHON_HEAP = "128k"  # the config validator loads the catalogue: more than 64k with the test itself


def _cfg(driver, quantities, options):
    sensor = {"driver": driver, "interval": 1, "quantities": quantities, "options": options}
    return {"site": "s", "device": "d", "mqtt": {"host": "h", "tls": False}, "sensors": {"m": sensor}}


def _refused(driver, quantities, options, text):
    try:
        validate(_cfg(driver, quantities, options))
    except ConfigError as exc:
        assert "sensors.m.options." in str(exc), exc
        assert text in str(exc), exc
        return
    raise AssertionError("accepted %r" % (options,))


def test_pulse_options():
    ok = {"litres_per_pulse": 10, "debounce_ms": 20, "save_every": 50, "save_s": 300, "max_flow": 6,
          "offset_m3": 1234.5, "twin": {"bouncing": 3}}
    assert validate(_cfg("pulse", ["gas_volume"], ok))["sensors"]["m"]["options"]["litres_per_pulse"] == 10
    _refused("pulse", ["water_volume"], {"litres_per_pulse": 0}, "litres_per_pulse: must be a positive number")
    _refused("pulse", ["water_volume"], {"debounce_ms": 50.5}, "debounce_ms: must be an integer")
    _refused("pulse", ["water_volume"], {"save_every": 0}, "save_every: must be in 1..1000000")
    _refused("pulse", ["water_volume"], {"offset_m3": -1}, "offset_m3: must be at least 0")


def test_ds18b20_roms():
    qs = ["heat_supply_temp", "heat_return_temp"]
    roms = {"heat_supply_temp": "2801000000000000", "heat_return_temp": "28020000000000AB"}
    assert validate(_cfg("ds18b20", qs, {"roms": roms}))["sensors"]["m"]["options"]["roms"] == roms
    _refused("ds18b20", qs, {"roms": {"heat_flow": "2801000000000000"}}, "roms: unknown key 'heat_flow'")
    _refused("ds18b20", qs, {"roms": {"heat_supply_temp": "28-01"}}, "must be a ROM code of 16 hex digits")


def test_sgp40_options():
    ok = {"humidity": 40, "temperature": 22.5, "gain": 0.2, "tau_h": 6}
    assert validate(_cfg("sgp40", ["voc_index"], ok))["sensors"]["m"]["options"]["gain"] == 0.2
    _refused("sgp40", ["voc_index"], {"humidity": 120}, "humidity: must be in 0..100")
    _refused("sgp40", ["voc_index"], {"tau_h": 0}, "tau_h: must be a positive number")
