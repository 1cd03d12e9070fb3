"""Hardware layer for real boards (ESP32, Pico W, ESP8266): machine, network, ntptime.

Wi-Fi is kept up by `network(cfg)`, which reconnects whenever the station drops and sets the clock by NTP
once connected (and again every 6 hours). Until the first NTP answer `now_ms()` returns None and the app
holds its readings (stamped by ticks) instead of sending them with a 2000-era time. The watchdog resets
the board if the event loop stops feeding it. Not importable on the unix port (no `network` there).
"""

import asyncio
import time

import machine
import network as _network

from firmware import log

NAME = "board"
NEEDS_WIFI = True
_T0 = time.ticks_ms()
# Ports with a 2000 epoch (older releases) count seconds from 2000-01-01.
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0
_wlan = None
_wdt = None
_synced = False


def uptime_ms():
    return time.ticks_diff(time.ticks_ms(), _T0)


def now_ms():
    if not _synced:
        return None
    return (time.time() + _EPOCH) * 1000 + time.ticks_ms() % 1000


def link_up():
    return _wlan is not None and _wlan.isconnected()


def rssi():
    try:
        return _wlan.status("rssi") if link_up() else None
    except (AttributeError, ValueError, OSError):
        return None


def watchdog(seconds):
    global _wdt
    _wdt = machine.WDT(timeout=int(seconds * 1000))


def feed():
    if _wdt is not None:
        _wdt.feed()


def reset():
    """The board resets itself (firmware/vitals.py decided it cannot work)."""
    machine.reset()


def state_dir(config_path, device):
    cut = config_path.rfind("/")
    folder = config_path[:cut] if cut > 0 else ""
    return "%s/%s.state" % (folder, device)


async def network(cfg):
    global _wlan, _synced
    _wlan = _network.WLAN(_network.STA_IF)
    _wlan.active(True)
    wifi = cfg["wifi"]
    synced_at = None
    while True:
        if not _wlan.isconnected():
            log.info("wifi: connecting to %s", wifi["ssid"])
            try:
                _wlan.connect(wifi["ssid"], wifi.get("password", ""))
            except OSError as exc:
                log.warn("wifi: %s", log.why(exc))
            for _ in range(30):
                if _wlan.isconnected():
                    break
                await asyncio.sleep(1)
            if not _wlan.isconnected():
                log.warn("wifi: not connected after 30 s, retrying")
                continue
            log.info("wifi: up, rssi=%s", rssi())
        if synced_at is None or time.ticks_diff(time.ticks_ms(), synced_at) > 6 * 3600 * 1000:
            try:
                import ntptime

                ntptime.host = cfg["ntp_host"]
                ntptime.settime()
                _synced = True
                synced_at = time.ticks_ms()
                log.info("clock: set by NTP from %s", cfg["ntp_host"])
            except (OSError, OverflowError) as exc:
                log.warn("clock: NTP failed: %s", log.why(exc))
        await asyncio.sleep(5 if not _synced else 30)


class _Output:
    """relay: a GPIO pin, on unless the value is min; pwm and valve: PWM duty from min..max (1 kHz)."""

    def __init__(self, spec):
        pin = machine.Pin(spec["pin"], machine.Pin.OUT)
        self.relay = spec["kind"] == "relay"
        self.lo = spec["min"]
        self.span = (spec["max"] - spec["min"]) or 1
        self.out = pin if self.relay else machine.PWM(pin, freq=1000)

    def set(self, value):
        if self.relay:
            self.out.value(0 if value == self.lo else 1)
        else:
            self.out.duty_u16(int((value - self.lo) * 65535 / self.span))


def actuator(name, spec):
    return _Output(spec)


class _Rs485:
    """A UART with an RS-485 transceiver: DE/RE high only while sending, released as the last bit leaves."""

    def __init__(self, cfg):
        pins = cfg["pins"]
        kw = {"baudrate": cfg["baudrate"], "bits": 8, "parity": {"N": None, "E": 0, "O": 1}[cfg["parity"]],
              "stop": cfg["stopbits"], "timeout": 0}
        if "tx" in pins:
            kw["tx"] = pins["tx"]
        if "rx" in pins:
            kw["rx"] = pins["rx"]
        self.uart = machine.UART(cfg["uart"], **kw)
        self.de = machine.Pin(pins["de"], machine.Pin.OUT, value=0) if "de" in pins else None
        self.char_us = (11 if cfg["parity"] != "N" else 10) * 1000000 // cfg["baudrate"]

    def readinto(self, buf):
        n = self.uart.any()
        return self.uart.readinto(buf, min(n, len(buf))) or 0 if n else 0

    def write(self, data):
        if self.de is not None:
            self.de.value(1)
        self.uart.write(data)
        if hasattr(self.uart, "flush"):
            self.uart.flush()  # returns once the last byte has left the shift register
        else:
            time.sleep_us(len(data) * self.char_us)
        if self.de is not None:
            self.de.value(0)


def serial(cfg):
    """The Modbus RTU line: machine.UART(cfg["uart"]) with pins tx, rx and the transceiver's de (DE and /RE)."""
    return _Rs485(cfg)
