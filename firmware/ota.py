"""Updates over the air, the board's side: offers, the download into the inactive slot, the commit, the reports.

firmware/app.py imports this on the first need only (an `ota` message, a trial to commit, a report the
loader left on flash): a board that is never updated never loads it. The steps (docs/ota.md, "On the board"):

1. An offer (protocols/ota.py) must carry the HMAC of this board's command key (`commands.key`); a board
   without one refuses every offer (logged: it has no key to sign a report with). Refused too, with a signed
   `refused` report: a bad signature, an offer more than a day older (or newer) than the board clock, a
   bundle for a newer MicroPython, any trial still running. The running version is answered `current`.
2. The offer is kept in `ota/offer`; the inactive slot (`b` when `a` runs, else `a`; `ota/cfg` for a config)
   is emptied unless it holds this very offer's download, whose files are then resumed.
3. The manifest (file -1), then each file, chunk by chunk: one `get` (f, o, n) on `otaack`, one chunk back on
   `ota`, appended to the file on flash at once, so a reset or a lost connection resumes from the file's
   size. A request unanswered for 5 s is asked again (up to a minute apart). `downloading` reported at most
   every 10 %.
4. `verifying`: the manifest's SHA-256 against the offer's, every file's against the manifest's, read back
   from flash through the one chunk buffer. Any mismatch: the slot is emptied, `refused` reported.
5. Installed: `manifest.dl` becomes `manifest.new` (a config: `ota/board.new.json`), `ota/boot.json` names the
   trial (tmp file + rename: never half-written), `installed` reported, the board resets into the trial
   (firmware/loader.py runs it and rolls it back if it fails).
6. `commit()`, when the trial has proved healthy (app.py: the hub confirmed a record of this boot): the slot
   becomes current (`manifest.new` -> `manifest`; a config: `board.json` kept as `board.old.json`, the new
   one renamed over it), `ota/last.json` records `healthy` and `ota/boot.json` drops the trial. Whatever
   `ota/last.json` holds (also the loader's `rolledback`) is reported at the next connect, then removed.

Imports protocols.ota, protocols.sign, hashlib; knows nothing of MQTT packets or of how the loader boots.
"""

import asyncio
import binascii
import hashlib
import json
import os
import sys

from firmware import VERSION, log
from protocols import ota, sign, topics
from protocols._compat import const
from protocols.errors import ProtocolError

try:  # MicroPython has no builtin TimeoutError (firmware/mqtt.py)
    from asyncio.core import TimeoutError as _Timeout
except ImportError:  # CPython
    _Timeout = TimeoutError

CHUNK = const(2048)  # the largest chunk asked for; less when mqtt.max_packet is smaller (Client.n)
_DAY_MS = const(86400000)
_WAIT_MS = const(5000)


class _Stop(Exception):  # noqa: N818 - not an error of the board: a refusal
    """The download cannot go on: the refusal's reason."""


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
    """Empty a slot: its `manifest` first (the loader never takes a half-emptied slot for complete), then the rest."""
    for name in ("manifest", "manifest.new", "manifest.dl"):
        _remove(folder + "/" + name)
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
    while True:
        at = folder.find("/", at + 1)
        try:
            os.mkdir(folder if at < 0 else folder[:at])
        except OSError:
            pass
        if at < 0:
            return


