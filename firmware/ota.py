"""Updates over the air, the board's side: offers, the download into the inactive slot, the reports.

Loaded only in update mode (firmware/loader.py's `load` note, start.py): `update()` runs the board when an offer
or a report waits, and nothing else runs. A running board, a trial included, never loads it: an offer that
comes during a normal run is saved in `ota/offer.json` by app.py, which resets the board into update mode; a
trial is committed or rolled back by the loader, which leaves the report in `ota/last.json` and resets into
update mode too (docs/ota.md, "Heap"). The steps (docs/ota.md, "On the board"):

1. An offer (protocols/ota.py) must carry the HMAC of this board's command key (`commands.key`); a board
   without one refuses every offer (logged: it has no key to sign a report with). Refused too, with a signed
   `refused` report: a bad signature, an offer more than a day older (or newer) than the board clock, any
   trial still running, and later a bundle for a newer MicroPython. The running version is answered
   `current`.
2. The offer is kept in `ota/offer.json`; the inactive slot (`b` when `a` runs, else `a`; `ota/cfg` for a config)
   is emptied unless it holds a download of this very bundle (`bundle` there names its manifest's SHA-256),
   whose files are then resumed.
3. The manifest (file -1), then each file, chunk by chunk: one `get` (f, o, n) on `otaack`, one chunk back on
   `ota`, appended to the file on flash at once, so a reset or a lost connection resumes from the file's
   size. A request unanswered for 5 s is asked again (up to a minute apart). `downloading` is reported at
   most every 10 %.
4. `verifying`: the manifest's SHA-256 against the offer's, every file's against the manifest's, read back
   from flash through the one chunk buffer. Any mismatch: the slot is emptied, `refused` reported.
5. Installed: `manifest.dl` becomes `manifest.new` (a config: `ota/board.new.json`), `ota/boot.json` names the
   trial (tmp file + rename: never half-written), `installed` reported, the board resets into the trial
   (firmware/loader.py runs it and rolls it back if it fails).
6. The trial is the loader's (firmware/loader.py): committed once healthy, or rolled back. What
   `ota/last.json` holds then (`healthy`, or `rolledback` and its reason) is reported by update mode at its
   connect, then removed, and the board resets into its normal run.

Imports protocols.ota_board (the board's half of protocols/ota.py), protocols.sign, hashlib; knows nothing of
MQTT packets or of how the loader boots.
"""

import asyncio
import binascii
import hashlib
import json
import os
import sys

from firmware import VERSION, log
from protocols import ota_board as ota
from protocols import sign, topics
from protocols._compat import const
from protocols.errors import ProtocolError

try:  # MicroPython has no builtin TimeoutError (firmware/mqtt.py)
    from asyncio.core import TimeoutError as _Timeout
except ImportError:  # CPython
    _Timeout = TimeoutError

# The largest chunk asked for (less when mqtt.max_packet is smaller: Client.n). Each chunk arrives in a packet the
# MQTT client allocates; with 2048-byte chunks a board on the unix port's 160k heap (mpy files in RAM) ran out of
# contiguous memory during the download (docs/ota.md, "Heap").
_CHUNK = const(512)
_DAY_MS = const(86400000)


class _Stop(Exception):  # noqa: N818 - not an error of the board: a refusal, and its reason
    pass


def _size(path):
    """The file's size, or -1 when there is none."""
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _clear(folder):
    """Empty a slot: its manifests first (the loader never takes a half-emptied slot for complete), then the rest."""
    for name in ("/manifest", "/manifest.new", "/manifest.dl", "/bundle"):
        _remove(folder + name)
    try:
        entries = list(os.ilistdir(folder))
    except OSError:
        return
    for e in entries:
        path = folder + "/" + e[0]
        if e[1] == 0x4000:
            _clear(path)
            try:
                os.rmdir(path)
            except OSError:
                pass
        else:
            _remove(path)


def _mkdirs(folder):
    at = 0
    while at >= 0:
        at = folder.find("/", at + 1)
        try:
            os.mkdir(folder if at < 0 else folder[:at])
        except OSError:
            pass


