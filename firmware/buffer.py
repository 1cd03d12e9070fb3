"""The offline buffer: encoded telemetry waiting to be stored by the hub, in order, bounded, surviving a reset.

One FIFO in two parts: the oldest records in segment files on flash (`<dir>/<n>`, one record per line,
plus `<dir>/pos` with the read position), the newest in a RAM list. While the uplink is up, records
live in RAM until acknowledged; RAM overflow spills the oldest to flash. While it is down, every record
goes to flash at once, so a power cut loses nothing that was sampled. When flash holds `file_max` records
the oldest is dropped and counted in `dropped`; without a file (`file_max` 0) RAM drops its oldest instead.

`peek()` gives the head without removing it; `pop()` removes it. The read position is written on every pop
from flash: after a reset a record is sent again at most once (the hub keys messages by (boot, seq)).
Records are single-line bytes (compact JSON telemetry), at most a few hundred bytes.

End-to-end confirmation (`confirming`, the default on boards): a record the broker acknowledged is not removed
but passed by a cursor: `next()` is the oldest record not sent yet, `sent_one()` moves the cursor past it,
`confirm(boot, seq)` (the hub's confirmation, protocols/confirm.py) removes the records at the head that it
covers, and setting `sent` to 0 puts the cursor back to the head so that what stays unconfirmed is sent again,
in order; `len(buf) - buf.sent` records are not sent yet. (Attributes rather than methods where that is enough:
every method name is interned on the board for as long as it runs.) Without `confirming`, `sent_one()` removes
the record at once (the broker's PUBACK is enough: a lab bench without a hub). A record dropped because the
buffer is full counts in `dropped` only if it was never sent. The cursor reads flash through a handle of its own
and remembers where the next record starts, so sending through a backlog reads each line once.

No clock, no sockets: tests drive it directly under CPython and MicroPython.
"""

import os

from firmware import log
from protocols.confirm import record_id
from protocols.errors import ProtocolError

_SEGMENT = 64  # records per segment file: a segment is deleted as soon as it has been read


def _ensure_dir(path):
    cur = ""
    for part in path.split("/"):
        cur = cur + part if cur in ("", "/") else cur + "/" + part
        if not part:
            cur = "/"
            continue
        try:
            os.mkdir(cur)
        except OSError:
            pass


_MARKS = 4  # boots whose confirmation mark is kept (a board's buffer holds records of a few boots at most)


