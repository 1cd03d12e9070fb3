"""The board loop: config -> sensors -> telemetry through the offline buffer -> MQTT; birth, health, safe mode.

`main(config_path)` validates the config, counts the boot, and runs one sampling task (each sensor on its
own interval), one sender (the only task that publishes telemetry: the oldest record not sent yet -> QoS 1
-> past it on PUBACK, in order, throttled by `buffer.replay_ms` while a backlog drains), a health reporter,
the MQTT supervisor, the hardware's network keeper and the watchdog feeder.

End-to-end confirmation (`buffer.confirm`, on by default): a record stays in the buffer until the hub's
confirmation on `qala/{site}/{device}/conf` (protocols/confirm.py) covers it, not merely until the broker's
PUBACK, so a broker that loses acknowledged messages (a crash before its next save) costs nothing. When a hub
is alive (protocols/liveness.py) and no confirmation has come for `buffer.resend_after` seconds while records
wait for one, the sender goes back to the oldest and sends them again, in order; the wait doubles after each
such resend without progress, up to 10 minutes, and starts over once the hub confirms again. Duplicates cost
nothing: the hub stores the same point again. Without a hub alive nothing is resent (the broker queues).

Every task is guarded: an exception is logged with its reason and the task starts again; nothing stops the
loop. The watchdog task feeds the hardware watchdog only while the board does its job (firmware/vitals.py:
the sender gets its PUBACKs or has a known reason not to, the sampler samples, MemoryErrors do not go on);
otherwise it logs why, counts it on flash (`self_resets` in health) and resets the board.

Readings are stamped with the board clock (Unix ms) and a sequence number that restarts at 0 each boot; the
boot counter is persisted, so (boot, seq) identifies a message. A board whose clock is not set yet (no NTP
answer) holds its samples with their ticks and stamps them once the clock is set, never with a 2000-era
time. A config that is missing, unreadable or invalid puts the board in safe mode: it logs the exact
problem, publishes it retained on its status topic when it can connect, and drives no actuator.
"""

import asyncio
import os
import time

from firmware import VERSION, hw, log
from firmware.buffer import Buffer
from firmware.vitals import Vitals
from protocols import confirm, liveness, status, topics
from protocols.errors import ProtocolError
from protocols.telemetry_encode import encode_telemetry  # not protocols.telemetry: no decoder on the board

_failed = [None]  # the board's failure counter (Board.failed), for the module-level guard


async def _guarded(name, make, args):
    while True:
        try:
            await make(*args)
            return
        except Exception as exc:
            if _failed[0] is not None:  # first: counting a MemoryError must not wait on a log line's heap
                _failed[0](exc)
            try:
                log.error("task %s failed: %s; restarting", name, log.why(exc))
            except MemoryError:
                pass
            await asyncio.sleep(1)


def guard(name, make, *args):
    """Run the coroutine made by make(*args) forever: log and restart it (after 1 s) if it raises.

    A plain coroutine and the arguments, not a closure or a lambda: no function object and cells per task.
    """
    return asyncio.create_task(_guarded(name, make, args))


def watch(board, state):
    """The board's vitals (firmware/vitals.py), its self-reset count from flash, its failure hook for guard():
    for app.Board and the Modbus board alike."""
    cfg = board.cfg
    longest = 0
    for name in cfg["sensors"]:
        longest = max(longest, int(cfg["sensors"][name]["interval"] * 1000))
    board.vitals = Vitals(time.ticks_ms(), int(cfg["stall_after"] * 1000), longest, time.ticks_diff)
    board.state = state
    board.self_resets = 0
    try:
        with open(state + "/self_resets") as f:
            board.self_resets = int(f.read())
    except (OSError, ValueError):
        pass
    _failed[0] = board.failed


