"""Twin of a water or gas meter's pulse output: a reed contact (or open collector) to GND, pulled up.

The meter closes its contact once per unit of volume: the line falls, stays low 100 ms (less at high rates),
rises. Normal flow: a pulse every 1.2 .. 2.8 s, slowly varying (about 1.3 .. 3 m3/h at 1 L per pulse). The
twin drives a SimPin (firmware/hw/buses.py): `attach(pin, handler)` takes the irq handler, `advance()` fires
every falling edge that is due by the clock, in time order. On the unix-port board `run()` calls advance()
every 5 ms from an asyncio task (so the handler runs a few ms late, in a task, not an interrupt); a test
steps its clock and calls advance() itself.
Faults: `bouncing` (each closure bounces: three more falling edges 1, 3 and 7 ms after the first),
`stuck` (contact stuck closed: line low, no edges), `silent` (wire cut: line high, no edges),
`out_of_range` (a pulse every 60 ms, absurd for a household meter), `leak` (set on the object only: a third
more flow, day and night, that never stops). As counts, `stuck`, `silent` and `out_of_range` apply per pulse.
No checksum and no warm-up: `bad_checksum` and `warming_up` are refused.
"""

from simulators.twins.base import Base

FAST_MS = 60


class Twin(Base):
    cannot = ("bad_checksum", "warming_up")
    extra = ("bouncing", "leak")

    def __init__(self, faults, clock):
        super().__init__(faults, clock)
        self.handler = None
        self.pin = None
        self.low = False
        self.next_ms = clock() + 1000
        self.rise_ms = None
        self.bounces = []
        self.pulses = 0  # contact closures made
        self.edges = 0  # falling edges fired (closures and bounces)
        self.times = []  # the times of the last two closures

    def attach(self, pin, handler):
        self.pin = pin
        self.handler = handler

    def level(self):
        self.advance()
        return 0 if self.low else 1

    def _fall(self):
        self.edges += 1
        if self.handler is not None:
            self.handler(self.pin)

    def _period(self):
        if self.hit("out_of_range"):
            return FAST_MS
        period = int(self.wave(2000, 800, 20))
        if self.faults.get("leak"):
            return period * 3 // 4
        return period

    def advance(self):
        now = self.clock()
        while True:
            t = self.next_ms
            if self.bounces and self.bounces[0] - t < 0:
                t = self.bounces[0]
            if self.rise_ms is not None and self.rise_ms - t < 0:
                t = self.rise_ms
            if now - t < 0:
                return
            if self.bounces and t == self.bounces[0]:
                self.bounces.pop(0)
                self._fall()
            elif t == self.rise_ms:
                self.low = False
                self.rise_ms = None
            else:
                period = self._period()
                self.next_ms = t + period
                if self.hit("stuck"):
                    self.low = True
                elif self.hit("silent"):
                    self.low = False
                else:
                    self.low = True
                    self.rise_ms = t + min(100, period // 2)
                    self.pulses += 1
                    self.times = [self.times[-1], t] if self.times else [t]
                    self._fall()
                    if self.hit("bouncing"):
                        self.bounces = [t + 1, t + 3, t + 7]

    async def run(self):
        import asyncio

        while True:
            self.advance()
            await asyncio.sleep(0.005)
