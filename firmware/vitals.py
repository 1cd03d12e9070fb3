"""Whether the board is doing its job: the verdict that feeds (or starves) the watchdog.

A task that restarts after every MemoryError, or a sender that never gets a message out, leaves a board
"alive but silent": its event loop runs, so a watchdog fed by a task of its own never fires. Here the board's
work is judged instead, once a second by the watchdog task (firmware/app.py):

- **sender**: connected, records waiting to be sent, and no PUBACK for `stall_ms`: the sender is stuck. A
  broker that does not answer is not this case: the MQTT client drops a connection whose PUBACK is 10 s late,
  and a board that is not connected has a reason it knows (no network, a refused or failed connect, logged
  with its cause), so the link being down never starves the watchdog by itself;
- **sampler**: sensors configured and no sample taken for `stall_ms` plus the longest sensor interval;
- **memory**: MemoryErrors (anywhere: a task, a sensor read, a connect) that keep coming for a quarter of
  `stall_ms` (30 s by default; at least 5 of them, never more than that quarter apart): the board is out of
  memory. It may still get a health report out, but the reads that fail are readings lost (sent as `fault`)
  and the tasks that fail restart only to fail again; a reset gives it its heap back. A burst that ends (a
  reconnect that needed more than there was, once) is no reason.

`verdict()` says why the board does not work (None while it does); the app then logs it, counts it on flash
(`<state>/self_resets`, reported in health as `self_resets`) and resets the board; on boards the hardware
watchdog, no longer fed, would reset it anyway within `watchdog` seconds.

It also watches whether the sender keeps up: when records wait to be sent without a break for 5 minutes
while connected and there are more of them at the end than at the start, `lagging` turns on (the app warns
once and reports `lagging` 1 in health) until the queue is empty again.

Pure: tick times come in as arguments (time.ticks_ms values) with the function that subtracts them, so tests
drive it under CPython and MicroPython. Imports nothing; knows nothing of sockets, files or tasks.
"""


class Vitals:
    """The app writes `sent_at` (a PUBACK) and `sampled_at` (a sample buffered) itself: two fewer methods,
    each a name interned on the board for as long as it runs. `diff` is time.ticks_diff on the board (tick
    times wrap), plain subtraction in tests: passed in, so this module imports nothing and defines no fallback
    (a function costs RAM on the board even when never called)."""

    def __init__(self, now, stall_ms, sample_ms, diff):
        self.diff = diff
        self.stall_ms = stall_ms
        self.sample_ms = sample_ms  # the longest sensor interval (0: no sensors)
        self.sent_at = now  # the last PUBACK, or when waiting for one began
        self.sampled_at = now
        self.oom = [0, now, now]  # MemoryErrors in the current run of them, when the first and the last came
        self.lag = None  # [when records began to wait without a break, how many waited then]; None: none waited
        self.lagging = False
        self._up = False

    def memory_error(self, now):
        oom = self.oom
        if oom[0] == 0 or self.diff(now, oom[2]) > self.stall_ms // 4:
            oom[0], oom[1] = 0, now  # a quiet quarter ended the last run: a new one
        oom[0] += 1
        oom[2] = now

    def verdict(self, now, connected, unsent):
        """None while the board works; else why it does not (then it should be reset)."""
        ticks_diff = self.diff
        if not connected or unsent == 0:
            self.sent_at = now  # nothing to send, or no way to: the sender is not behind
        if connected and not self._up:
            self.sent_at = now  # waiting for a PUBACK starts at the connect
        self._up = connected
        # lagging: records waited without a break for 5 minutes while connected, and more of them now
        if unsent == 0:
            self.lag = None
            self.lagging = False
        elif not connected:
            self.lag = None  # an outage's backlog is not lagging: it drains after the reconnect
        elif self.lag is None:
            self.lag = [now, unsent]
        elif ticks_diff(now, self.lag[0]) >= 300000:  # 5 minutes
            self.lagging = unsent > self.lag[1]
            self.lag = [now, unsent]
        quiet = ticks_diff(now, self.sent_at)
        if quiet > self.stall_ms:
            return "sender stalled: no PUBACK for %d s with %d records to send" % (quiet // 1000, unsent)
        if self.sample_ms and ticks_diff(now, self.sampled_at) > self.stall_ms + self.sample_ms:
            return "sampler stalled: no sample for %d s" % (ticks_diff(now, self.sampled_at) // 1000)
        # out of memory: MemoryErrors that go on cost readings and restart tasks; a reset gives the heap back
        n, first, last = self.oom
        w = self.stall_ms // 4
        if n >= 5 and ticks_diff(last, first) >= w and ticks_diff(now, last) <= w:
            return "out of memory: %d MemoryErrors in %d s" % (n, ticks_diff(now, first) // 1000)
        return None