class Board:
    def __init__(self, impl, cfg, caps, boot, state, ota=None):
        self.hw = impl
        self.cfg = cfg
        self.caps = caps
        self.boot = boot
        b = cfg["buffer"]
        self.buf = Buffer(b["ram"], b["file"], state + "/buffer", b["confirm"])
        self.replay_ms = b["replay_ms"]
        self.resend_ms = b["resend_after"] * 1000  # doubles after each resend without progress
        self.progress = time.ticks_ms()  # when the hub last confirmed something (or waiting began)
        self.seq = 0
        self.faults = 0
        self.held = []  # (ticks, sensor, readings) sampled before the clock was set
        self.held_dropped = 0
        self.wake = asyncio.Event()
        self.low = 1 << 30  # lowest free heap after a collection, over the health reports
        site, device = cfg["site"], cfg["device"]
        self.t_telemetry = topics.build(site, device, topics.TELEMETRY)
        self.t_status = topics.build(site, device, topics.STATUS)
        self.t_conf = topics.build(site, device, topics.CONF)
        self.t_hubs = topics.hub_topic(site)  # qala/{site}/_hub/+
        self.hubs = {}  # hub name -> [state, heartbeat s, ticks of its last message]
        # updates over the air (docs/ota.md): only when the A/B loader runs the board (firmware/loader.py), whose
        # boot record `ota` is. The running board holds none of the update's code (it runs in update mode,
        # firmware/ota.py): it saves an offer and resets, tells the loader when a trial is healthy (`done`),
        # and resets into update mode when a report waits for a connection. Its topic is kept in the record:
        # an attribute's name would be interned on every board.
        self.ota = ota
        if ota is not None:
            ota["ota"] = topics.build(site, device, "ota")
            ota["reset"] = self.reset  # the loader ends a trial with it (the buffer kept on flash)
        from firmware.mqtt import client_for  # here: a board with a Modbus uplink never loads it

        self.client = client_for(cfg["mqtt"], site, device)
        self.client.can_connect = impl.link_up
        # before the first connect: what the broker kept in the board's session while it was off (a command)
        # arrives right after the CONNACK, before the birth subscribes again
        self.client.set_callback(self.on_message)
        watch(self, state)
        self.client.on_error = self.failed
        self.acts = None
        if cfg["actuators"]:
            from firmware.actuators import Actuators

            self.acts = Actuators(self, state)

    # ------------------------------------------------------------------------------------ readings

    def emit(self, sensor, readings):
        """Stamp and encode one sample, then queue it; hold it while the clock is not set."""
        now = self.hw.now_ms()
        if now is None:
            self.held.append((time.ticks_ms(), sensor, readings))
            if len(self.held) > self.buf.ram_max:
                self.held.pop(0)
                self.held_dropped += 1
            return
        if self.held:
            held, self.held = self.held, []
            t = time.ticks_ms()
            for ticks, s, r in held:
                self._queue(now - time.ticks_diff(t, ticks), s, r)
        self._queue(now, sensor, readings)

    def _queue(self, ts, sensor, readings):
        try:
            rec = encode_telemetry(self.seq, ts, self.boot, sensor, readings)
        except ProtocolError as exc:
            self.faults += 1
            log.error("sensor %s: reading refused by the codec: %s", sensor, exc)
            return
        self.seq += 1
        self.buf.offline = not self.client.isconnected()
        self.buf.push(rec)
        self.wake.set()

    async def sampler(self):
        """Sample every sensor on its own interval, all in one task (a task per sensor costs a Task and two
        coroutine frames each). A sensor fails alone, as its own task would: a read that raises is logged and
        counted; anything else that raises is logged as its task's failure and that sensor starts again 1 s
        later (its driver made anew), the other sensors carrying on."""
        # start-up checked the driver against firmware.sensors.DRIVERS, whose names are the module names under
        # firmware.drivers (tests/firmware/test_sensors.py keeps them so): the registry stays out of RAM
        cfg = self.cfg["sensors"]
        now = time.ticks_ms()
        # per sensor: [name, spec, driver object or None, last readings, failing, due, interval ms, warmup ms]
        todo = [[name, cfg[name], None, None, False, now, int(cfg[name]["interval"] * 1000),
                 int(cfg[name]["warmup"] * 1000)] for name in cfg]
        while True:
            wait = 60000
            for s in todo:
                if time.ticks_diff(s[5], time.ticks_ms()) <= 0:
                    try:
                        self._sample(s)
                        self.vitals.sampled_at = time.ticks_ms()
                    except Exception as exc:
                        log.error("task sensor %s failed: %s; restarting", s[0], log.why(exc))
                        self.failed(exc)
                        s[2], s[3], s[4], s[5] = None, None, False, time.ticks_add(time.ticks_ms(), 1000)
                wait = min(wait, time.ticks_diff(s[5], time.ticks_ms()))
            await asyncio.sleep_ms(wait if wait > 0 else 0)

    def _sample(self, s):
        """One reading of the sensor whose state is s (see sampler), emitted; its next due time set."""
        name, spec = s[0], s[1]
        readings = None
        try:
            if s[2] is None:
                s[2] = __import__("firmware.drivers." + spec["driver"], None, None, ("make",)).make(
                    name, spec, self.hw)
            readings = s[2].read()
            if self.hw.uptime_ms() < s[7]:
                readings = [(r[0], r[1], "warmup") for r in readings]
            s[3] = readings
            if s[4]:
                log.info("sensor %s: reading again", name)
            s[4] = False
        except Exception as exc:
            self.faults += 1
            self.failed(exc)  # a MemoryError is the board's, not the sensor's: it counts towards a reset
            if not s[4]:
                log.warn("sensor %s: read failed: %s", name, log.why(exc))
            s[4] = True
            if s[3]:
                readings = [(r[0], r[1], "fault") for r in s[3]]
        if readings:
            self.emit(name, readings)
        s[5] = time.ticks_add(s[5], s[6])
        if time.ticks_diff(s[5], time.ticks_ms()) < 0:
            s[5] = time.ticks_ms()

    async def sender(self):
        buf = self.buf
        while True:
            rec = buf.next()
            if rec is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            if not buf.sent:
                self.progress = time.ticks_ms()  # the first record to wait for a confirmation
            await self.client.publish(self.t_telemetry, rec, False, 1)
            buf.sent_one(rec)
            if self.ota is not None and not buf.confirming:
                self.ota["done"] = 1  # no hub confirmations on this board: the broker's PUBACK proves a trial
            self.vitals.sent_at = time.ticks_ms()
            await asyncio.sleep_ms(self.replay_ms if len(buf) > buf.sent else 0)

    # -------------------------------------------------------------------------------------- status

    async def health(self):
        period = int(self.cfg["health_interval"] * 1000)
        while True:
            await asyncio.sleep_ms(period)
            free, block = hw.mem()  # after a collection: what live objects leave free
            self.low = min(self.low, free)
            dropped = self.buf.dropped + self.held_dropped
            readings = [
                ("uptime", self.hw.uptime_ms() // 1000), ("heap_free", free), ("heap_max_block", block),
                ("buffered", len(self.buf) + len(self.held)), ("dropped", dropped), ("resets", self.boot),
                ("reconnects", self.client.reconnects), ("sensor_faults", self.faults),
                ("self_resets", self.self_resets), ("lagging", 1 if self.vitals.lagging else 0),
            ]
            rssi = self.hw.rssi()
            if rssi is not None:
                readings.append(("rssi", rssi))
            log.info("health: seq=%d buffered=%d dropped=%d faults=%d reconnects=%d heap_free=%d max_block=%d "
                     "heap_low=%d", self.seq, len(self.buf), dropped, self.faults, self.client.reconnects, free,
                     block, self.low)
            self.emit("health", readings)

    # -------------------------------------------------------------------------------------- inbound

    def on_message(self, topic, msg, retained=False):
        """Every PUBLISH the board gets: a confirmation, a hub's liveness or a command. (One method, not one
        per kind: every method name is interned on the board for as long as it runs.)"""
        hubs = self.t_hubs[:-1]  # qala/{site}/_hub/
        try:
            if topic == self.t_conf:
                boot, seq = confirm.decode_conf(msg)
                if self.buf.confirm(boot, seq):
                    self.progress = time.ticks_ms()
                    self.resend_ms = self.cfg["buffer"]["resend_after"] * 1000
                if boot == self.boot and self.ota is not None:
                    self.ota["done"] = 1  # the hub stored a record of this boot: a trial is healthy (loader.py)
            elif self.ota is not None and topic == self.ota["ota"]:
                if msg[:14] == b'{"op":"offer",' and not self.ota["next"]:
                    # kept on flash and taken up in update mode, which runs nothing else: loaded next to the
                    # running board, the update's code would not find room to work (docs/ota.md, "Heap")
                    with open(self.ota["dir"] + "/ota/offer.json", "wb") as f:
                        f.write(msg)
                    self.reset("ota: update offered: resetting to take it up", 0)
            elif topic.startswith(hubs):
                name = topic[len(hubs):]
                state, hb = liveness.decode_hub_state(msg)
                old = self.hubs.get(name)
                if old is None or old[0] != state:
                    log.info("hub %s %s", name, state)
                self.hubs[name] = [state, hb, time.ticks_ms()]
            elif self.acts is not None:
                self.acts.on_message(topic, msg, retained)
        except ProtocolError as exc:
            log.warn("message on %s refused: %s", topic, exc)

    def linked(self):
        """The uplink as actuators see it: the broker connected and a hub alive behind it (online, with a
        heartbeat younger than 3 of its periods: protocols/liveness.py)."""
        if not self.client.isconnected():
            return False
        now = time.ticks_ms()
        for name in self.hubs:
            h = self.hubs[name]
            if liveness.alive(h[0], h[1], time.ticks_diff(now, h[2])):
                return True
        return False

    async def birth(self, client, session):
        self.buf.offline = False
        while self.hw.now_ms() is None:  # noqa: ASYNC110 - the clock has no event to wait on
            await asyncio.sleep(1)
        await client.subscribe(self.t_hubs, 1)
        if self.buf.confirming:
            await client.subscribe(self.t_conf, 0)  # retained: the latest confirmation comes at once
        if self.acts is not None:  # before the birth: a hub that sends a setpoint on seeing it reaches us
            await self.acts.subscribe(client)
        if self.ota is not None:
            await client.subscribe(self.ota["ota"], 1)
            if self.ota["load"] == 1:  # a report update mode could not send: the uplink works now
                r = self.ota["dir"]
                os.rename(r + "/ota/last.wait", r + "/ota/last.json")
                self.reset("ota: a report waits: resetting to send it", 0)
        msg = status.encode_status(status.ONLINE, self.hw.now_ms(), self.boot, VERSION, self.caps)
        client.publish_nowait(self.t_status, msg, True)
        self.wake.set()
        if self.acts is not None:  # after the birth: the hub knows the device before its values
            self.acts.report_all()

    def failed(self, exc):
        """A task, a sensor or a connect failed: MemoryErrors count towards a reset (firmware/vitals.py)."""
        if isinstance(exc, MemoryError):
            self.vitals.memory_error(time.ticks_ms())

    async def watchdog(self):
        """Once a second: feed the hardware watchdog while the board does its job (firmware/vitals.py) and
        reset it when not; and send again what the hub has not confirmed for a while (the module docstring).
        One task for both: a task costs a Task and two frames of heap."""
        self.hw.watchdog(self.cfg["watchdog"])
        vitals = self.vitals
        buf = self.buf
        warned = False
        while True:
            now = time.ticks_ms()
            why = vitals.verdict(now, self.client.isconnected(), len(buf) - buf.sent)
            if why is not None:
                self.reset(why)
            self.hw.feed()
            if vitals.lagging and not warned:
                log.warn("the sender cannot keep up: %d records wait to be sent and more come in than go out; "
                         "sample less often (health: lagging 1)", len(buf) - buf.sent)
            warned = vitals.lagging
            if not buf.sent or not self.linked():
                self.progress = now  # nothing waits for a confirmation, or nobody could confirm: no stall
            elif time.ticks_diff(now, self.progress) >= self.resend_ms:
                log.info("no confirmation for %d s: sending %d unconfirmed records again", self.resend_ms // 1000,
                         buf.sent)
                buf.sent = 0  # the cursor back to the oldest unconfirmed record
                self.wake.set()
                self.progress = now
                self.resend_ms = min(self.resend_ms * 2, 600000)
            await asyncio.sleep(1)

    def reset(self, why, count=1):
        """Reset the board: counted as a self reset (vitals), or with count 0 a planned one (into update mode,
        docs/ota.md). What the buffer holds in RAM goes to flash first (when it has a file): nothing lost."""
        buf = self.buf
        buf.offline = True
        try:
            while buf.ram and buf.file_max:
                buf._file_append(buf.ram.pop(0))
        except Exception as exc:  # a full flash, a full heap: the reset must happen all the same
            log.error("cannot keep the buffer: %s", log.why(exc))
        if not count:
            log.info(why)
            self.hw.reset()
            return
        n = self.self_resets + 1
        log.error("%s: resetting the board (self reset %d)", why, n)
        try:
            with open(self.state + "/self_resets", "w") as f:
                f.write("%d" % n)
        except OSError as exc:
            log.error("cannot count the reset: %s", log.why(exc))
        self.hw.reset()

    async def run(self):
        log.info("board %s/%s boot %d on %s: %d sensors, buffer ram=%d file=%d", self.cfg["site"],
                 self.cfg["device"], self.boot, self.hw.NAME, len(self.cfg["sensors"]), self.buf.ram_max,
                 self.buf.file_max)
        guard("network", self.hw.network, self.cfg)
        guard("watchdog", self.watchdog)
        guard("mqtt", self.client.run, self.birth)
        guard("sender", self.sender)
        guard("health", self.health)
        if self.acts is not None:
            guard("failsafe", self.acts.watch)
        if self.cfg["sensors"]:
            guard("sensors", self.sampler)
        await asyncio.Event().wait()  # the tasks run forever


