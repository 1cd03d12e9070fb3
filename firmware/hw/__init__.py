"""The hardware layer: one module per kind of machine, the same small interface on each.

`load()` returns the module for this interpreter: `hw.unix` on the unix port (host clock, no Wi-Fi,
simulated sensors only), `hw.board` on ESP32 / Pico W / ESP8266 (machine, network, ntptime). Everything
above this layer is the same code on both. Each implementation provides:

    NAME, NEEDS_WIFI
    uptime_ms()               milliseconds since start (wraps like ticks_ms on boards; use for intervals)
    now_ms()                  Unix time in integer ms, or None while the clock is not set
    async network(cfg)        keeps the link up (Wi-Fi on boards); returns or loops forever
    link_up()                 True when a socket can be opened
    rssi()                    Wi-Fi signal in dBm, or None
    watchdog(seconds)         start the hardware watchdog (no-op on unix); feed() keeps it quiet
    state_dir(config_path, device)   where the boot counter and the offline buffer live
    state                     that folder, set by firmware/start.py; drivers that keep a count read it (pulse)
    actuator(name, spec)      an output with set(value) for an actuator config (simulated on unix)
`mem()` below is shared: free heap and the largest free block.
"""

import gc
import sys


def load():
    if sys.platform in ("linux", "darwin"):
        from firmware.hw import unix as impl
    else:
        from firmware.hw import board as impl
    return impl


def mem():
    """(free heap, largest allocatable block) in bytes, after a collection.

    MicroPython has no call for the largest free block, so it is probed: binary search over bytearray sizes,
    each attempt freed at once. Costs a dozen allocations; run it once per health report, not per sample.
    """
    gc.collect()
    free = gc.mem_free() if hasattr(gc, "mem_free") else 0
    lo, hi = 0, free
    while hi - lo > 64:
        mid = (lo + hi) // 2
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return free, lo
