"""Hardware layer for the unix port: the host's clock, no Wi-Fi, no hardware watchdog (a reset is an exit with
RESET_EXIT), sensors are simulated.

The host clock is assumed set (NTP is the host's business). The state folder is `<config dir>/<device>.state`
next to the board config, so a board process that restarts keeps its boot counter and its offline buffer.
"""

import time

NAME = "unix"
NEEDS_WIFI = False
_T0 = time.ticks_ms()


def uptime_ms():
    return time.ticks_diff(time.ticks_ms(), _T0)


def now_ms():
    return time.time_ns() // 1000000


async def network(cfg):
    return


def link_up():
    return True


def rssi():
    return None


def watchdog(seconds):
    return


def feed():
    return


RESET_EXIT = 3
"""The unix port's stand-in for machine.reset(): the process exits with this code and whoever runs it (a test,
systemd) starts it again."""


def reset():
    import sys

    sys.exit(RESET_EXIT)


def state_dir(config_path, device):
    cut = config_path.rfind("/")
    folder = config_path[:cut] if cut > 0 else ("/" if cut == 0 else ".")
    return "%s/%s.state" % (folder, device)


class _SimActuator:
    """An actuator with no hardware: remembers its value and logs each change (tests read the console)."""

    def __init__(self, name):
        self.name = name
        self.value = None

    def set(self, value):
        from firmware import log

        if value != self.value:
            log.info("actuator %s -> %s", self.name, value)
        self.value = value


def actuator(name, spec):
    return _SimActuator(name)


class _Serial:
    """A serial device (a pty in tests) in raw mode; readinto never blocks (one byte per poll, frames are small)."""

    def __init__(self, path):
        import select
        import termios

        self.f = open(path, "r+b")  # noqa: SIM115 - held for the board's life
        termios.setraw(self.f.fileno())
        self.p = select.poll()
        self.p.register(self.f, select.POLLIN)
        self.one = bytearray(1)

    def readinto(self, buf):
        n = 0
        while n < len(buf) and self.p.poll(0):
            if not self.f.readinto(self.one):
                break
            buf[n] = self.one[0]
            n += 1
        return n

    def write(self, data):
        self.f.write(data)


def serial(cfg):
    """The Modbus RTU line: `cfg["device"]` (the unix port has no UART; the baud rate is the device's business)."""
    if cfg["device"] is None:
        raise OSError("modbus.uart needs a board; use modbus.device on the unix port")
    return _Serial(cfg["device"])