def write_json(path, obj):
    """Write obj as JSON to path atomically (tmp file + rename): a power cut leaves the old file or the new one.
    Keys starting with `_` (the loader's run-time notes) are left out."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({k: obj[k] for k in obj if not k.startswith("_")}, f)
    os.rename(tmp, path)


class Client:
    def __init__(self, board):
        self.b = board
        self.c = board.ota  # the loader's boot record, shared: commit() clears its trial, the loader sees it
        self.dir = self.c["_root"] + "/ota"
        cfg = board.cfg
        self.site = cfg["site"]
        self.device = cfg["device"]
        k = cfg.get("commands")
        self.key = sign.Key(binascii.unhexlify(k["key"])) if k else None
        self.t_ack = topics.build(self.site, self.device, topics.OTAACK)
        # a chunk, its header and the topic must fit the MQTT client's max_packet
        self.n = min(CHUNK, (cfg["mqtt"]["max_packet"] - 256) & ~255)
        self.buf = None  # the one chunk buffer, while a download runs (hashing reads files back through it)
        self.offer = None  # the offer being fetched
        self.task = None
        self.want = None  # (file, offset) asked for
        self.got = None  # its answer: a memoryview of the chunk, or the hub's nochunk reason (str)
        self.ev = asyncio.Event()
        _mkdirs(self.dir)

    # -------------------------------------------------------------------------------------------- reports

    def report(self, rid, version, state, done=None, total=None, reason=None):
        """Queue a signed state report (QoS 1, sent at the next connect if offline); its PUBACK event, or None."""
        now = self.b.hw.now_ms()
        if self.key is None or now is None:
            log.warn("ota: %s %s not reported (no command key or no clock)", state, version)
            return None
        try:
            payload = ota.encode_state(self.key, self.site, self.device, rid, version, state, now, done, total,
                                       reason)
        except ProtocolError as exc:
            log.warn("ota: %s report for %s not sent: %s", state, rid, exc)
            return None
        log.info("ota: %s %s %s%s", rid, version, state, (": " + reason) if reason else "")
        return self.b.client.publish_nowait(self.t_ack, payload, False, True)[1]

    def connected(self):
        """At each connect: report what ota/last.json holds; carry on a download that a reset interrupted."""
        asyncio.create_task(self._last())  # noqa: RUF006 - MicroPython keeps running tasks alive
        if self.task is None:
            try:
                with open(self.dir + "/offer", "rb") as f:
                    saved = f.read()
            except OSError:
                return
            log.info("ota: carrying on the download of the saved offer")
            self._control(saved)

    async def _last(self):
        path = self.dir + "/last.json"
        try:
            with open(path) as f:  # noqa: ASYNC230 - a board has no async files: a few bytes from flash
                last = json.load(f)
            rid, version, state = last["id"], last["version"], last["state"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        ev = self.report(rid, version, state, reason=last.get("reason"))
        if ev is not None:
            try:
                await asyncio.wait_for_ms(ev.wait(), 30000)
            except _Timeout:
                return  # not acknowledged: reported again at the next connect
        _remove(path)

    # ------------------------------------------------------------------------------------------- messages

    def on_message(self, msg):
        """An `ota` message: an offer or cancel (signed), or a chunk answering the request in flight."""
        try:
            if ota.is_chunk(msg):
                head, data = ota.split_chunk(msg)
                want = self.want
                if want is None or self.offer is None or head["id"] != self.offer["id"] or head["f"] != want[0]:
                    return  # an answer to an earlier request (sent again after a reconnect)
                if head["op"] == "nochunk":
                    self.got = head["why"]
                elif head["o"] == want[1]:
                    self.got = data
                else:
                    return
                self.ev.set()
            else:
                self._control(msg)
        except ProtocolError as exc:
            log.warn("ota: message refused: %s", exc)

    def _control(self, msg):
        if self.key is None:
            log.error("ota: update offered, refused: this board has no commands.key to check it with (give it "
                      "one: qala provision board, then deploy its config by cable)")
            return
        try:
            m = ota.decode_control(self.key, self.site, self.device, msg)
        except ProtocolError as exc:
            log.error("ota: offer refused: %s", exc)
            if exc.field == "sig":
                try:
                    claim = json.loads(msg)
                    self.report(claim["id"], claim.get("version") or VERSION, "refused", reason=exc.problem)
                except (ValueError, KeyError, TypeError):
                    pass
            return
        rid = m["id"]
        if m["op"] == "cancel":
            if self.offer is not None and self.offer["id"] == rid:
                self._stop()
                _remove(self.dir + "/offer")
                self.report(rid, self.offer["version"], "cancelled")
                self.offer = None
            return
        version = m["version"]
        why = self._refusal(m)
        if why == "current":
            self.report(rid, version, "current")
            return
        if why is not None:
            self.report(rid, version, "refused", reason=why)
            return
        if self.offer is not None and self.offer["id"] == rid and self.task is not None:
            return  # the hub said it again: the download goes on
        keep = False  # the slot holds a download of this very bundle (a reset, or the same bundle offered again)
        try:
            with open(self.dir + "/offer") as f:
                keep = json.load(f).get("manifest") == m["manifest"]
        except (OSError, ValueError, AttributeError):
            pass
        with open(self.dir + "/offer.tmp", "wb") as f:
            f.write(msg)
        os.rename(self.dir + "/offer.tmp", self.dir + "/offer")
        self._stop()
        self.offer = m
        self.task = asyncio.create_task(self._fetch(m, keep))

    def _refusal(self, m):
        """Why an offer whose signature is right is not taken ("current": it runs already), or None."""
        now = self.b.hw.now_ms()
        if now is None:
            return "board clock not set"
        if now - m["ts"] > _DAY_MS:
            return "too old: offered %d h ago (replayed?)" % ((now - m["ts"]) // 3600000)
        if m["ts"] - now > _DAY_MS:
            return "dated %d h ahead of the board clock" % ((m["ts"] - now) // 3600000)
        c = self.c
        if c.get("new"):
            return "a trial of %s is running; offer again once it ends" % c.get("version")
        if m["version"] == (VERSION if m["kind"] == "fw" else c.get("config")):
            return "current"
        return None

    def _stop(self):
        if self.task is not None:
            self.task.cancel()
            self.task = None

    # ------------------------------------------------------------------------------------------- download

    def _slot(self, kind):
        if kind == "config":
            return self.dir + "/cfg"
        return "%s/%s" % (self.c["_root"], "b" if self.c["cur"] == "a" else "a")

    async def _fetch(self, m, keep):
        rid = m["id"]
        slot = self._slot(m["kind"])
        self.buf = bytearray(self.n)
        try:
            if not keep:
                _clear(slot)
            _mkdirs(slot)
            await self._download(m, slot)
            self._install(m, slot)
        except _Stop as exc:
            why = str(exc)
        except OSError as exc:
            why = "no space on flash" if exc.args and exc.args[0] == 28 else "flash: %s" % log.why(exc)
        except ProtocolError as exc:
            why = "manifest: %s" % exc
        else:
            ev = self.report(rid, m["version"], "installed")
            if ev is not None:
                try:
                    await asyncio.wait_for_ms(ev.wait(), 10000)
                except _Timeout:
                    pass
            log.info("ota: %s installed: resetting into its trial", m["version"])
            self.b.hw.reset()
            return
        finally:
            self.buf = None
            self.want = None
        log.error("ota: %s %s refused: %s", rid, m["version"], why)
        _clear(slot)
        _remove(self.dir + "/offer")
        self.offer = None
        self.task = None
        self.report(rid, m["version"], "refused", reason=why)

    async def _download(self, m, slot):
        man = slot + "/manifest.dl"
        have = _size(man)
        if have > m["size"] or (have == m["size"] and self._sha(man) != m["manifest"]):
            _clear(slot)
        await self._file(-1, man, m["size"])
        if self._sha(man) != m["manifest"]:
            raise _Stop("hash mismatch: manifest")
        files, total = self._check(man, m)
        done = 0
        step = -1
        for i in range(files):
            path, size = self._entry(man, i)[1:3]
            dest = slot + "/" + path
            _mkdirs(dest[:dest.rfind("/")])
            if _size(dest) > size:
                _remove(dest)
            done += max(_size(dest), 0)
            while True:
                at = max(_size(dest), 0)
                if 10 * done // max(total, 1) > step:
                    step = 10 * done // max(total, 1)
                    self.report(m["id"], m["version"], "downloading", done, total)
                if at >= size:
                    break
                data = await self._get(i, at, min(self.n, size - at))
                with open(dest, "ab") as f:  # noqa: ASYNC230 - a board has no async files: one chunk
                    f.write(data)
                done += len(data)
        self.report(m["id"], m["version"], "verifying")
        for i in range(files):
            path, size, sha = self._entry(man, i)[1:]
            if self._sha(slot + "/" + path) != sha:
                raise _Stop("hash mismatch: %s" % path)

    def _check(self, man, m):
        """(files, total bytes) of a verified manifest; _Stop when it does not fit the offer or this board."""
        n = total = 0
        with open(man, "rb") as f:
            for i, line in enumerate(f):
                item = ota.parse_manifest_line(line)
                what = item[0]
                if i < 4 and what != ("qala-bundle", "kind", "version", "micropython")[i]:
                    raise _Stop("manifest: line %d is %s" % (i + 1, what))
                if what == "kind" and item[1] != m["kind"]:
                    raise _Stop("manifest: kind %s, offered as %s" % (item[1], m["kind"]))
                if what == "version" and item[1] != m["version"]:
                    raise _Stop("manifest: version %s, offered as %s" % (item[1], m["version"]))
                if what == "micropython" and tuple(sys.implementation.version[:2]) < item[1]:
                    raise _Stop("needs micropython %d.%d, this board runs %d.%d" % (
                        item[1][0], item[1][1], sys.implementation.version[0], sys.implementation.version[1]))
                if what == "file":
                    if m["kind"] == "config" and item[1] != "board.json":
                        raise _Stop("manifest: a config bundle holds board.json only")
                    n += 1
                    total += item[2]
        if not n:
            raise _Stop("manifest: no files")
        return n, total

    def _entry(self, man, i):
        """The i-th `file` line of the manifest: ("file", path, size, sha256 hex)."""
        with open(man, "rb") as f:
            for line in f:
                if line.startswith(b"file ") and not i:
                    return ota.parse_manifest_line(line)
                if line.startswith(b"file "):
                    i -= 1
        raise _Stop("manifest: file %d missing" % i)

    async def _file(self, f, dest, size):
        at = max(_size(dest), 0)
        while at < size:
            data = await self._get(f, at, min(self.n, size - at))
            with open(dest, "ab") as out:  # noqa: ASYNC230 - a board has no async files: one chunk
                out.write(data)
            at += len(data)

    async def _get(self, f, o, n):
        """The chunk (f, o, n) from the hub: asked, and asked again while it does not come."""
        wait = _WAIT_MS
        rid = self.offer["id"]
        while True:
            self.want = (f, o)
            self.got = None
            self.ev.clear()
            if self.b.client.isconnected():
                self.b.client.publish_nowait(self.t_ack, ota.encode_get(rid, f, o, n), False, True)
            try:
                await asyncio.wait_for_ms(self.ev.wait(), wait)
            except _Timeout:
                wait = min(wait * 2, 60000)
                continue
            got = self.got
            if isinstance(got, str):
                raise _Stop("hub: %s" % got)
            if not len(got):
                raise _Stop("hub: empty chunk of file %d at %d" % (f, o))
            return got

    def _sha(self, path):
        """SHA-256 (64 hex) of a file, read back from flash through the chunk buffer."""
        h = hashlib.sha256()
        buf = self.buf
        view = memoryview(buf)
        with open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(view[:n])
        return binascii.hexlify(h.digest()).decode()

    def _install(self, m, slot):
        c = self.c
        if m["kind"] == "config":
            os.rename(slot + "/board.json", self.dir + "/board.new.json")
            new = c["cur"]
        else:
            os.rename(slot + "/manifest.dl", slot + "/manifest.new")
            new = slot[slot.rfind("/") + 1:]
        boot = {"cur": c["cur"], "new": new, "kind": m["kind"], "tries": 0, "max": m["tries"], "trial": m["trial"],
                "id": m["id"], "version": m["version"], "config": c.get("config")}
        write_json(self.dir + "/boot.json", boot)
        _remove(self.dir + "/offer")

    # --------------------------------------------------------------------------------------------- commit

    def commit(self):
        """The trial is healthy: make it the board's own (module docstring, step 6) and report it."""
        c = self.c
        if not c.get("new"):
            return
        if c.get("kind") == "config":
            new = self.dir + "/board.new.json"
            home = c["_home"]
            if _size(new) >= 0:
                cut = home.rfind("/")
                old = home[:cut + 1] + "board.old.json"
                with open(home, "rb") as src, open(old + ".tmp", "wb") as dst:
                    dst.write(src.read())
                os.rename(old + ".tmp", old)
                os.rename(new, home)
            c["config"] = c["version"]
        else:
            slot = "%s/%s" % (c["_root"], c["new"])
            if _size(slot + "/manifest.new") >= 0:
                os.rename(slot + "/manifest.new", slot + "/manifest")
            c["cur"] = c["new"]
        write_json(self.dir + "/last.json", {"id": c["id"], "version": c["version"], "state": "healthy"})
        c["new"] = None
        c["tries"] = 0
        write_json(self.dir + "/boot.json", c)
        log.info("ota: %s %s healthy: committed", c.get("kind"), c["version"])
        asyncio.create_task(self._last())  # noqa: RUF006 - MicroPython keeps running tasks alive
