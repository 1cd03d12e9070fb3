"""The offline buffer: encoded telemetry waiting for its PUBACK, in order, bounded, surviving a reset.

One FIFO in two parts: the oldest records in segment files on flash (`<dir>/<n>`, one record per line,
plus `<dir>/pos` with the read position), the newest in a RAM list. While the uplink is up, records
live in RAM until acknowledged; RAM overflow spills the oldest to flash. While it is down, every record
goes to flash at once, so a power cut loses nothing that was sampled. When flash holds `file_max` records
the oldest is dropped and counted in `dropped`; without a file (`file_max` 0) RAM drops its oldest instead.

`peek()` gives the head without removing it; `pop()` removes it once the broker acknowledged it. The read
position is written on every pop from flash: after a reset a record is sent again at most once (the hub
keys messages by (boot, seq)). Records are single-line bytes (compact JSON), at most a few hundred bytes.
No clock, no sockets: tests drive it directly under CPython and MicroPython.
"""

import os

from firmware import log

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


class Buffer:
    def __init__(self, ram_max, file_max=0, path=None):
        self.ram_max = ram_max
        self.file_max = file_max if path else 0
        self.path = path
        self.ram = []
        self.dropped = 0
        self.offline = True
        self.nfile = 0
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
        for f in (self._rf, self._wf):
            if f is not None:
                f.close()
        self._rf = self._wf = None

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
        self.nfile = 0
        return None

    def _consume(self):
        self._roff += len(self._head) + 1
        self._head = None
        self.nfile -= 1
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