class Client:
    def __init__(self, board):
        self.b = board
        self.c = board.ota  # the loader's boot record (firmware/loader.py)
        self.dir = self.c["dir"] + "/ota"  # R/ota, R the folder of the slots
        cfg = board.cfg
        k = cfg.get("commands")
        self.key = sign.Key(binascii.unhexlify(k["key"])) if k else None
        self.t_ack = topics.build(cfg["site"], cfg["device"], ota.OTAACK)
        # a chunk, its header line and the topic fit the MQTT client's max_packet
        self.n = min(_CHUNK, (cfg["mqtt"]["max_packet"] - 256) & ~255)
        self.buf = None  # the one chunk buffer, while a download runs (hashing reads files back through it)
        self.offer = None  # the offer being fetched, and its task
        self.task = None
        self.want = None  # (file, offset) asked for, and its answer: a chunk (memoryview) or a nochunk's reason
        self.got = None
        self.ev = asyncio.Event()
        _mkdirs(self.dir)

    def report(self, rid, version, state, done=None, total=None, why=None):
        """Queue a signed state report (QoS 1, sent at the next connect if offline); its PUBACK event, or None."""
        cfg = self.b.cfg
        now = self.b.hw.now_ms()
        try:
            if self.key is None or now is None:
                raise ProtocolError("ota", "no command key or no clock")
            payload = ota.encode_state(self.key, cfg["site"], cfg["device"], rid, version, state, now, done, total,
                                       why)
        except ProtocolError as exc:
            log.warn("ota: %s %s not reported: %s", state, version, exc)
            return None
        log.info("ota: %s %s %s%s", rid, version, state, (": " + why) if why else "")
        return self.b.client.publish_nowait(self.t_ack, payload, False, True)[1]

    def connected(self):
        """At each connect: report what ota/last.json holds; carry on a download that a reset interrupted."""
        asyncio.create_task(self._last())  # noqa: RUF006 - MicroPython keeps running tasks alive
        if self.task is None and _size(self.dir + "/offer.json") > 0:
            log.info("ota: carrying on the download of the saved offer")
            with open(self.dir + "/offer.json", "rb") as f:
                self.on_message(f.read())

    async def _last(self):
        path = self.dir + "/last.json"
        try:
            with open(path) as f:  # noqa: ASYNC230 - a board has no async files: a few bytes from flash
                last = json.load(f)
            # the loader writes no state (a short literal would stay interned while the board runs): a reason is
            # a rollback's, none a commit's
            why = last.get("reason")
            ev = self.report(last["id"], last["version"], "rolledback" if why else "healthy", why=why)
        except (OSError, ValueError, KeyError, TypeError):
            return
        if ev is not None:
            try:
                await asyncio.wait_for_ms(ev.wait(), 30000)
            except _Timeout:
                return  # not acknowledged: reported again at the next connect
        _remove(path)
        self._idle()

    def _idle(self):
        """Nothing left to do (no download, no report to send): update mode ends (update(), below)."""
        if self.task is None and _size(self.dir + "/last.json") < 0:
            self.b.otac = None

    def on_message(self, msg):
        """An `ota` message: a chunk answering the request in flight, or an offer or cancel (signed)."""
        try:
            if ota.is_chunk(msg):
                head, data = ota.split_chunk(msg)
                want = self.want
                if want is not None and self.offer is not None and head["id"] == self.offer["id"] and \
                        head["f"] == want[0]:
                    if head["op"] == "nochunk":
                        self.got = head["why"]
                    elif head["o"] == want[1]:
                        self.got = data
                    else:
                        return  # the answer to an earlier request (asked again after a reconnect)
                    self.ev.set()
                return
            if self.key is None:
                log.error("ota: update offered, refused: this board has no commands.key to check it with (give "
                          "it one: qala provision board, then deploy its config by cable)")
                return
            cfg = self.b.cfg
            try:
                m = ota.decode_control(self.key, cfg["site"], cfg["device"], msg)
            except ProtocolError as exc:
                log.error("ota: offer refused: %s", exc)
                if exc.field == "sig":
                    claim = json.loads(msg)
                    self.report(claim["id"], claim.get("version") or VERSION, "refused", why=exc.problem)
                raise
        except (ProtocolError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, ProtocolError) or exc.field != "sig":
                log.warn("ota: message refused: %s", exc)
            self._drop()
            return
        rid = m["id"]
        old = self.offer
        if m["op"] == "cancel":
            if old is not None and old["id"] == rid:
                self._stop()
                self.report(rid, old["version"], "cancelled")
            self._drop()
            return
        why = self._refusal(m)
        if why is not None:
            self.report(rid, m["version"], "current" if why == "current" else "refused",
                        why=None if why == "current" else why)
            self._drop()
            return
        if old is not None and old["id"] == rid and self.task is not None:
            return  # the hub said it again: the download goes on
        with open(self.dir + "/offer.json.tmp", "wb") as f:
            f.write(msg)
        os.rename(self.dir + "/offer.json.tmp", self.dir + "/offer.json")
        self._stop()
        self.offer = m
        self.task = asyncio.create_task(self._fetch(m))

    def _drop(self):
        """No download goes on: forget a saved offer (refused, cancelled) and give the heap back."""
        if self.task is None:
            _remove(self.dir + "/offer.json")
            self._idle()

    def _refusal(self, m):
        """Why an offer whose signature is right is not taken ("current": it runs already), or None."""
        now = self.b.hw.now_ms()
        if now is None:
            return "board clock not set"
        if abs(now - m["ts"]) > _DAY_MS:
            return "too old: offered %d h from the board clock (replayed?)" % (abs(now - m["ts"]) // 3600000)
        if m["version"] == (VERSION if m["kind"] == "fw" else self.c.get("config")):
            return "current"
        return None

    def _stop(self):
        if self.task is not None:
            self.task.cancel()
        self.task = None
        self.offer = None

    async def _fetch(self, m):
        """Download, verify and install the offer m (module docstring, steps 2-5), or refuse it."""
        rid, version, c = m["id"], m["version"], self.c
        slot = self.dir + "/cfg" if m["kind"] == "config" else self.dir[:-3] + ("b" if c["boot"] == "a" else "a")
        man = slot + "/manifest.dl"
        self.buf = bytearray(self.n)
        try:
            held = None  # which bundle the slot holds a download of (slot/bundle: its manifest's SHA-256)
            try:
                with open(slot + "/bundle") as f:  # noqa: ASYNC230 - a board has no async files: 64 bytes
                    held = f.read()
            except OSError:
                pass
            if held != m["manifest"] or _size(man) > m["size"]:
                _clear(slot)
                _mkdirs(slot)
                with open(slot + "/bundle", "w") as f:  # noqa: ASYNC230 - as above
                    f.write(m["manifest"])
            await self._file(-1, man, m["size"])
            if self._sha(man) != m["manifest"]:
                raise _Stop("hash mismatch: manifest")
            files, total = self._scan(man, m)
            done = 0
            step = -1
            for i in range(files):
                path, size = self._scan(man, m, i)[1:3]
                dest = slot + "/" + path
                _mkdirs(dest[:dest.rfind("/")])
                if _size(dest) > size:
                    _remove(dest)
                if 10 * done // total > step:
                    step = 10 * done // total
                    self.report(rid, version, "downloading", done, total)
                await self._file(i, dest, size)
                done += size
            self.report(rid, version, "verifying")
            for i in range(files):
                path, _, sha = self._scan(man, m, i)[1:]
                if self._sha(slot + "/" + path) != sha:
                    raise _Stop("hash mismatch: %s" % path)
            if m["kind"] == "config":
                os.rename(slot + "/board.json", self.dir + "/board.new.json")
                new = c["boot"]
            else:
                os.rename(man, slot + "/manifest.new")
                new = slot[-1]
            import loader  # the A/B loader that runs this board (update mode runs only under it): its atomic write

            loader.keep(self.dir + "/boot.json", {"boot": c["boot"], "next": new, "kind": m["kind"], "count": 0,
                                                  "max": m["tries"], "timeout": m["trial"], "id": rid,
                                                  "version": version, "config": c.get("config")})
            _remove(self.dir + "/offer.json")
        except _Stop as exc:
            why = str(exc)
        except OSError as exc:
            why = "no space on flash" if exc.args and exc.args[0] == 28 else "flash: %s" % log.why(exc)
        except ProtocolError as exc:
            why = "manifest: %s" % exc
        else:
            ev = self.report(rid, version, "installed")
            if ev is not None:
                try:
                    await asyncio.wait_for_ms(ev.wait(), 10000)
                except _Timeout:
                    pass
            log.info("ota: %s installed: resetting into its trial", version)
            self.b.hw.reset()
            return
        finally:
            if self.offer is None or self.offer is m:  # not when a newer offer's task runs already
                self.buf = None
                self.want = None
        _clear(slot)
        self.task = self.offer = None
        self.report(rid, version, "refused", why=why)
        self._drop()

    def _scan(self, man, m, i=-1):
        """The i-th `file` line of the manifest as ("file", path, size, sha256 hex); with i = -1, (files, total
        bytes), every line checked against the offer and this board (_Stop if one does not fit)."""
        n = total = 0
        with open(man, "rb") as f:
            for line in f:
                item = ota.parse_manifest_line(line)
                what = item[0]
                if what == "file":
                    if n == i:
                        return item
                    if m["kind"] == "config" and item[1] != "board.json":
                        raise _Stop("manifest: a config bundle holds board.json only")
                    n += 1
                    total += item[2]
                elif what in ("kind", "version") and item[1] != m[what]:
                    raise _Stop("manifest: %s %s, offered as %s" % (what, item[1], m[what]))
                elif what == "micropython" and tuple(sys.implementation.version[:2]) < item[1]:
                    raise _Stop("needs micropython %d.%d, this board runs %d.%d" % (
                        item[1] + sys.implementation.version[:2]))
        if i >= 0 or not n:
            raise _Stop("manifest: file %d missing" % max(i, n))
        return n, max(total, 1)

    async def _file(self, f, dest, size):
        """Fetch file f (-1: the manifest) into dest from its current size, chunk by chunk, each appended at once."""
        at = max(_size(dest), 0)
        rid = self.offer["id"]
        while at < size:
            n = min(self.n, size - at)
            wait = 5000
            while True:
                self.want = (f, at)
                self.got = None
                self.ev.clear()
                if self.b.client.isconnected():
                    self.b.client.publish_nowait(self.t_ack, ota.encode_get(rid, f, at, n), False, True)
                try:
                    await asyncio.wait_for_ms(self.ev.wait(), wait)
                    break
                except _Timeout:
                    wait = min(wait * 2, 60000)  # asked again, less and less often
            got = self.got
            if isinstance(got, str) or not len(got):
                raise _Stop("hub: %s" % (got or "empty chunk"))
            with open(dest, "ab") as out:  # noqa: ASYNC230 - a board has no async files: one chunk
                out.write(got)
            at += len(got)

    def _sha(self, path):
        """SHA-256 (64 hex) of a file, read back from flash through the chunk buffer."""
        h = hashlib.sha256()
        buf = self.buf
        view = memoryview(buf)
        with open(path, "rb") as f:
            n = f.readinto(buf)
            while n:
                h.update(view[:n])
                n = f.readinto(buf)
        return binascii.hexlify(h.digest()).decode()


async def _forever(make, arg):
    """Run make(arg) again (after 1 s) whenever it raises: app.py's guard, without loading app.py."""
    while True:
        try:
            await make(arg)
            return
        except Exception as exc:
            log.error("ota: %s failed: %s; restarting", make, log.why(exc))
            await asyncio.sleep(1)


class _Host:
    """What a Client needs of a board (cfg, hw, ota, client, otac), in update mode, where no Board runs."""


async def update(impl, cfg, c):
    """Update mode: the board boots into it when an offer or a report waits (firmware/loader.py, start.py) and
    does nothing else while it downloads, so that the download has the heap the running board would use
    (docs/ota.md, "Heap"). Actuators are held at their fail-safe values; the watchdog is fed; no telemetry is
    sampled (the board shows offline, its `downloading` reports say why). It ends with a reset: into the
    trial once installed, into the running version when the offer is refused or cancelled, when no chunk
    came for 10 minutes (the offer is then dropped: the hub offers it again), or once the report in
    `ota/last.json` is sent (a trial's end, firmware/loader.py); a report that cannot go within half of
    `stall_after` (a minute by default) waits in `ota/last.wait` for the running board's next connection
    (app.py)."""
    from firmware.mqtt import client_for  # not firmware.app: none of the running board's code is loaded

    acts = cfg["actuators"]
    for name in acts:
        impl.actuator(name, acts[name]).set(acts[name]["failsafe"])
    host = _Host()
    host.hw = impl
    host.cfg = cfg
    host.ota = c
    host.client = client = client_for(cfg["mqtt"], cfg["site"], cfg["device"])
    client.can_connect = impl.link_up
    host.otac = me = Client(host)
    topic = topics.build(cfg["site"], cfg["device"], ota.OTA)
    client.set_callback(lambda t, msg, retained: me.on_message(msg) if t == topic else None)

    async def up(client, session):
        while impl.now_ms() is None:  # noqa: ASYNC110 - the clock has no event to wait on
            await asyncio.sleep(1)
        await client.subscribe(topic, 1)
        me.connected()

    log.info("ota: update mode: nothing but the download runs")
    asyncio.create_task(_forever(impl.network, cfg))  # noqa: RUF006 - MicroPython keeps running tasks alive
    asyncio.create_task(_forever(client.run, up))  # noqa: RUF006
    impl.watchdog(cfg["watchdog"])
    quiet = 0
    seen = None
    while host.otac is not None and quiet < 600:  # the client drops itself when it has nothing left to do
        await asyncio.sleep(1)
        impl.feed()
        quiet = 0 if me.want != seen else quiet + 1
        seen = me.want
        if me.task is None and quiet >= cfg["stall_after"] // 2:
            break
    if host.otac is not None and me.task is None:
        # only a report waits, and it could not go for stall_after / 2 (no uplink): the board goes back to work,
        # and app.py brings it back here once it has connected (ota/last.wait)
        log.warn("ota: the report could not be sent: it waits for the running board's next connection")
        os.rename(me.dir + "/last.json", me.dir + "/last.wait")
    elif host.otac is not None:
        log.error("ota: no chunk from the hub for 10 minutes: the offer is dropped (the hub offers it again)")
        me._stop()
        _remove(me.dir + "/offer.json")
    for _ in range(10):  # the last report out first (the client keeps what awaits a PUBACK)
        if not client._pending:  # no public view of it; this module and mqtt.py ship together
            break
        await asyncio.sleep(1)
    impl.reset()