class Buffer:
    def __init__(self, ram_max, file_max=0, path=None, confirming=False):
        self.ram_max = ram_max
        self.file_max = file_max if path else 0
        self.path = path
        self.confirming = confirming
        self.ram = []
        self.dropped = 0
        self.offline = True
        self.nfile = 0
        self.sent = 0  # records from the head sent (acknowledged by the broker) and not confirmed yet
        self.marks = {}  # boot -> highest seq the hub confirmed
        self._cur = None  # [index k, segment index, offset]: where record k of the flash part starts
        self._cf = None  # [segment, read handle]: the cursor's own handle on that segment
        self._head = None  # cached bytes of the flash head record
        self._segs = []  # segment numbers on flash, oldest first
        self._roff = 0  # byte offset of the head record in _segs[0]
        self._rf = None
        self._wf = None
        self._wcount = _SEGMENT  # records in the segment being written; full forces a new one
        if self.file_max:
            self._recover()

    def __len__(self):
        return self.nfile + len(self.ram)

    # ---------------------------------------------------------------------------------------- API

    def push(self, record):
        """Append one record; drops (and counts) the oldest when the buffer is full."""
        if self.file_max and (self.offline or self.nfile):
            # Flash first while offline; and once flash holds records, RAM must stay newer than it.
            while self.ram:
                self._file_append(self.ram.pop(0))
            self._file_append(record)
            return
        self.ram.append(record)
        while len(self.ram) > self.ram_max:
            old = self.ram.pop(0)
            if self.file_max:
                self._file_append(old)
            elif self.sent:  # the head left because the buffer is full: a loss only if it was never sent
                self.sent -= 1
            else:
                self.dropped += 1

    def peek(self):
        """The oldest record, or None if empty."""
        if self.nfile:
            if self._head is None:
                self._head = self._read_head()
            if self._head is not None:
                return self._head
        return self.ram[0] if self.ram else None

    def pop(self, record=None):
        """Remove the oldest record (after the broker acknowledged it).

        With `record`, only if the head still equals it: while it was in flight the buffer may have
        dropped it (full), and the next record must not be lost instead. (A record moved to flash while in
        flight is still the head.) A record that was dropped and then acknowledged was delivered after all:
        it comes off the `dropped` count, so the count an operator sees is exactly what never left the board.
        """
        if record is not None and self.peek() != record:
            if self.dropped:
                self.dropped -= 1
            return
        if self.nfile:
            if self._head is None:
                self._head = self._read_head()
            if self._head is not None:
                self._consume()
                return
        if self.ram:
            self.ram.pop(0)

    def close(self):
        for f in (self._rf, self._wf, self._cf and self._cf[1]):
            if f:
                f.close()
        self._rf = self._wf = self._cf = None
        self._cur = None

    # ------------------------------------------------------------------------------ confirmation

    def next(self):
        """The oldest record not sent yet, or None."""
        if self.sent >= len(self):
            return None
        if self.sent < self.nfile:
            rec = self._flash_at(self.sent)
            if rec is not None:
                return rec
        i = self.sent - self.nfile
        return self.ram[i] if 0 <= i < len(self.ram) else None

    def sent_one(self, record):
        """The broker acknowledged `record` (the one next() gave): the cursor passes it, or, without
        confirmation, it leaves the buffer. A record the buffer dropped while it was in flight was delivered
        after all: it comes off the `dropped` count."""
        if not self.confirming:
            self.pop(record)
            return
        if self.next() == record:
            self.sent += 1
        elif self.dropped:
            self.dropped -= 1

    def confirm(self, boot, seq):
        """The hub stored every record of `boot` up to `seq`: remove the records at the head that this (and
        the earlier confirmations) cover; returns how many left."""
        if seq > self.marks.get(boot, -1):
            self.marks[boot] = seq
            if len(self.marks) > _MARKS:
                del self.marks[min(self.marks)]
        n = 0
        while True:
            head = self.peek()
            if head is None:
                break
            try:
                b, s = record_id(head)
            except ProtocolError:
                b, s = -1, 0  # not telemetry (never written so): covered by nothing, removed by nothing
            if s > self.marks.get(b, -1):
                break
            self.pop()
            if self.sent:
                self.sent -= 1
            n += 1
        return n

    def _flash_at(self, k):
        """Record k (0: the head) of the flash part, read through the cursor's handle."""
        c = self._cur
        if c is None or c[0] > k:
            c = [0, 0, self._roff]
        idx, si, off = c
        while si < len(self._segs):
            seg = self._segs[si]
            if self._cf is None or self._cf[0] != seg:
                if self._cf is not None:
                    self._cf[1].close()
                self._cf = [seg, open(self._name(seg), "rb")]  # noqa: SIM115 - stays open for the cursor
            f = self._cf[1]
            f.seek(off)
            line = f.readline()
            if not line.endswith(b"\n"):  # the end of this segment (or a line cut by a power failure)
                si += 1
                off = 0
                continue
            if idx == k:
                self._cur = [k + 1, si, off + len(line)]
                return line[:-1]
            idx += 1
            off += len(line)
        return None

    # -------------------------------------------------------------------------------------- flash

    def _name(self, seg):
        return "%s/%d" % (self.path, seg)

    def _recover(self):
        _ensure_dir(self.path)
        segs = []
        for name in os.listdir(self.path):
            if name.isdigit():
                segs.append(int(name))
        segs.sort()
        seg, off = -1, 0
        try:
            with open(self.path + "/pos") as f:
                parts = f.read().split()
            seg, off = int(parts[0]), int(parts[1])
        except (OSError, ValueError, IndexError):
            pass
        while segs and segs[0] < seg:
            self._remove(segs.pop(0))
        if not segs or segs[0] != seg:
            off = 0
        self._segs = segs
        self._roff = off
        n = 0
        for i, s in enumerate(segs):
            with open(self._name(s), "rb") as f:
                if i == 0:
                    f.seek(off)
                while True:
                    line = f.readline()
                    if not line.endswith(b"\n"):
                        break
                    n += 1
        self.nfile = n
        if n:
            log.info("buffer: %d records recovered from %s", n, self.path)
        else:
            self._reset_files()

    def _file_append(self, record):
        try:
            if self.nfile >= self.file_max and self.peek() is not None:
                self._consume()
                if self.sent:  # the head left because the buffer is full: a loss only if it was never sent
                    self.sent -= 1
                else:
                    self.dropped += 1
            if self._wf is None or self._wcount >= _SEGMENT:
                if self._wf is not None:
                    self._wf.close()
                seg = self._segs[-1] + 1 if self._segs else 0
                self._segs.append(seg)
                self._wf = open(self._name(seg), "ab")  # noqa: SIM115 - stays open for appends
                self._wcount = 0
            self._wf.write(record)
            self._wf.write(b"\n")
            self._wf.flush()
            self._wcount += 1
            self.nfile += 1
        except OSError as exc:
            self.dropped += 1
            log.error("buffer: flash write failed, record dropped: %s", log.why(exc))

    def _read_head(self):
        while self._segs:
            if self._rf is None:
                self._rf = open(self._name(self._segs[0]), "rb")  # noqa: SIM115 - stays open for reads
                self._rf.seek(self._roff)
            line = self._rf.readline()
            if line.endswith(b"\n"):
                return line[:-1]
            # end of this segment (or a line cut by a power failure): go on with the next
            if len(self._segs) == 1:
                self.nfile = 0
                self._reset_files()
                return None
            self._rf.close()
            self._rf = None
            self._remove(self._segs.pop(0))
            self._roff = 0
            if self._cur is not None:
                self._cur[1] -= 1
                if self._cur[1] < 0:
                    self._cur = None
        self.nfile = 0
        return None

    def _consume(self):
        self._roff += len(self._head) + 1
        self._head = None
        self.nfile -= 1
        if self._cur is not None:  # every flash record moves up by one
            self._cur[0] -= 1
            if self._cur[0] <= 0:
                self._cur = None
        if self.nfile <= 0:
            self.nfile = 0
            self._reset_files()
            return
        try:
            with open(self.path + "/pos", "w") as f:
                f.write("%d %d" % (self._segs[0], self._roff))
        except OSError as exc:
            log.error("buffer: cannot save the read position: %s", log.why(exc))

    def _reset_files(self):
        """Flash holds nothing unread: delete every segment and the position."""
        self.close()
        for seg in self._segs:
            self._remove(seg)
        self._segs = []
        self._roff = 0
        self._head = None
        self._wcount = _SEGMENT
        try:
            os.remove(self.path + "/pos")
        except OSError:
            pass

    def _remove(self, seg):
        try:
            os.remove(self._name(seg))
        except OSError:
            pass
