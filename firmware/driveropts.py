"""Checks of driver-specific options (pulse, ds18b20, sgp40), apart from firmware/config.py.

Loaded by config.validate only when a sensor names one of these drivers, and dropped with it after start-up
(firmware/start.py): a board without them never holds this code, and config.py stays the size the heap
layout of a small board was measured with. Errors are config.ConfigError naming the key path, raised by the
checkers config passes in.
"""


def check(path, driver, o, quantities, _num, _int, _bad, _obj):
    """config.validate passes its own checkers in (the same names, so no name is interned for them): this
    module imports nothing, and config imports it only when a sensor needs it, so there is no import circle."""
    if driver == "pulse":
        for key in ("litres_per_pulse", "max_flow", "save_s"):
            if key in o:
                _num(path + key, o[key], positive=True)
        if "offset_m3" in o:
            _num(path + "offset_m3", o["offset_m3"], lo=0)
        if "debounce_ms" in o:
            _int(path + "debounce_ms", o["debounce_ms"], 0, 10000)
        if "save_every" in o:
            _int(path + "save_every", o["save_every"], 1, 1000000)
    elif driver == "sgp40":
        for key, lo, hi in (("humidity", 0, 100), ("temperature", -45, 130)):
            if key in o and not lo <= _num(path + key, o[key]) <= hi:
                _bad(path + key, "must be in %d..%d" % (lo, hi), o[key])
        for key in ("gain", "tau_h"):
            if key in o:
                _num(path + key, o[key], positive=True)
    elif driver == "ds18b20" and "roms" in o:
        roms = _obj(path + "roms", o["roms"], quantities)
        for key in roms:
            r = roms[key]
            if not isinstance(r, str) or len(r) != 16 or r.strip("0123456789abcdefABCDEF"):
                _bad(path + "roms." + key, "must be a ROM code of 16 hex digits", r)
