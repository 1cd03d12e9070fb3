"""Buses for drivers: I2C, UART, 1-Wire and input pins with interrupts, built from a sensor's config.

Drivers receive a bus and never construct one (STYLE.md); a driver's `make(name, spec, hw)` calls one of the
functions here, which reads the pins from the config (`pins.sda/scl`, `pins.tx/rx`, `pins.data`, `pins.pulse`)
and returns:
- on a real board (`hw.NAME != "unix"`): machine.I2C, machine.UART, onewire.OneWire or machine.Pin;
- on the unix port: the Sim* classes below, which forward every transfer, byte for byte, to the simulated
  twin of the device (simulators/twins/<driver>.py, built with `options.twin`: its fault switches).
The Sim* classes use machine's method names, so a driver cannot tell the two apart: I2C readfrom_mem_into /
readfrom_into / writeto / writeto_mem (a NACK raises OSError), UART read / write / any (silence: read returns
None), OneWire reset / readbyte / writebyte / readinto / write / select_rom / scan, Pin value / irq.
"""

try:
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:  # CPython, for the dual tests
    import time

    def sleep_ms(ms):
        time.sleep(ms / 1000)

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


def wait_any(uart, n, timeout_ms):
    """Poll uart.any() until n bytes are waiting or timeout_ms passed; True if they are."""
    t0 = ticks_ms()
    while uart.any() < n:
        if ticks_diff(ticks_ms(), t0) >= timeout_ms:
            return False
        sleep_ms(2)
    return True


def twin(spec, hw):
    """The simulated device for a sensor on the unix port: simulators/twins/<driver>.py, `options.twin`."""
    mod = __import__("simulators.twins." + spec["driver"], None, None, ("Twin",))
    return mod.Twin(spec["options"].get("twin") or {}, hw.uptime_ms)


def _pin(spec, key):
    pins = spec["pins"]
    if key not in pins:
        raise ValueError("pins.%s: required by driver %s" % (key, spec["driver"]))
    return pins[key]


def i2c(spec, hw, freq=100000):
    if hw.NAME == "unix":
        return SimI2C(twin(spec, hw))
    from machine import I2C, Pin

    return I2C(spec["options"].get("bus", 0), scl=Pin(_pin(spec, "scl")), sda=Pin(_pin(spec, "sda")), freq=freq)


def uart(spec, hw, baudrate=9600):
    if hw.NAME == "unix":
        return SimUART(twin(spec, hw))
    from machine import UART, Pin

    return UART(spec["options"].get("uart", 1), baudrate=baudrate, tx=Pin(_pin(spec, "tx")),
                rx=Pin(_pin(spec, "rx")), timeout=0)


def onewire(spec, hw):
    if hw.NAME == "unix":
        return SimOneWire(twin(spec, hw))
    from machine import Pin
    from onewire import OneWire

    return OneWire(Pin(_pin(spec, "data")))


def pulse_pin(spec, hw):
    if hw.NAME == "unix":  # the twin fires the edges from a task of its own (simulators/twins/pulse.py)
        import asyncio

        pin = SimPin(twin(spec, hw))
        pin.task = asyncio.create_task(pin.dev.run())
        return pin
    from machine import Pin

    return Pin(_pin(spec, "pulse"), Pin.IN, Pin.PULL_UP)


class SimI2C:
    def __init__(self, dev):
        self.dev = dev

    def writeto(self, addr, buf, stop=True):
        self.dev.i2c_write(addr, bytes(buf))
        return len(buf)

    def writeto_mem(self, addr, reg, buf):
        self.dev.i2c_write(addr, bytes((reg,)) + bytes(buf))

    def readfrom_into(self, addr, buf, stop=True):
        self.dev.i2c_read(addr, buf)

    def readfrom_mem_into(self, addr, reg, buf):
        self.dev.i2c_write(addr, bytes((reg,)))
        self.dev.i2c_read(addr, buf)


class SimUART:
    def __init__(self, dev):
        self.dev = dev

    def write(self, buf):
        self.dev.uart_rx(bytes(buf))
        return len(buf)

    def any(self):
        return self.dev.uart_pending()

    def read(self, n=-1):
        data = self.dev.uart_tx(n)
        return data or None

    def readinto(self, buf):
        data = self.dev.uart_tx(len(buf))
        buf[: len(data)] = data
        return len(data) or None


class SimOneWire:
    def __init__(self, dev):
        self.dev = dev

    def reset(self, required=False):
        present = self.dev.ow_reset()
        if required and not present:
            raise OSError(19)  # ENODEV, as onewire.OneWireError is an OSError on boards
        return present

    def writebyte(self, value):
        self.dev.ow_write(bytes((value,)))

    def write(self, buf):
        self.dev.ow_write(bytes(buf))

    def readbyte(self):
        return self.dev.ow_read(1)[0]

    def readinto(self, buf):
        buf[:] = self.dev.ow_read(len(buf))

    def select_rom(self, rom):
        self.reset()
        self.writebyte(0x55)
        self.write(rom)

    def scan(self):
        return self.dev.roms() if self.dev.ow_reset() else []


class SimPin:
    """An input pin whose edges come from the twin; the twin fires the irq handler as its clock advances."""

    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, dev):
        self.dev = dev

    def value(self):
        return self.dev.level()

    def irq(self, handler=None, trigger=2):
        self.dev.attach(self, handler)
