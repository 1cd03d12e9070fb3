"""Over-the-air updates on the wire: the bundle manifest, the signed offer, chunks, chunk requests, state reports.

Topics (protocols/topics.py): `qala/{site}/{device}/ota` (hub -> board, QoS 1, never retained) carries offers,
cancels, chunks and nochunks; `qala/{site}/{device}/otaack` (board -> hub, QoS 1) carries chunk requests and
state reports. docs/ota.md tells the whole story; this module is only the bytes.

Manifest (text, `\\n` line ends, made by the hub, read line by line on a board):

    qala-bundle 1
    kind fw                                   (or: config, then exactly one file, board.json)
    version 0.2.0
    micropython 1.22                          (the oldest MicroPython the bundle runs on)
    file firmware/app.mpy 12345 <64 hex sha256>

A bundle is board-independent. What is signed, per board with its command key (protocols/sign.py, domain
`qala-ota`), is the offer, which carries the SHA-256 and size of the manifest; the manifest carries size and
SHA-256 of every file. A state report is signed by the board (domain `qala-otr`).

    {"op":"offer","id":R,"kind":"fw","version":V,"manifest":SHA,"size":N,"trial":S,"tries":T,"ts":MS,"sig":..}
    {"op":"cancel","id":R,"ts":MS,"sig":..}
    {"op":"chunk","id":R,"f":F,"o":O,"n":N}\\n<N bytes>       F = -1: the manifest, 0..: its file lines in order
    {"op":"nochunk","id":R,"f":F,"why":".."}\\n               (no bytes)
    {"op":"get","id":R,"f":F,"o":O,"n":N}                     (also acknowledges the previous chunk)
    {"op":"state","id":R,"version":V,"state":S,"done":B,"total":B,"reason":"..","ts":MS,"sig":..}

Only chunk and nochunk payloads hold a raw newline (compact JSON never does): `is_chunk` tells them apart
from offers and cancels without parsing. Every decoder raises ProtocolError(field, what) on anything
malformed.

Imports protocols.fields, protocols.sign and protocols.topics; knows nothing of files, sockets or clocks.
A board imports it only when an `ota` message arrives.
"""

from protocols import sign
from protocols.errors import ProtocolError, describe
from protocols.fields import dumps_text, integer, parse, required, text, timestamp
from protocols.topics import check_id

DOMAIN_OFFER = b"qala-ota"
DOMAIN_REPORT = b"qala-otr"
STATES = ("downloading", "verifying", "refused", "installed", "healthy", "rolledback", "current", "cancelled")
KINDS = ("fw", "config")
CHUNK_MAX = 4096
# Other limits stay literals inside the functions: each module global's name is a qstr on the board.


def check_version(field: str, value: object) -> str:
    """A release version: 1 to 32 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit."""
    if not isinstance(value, str) or not 0 < len(value) <= 32:
        raise ProtocolError(field, "must be 1 to 32 characters, got %s" % describe(value))
    for c in value:
        if not (("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "._+-"):
            raise ProtocolError(field, "character %s not allowed (use A-Z a-z 0-9 . _ + -)" % describe(c))
    if value[0] in "._+-":
        raise ProtocolError(field, "must start with a letter or digit: %s" % describe(value))
    return value


def check_path(field: str, value: object) -> str:
    """A file path relative to a slot: `/`-separated parts of A-Z a-z 0-9 . _ -, no empty, `.` or `..` part."""
    if not isinstance(value, str) or not 0 < len(value) <= 96:
        raise ProtocolError(field, "must be a relative path of 1 to 96 characters, got %s" % describe(value))
    for part in value.split("/"):
        if part in ("", ".", ".."):
            raise ProtocolError(field, "empty, '.' or '..' part (or a leading '/') in %s" % describe(value))
        for c in part:
            if not (("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "._-"):
                raise ProtocolError(field, "character %s not allowed in %s" % (describe(c), describe(value)))
    return value


def check_sha(field: str, value: object) -> str:
    """A SHA-256 as 64 lowercase hex characters."""
    if not isinstance(value, str) or len(value) != 64:
        raise ProtocolError(field, "must be 64 lowercase hex characters, got %s" % describe(value))
    for c in value:
        if not (("0" <= c <= "9") or ("a" <= c <= "f")):
            raise ProtocolError(field, "must be 64 lowercase hex characters, got %s" % describe(value))
    return value


def _kind(value: object) -> str:
    if not isinstance(value, str) or value not in KINDS:
        raise ProtocolError("kind", "must be one of %s, got %s" % ("|".join(KINDS), describe(value)))
    return value


# ------------------------------------------------------------------------------------------------ manifest


def encode_manifest(kind: str, version: str, micropython: tuple[int, int] | str,
                    files: list[tuple[str, int, str]]) -> bytes:
    """The manifest text; `micropython` is (major, minor) or "major.minor"; files are (path, size, sha256 hex)."""
    _kind(kind)
    check_version("version", version)
    if isinstance(micropython, str):
        micropython = _mpy_version(micropython)
    major, minor = micropython
    lines = ["qala-bundle 1", "kind " + kind, "version " + version, "micropython %d.%d" % (
        integer("micropython", major, 0, 99), integer("micropython", minor, 0, 999))]
    seen = set()
    for path, size, sha in files:
        check_path("file", path)
        if path in seen:
            raise ProtocolError("file", "listed twice: %s" % describe(path))
        seen.add(path)
        lines.append("file %s %d %s" % (path, integer("file." + path, size, 0, 0x1000000), check_sha("file", sha)))
    _files_fit(kind, [f[0] for f in files])
    return ("\n".join(lines) + "\n").encode()


def _files_fit(kind: str, paths: list[str]) -> None:
    if kind == "config" and paths != ["board.json"]:
        raise ProtocolError("file", "a config bundle holds exactly one file, board.json")
    if not paths:
        raise ProtocolError("file", "a bundle lists at least one file")
    if len(paths) > 200:
        raise ProtocolError("file", "more than 200 files")


def _mpy_version(value: str) -> tuple[int, int]:
    parts = value.split(".")
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise ProtocolError("micropython", "must be major.minor, e.g. 1.22, got %s" % describe(value))
    return int(parts[0]), int(parts[1])


def parse_manifest_line(line: object) -> tuple:  # type: ignore[type-arg]  # shapes differ by line kind
    """One manifest line (str or bytes, with or without its `\\n`) as a tuple:
    ("qala-bundle", 1) / ("kind", k) / ("version", v) / ("micropython", (major, minor)) /
    ("file", path, size, sha256 hex)."""
    if isinstance(line, (bytes, bytearray, memoryview)):
        try:
            line = bytes(line).decode()
        except UnicodeError:
            raise ProtocolError("manifest", "line is not valid UTF-8") from None
    if not isinstance(line, str):
        raise ProtocolError("manifest", "line must be text, got %s" % describe(line))
    if line.endswith("\n"):  # noqa: FURB188 - no str.removesuffix on MicroPython
        line = line[:-1]
    if len(line) > 200:
        raise ProtocolError("manifest", "line longer than 200 characters")
    words = line.split(" ")
    what = words[0]
    if what == "file":
        if len(words) != 4 or not words[2].isdigit():
            raise ProtocolError("manifest", "expected `file PATH SIZE SHA256`, got %s" % describe(line))
        return ("file", check_path("file", words[1]), integer("file.size", int(words[2]), 0, 0x1000000),
                check_sha("file", words[3]))
    if len(words) != 2:
        raise ProtocolError("manifest", "expected `NAME VALUE`, got %s" % describe(line))
    value = words[1]
    if what == "qala-bundle":
        if value != "1":
            raise ProtocolError("manifest", "bundle format %s not supported (this side knows 1)" % describe(value))
        return (what, 1)
    if what == "kind":
        return (what, _kind(value))
    if what == "version":
        return (what, check_version("version", value))
    if what == "micropython":
        return (what, _mpy_version(value))
    raise ProtocolError("manifest", "unknown line %s" % describe(line))


def parse_manifest(data: object) -> dict:  # type: ignore[type-arg]
    """A whole manifest (CPython convenience): {"kind", "version", "micropython": (maj, min), "files": [(path,
    size, sha)]}, its lines in the order the format gives."""
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("manifest", "must be bytes, got %s" % describe(type(data)))
    data = bytes(data)
    if not data.endswith(b"\n"):
        raise ProtocolError("manifest", "must end with a newline")
    lines = data[:-1].split(b"\n")
    order = ("qala-bundle", "kind", "version", "micropython")
    out: dict = {"files": []}  # type: ignore[type-arg]
    for i, raw in enumerate(lines):
        item = parse_manifest_line(raw)
        if i < len(order):
            if item[0] != order[i]:
                raise ProtocolError("manifest", "line %d must be `%s ...`, got %s" % (i + 1, order[i], describe(raw)))
            out[item[0]] = item[1]
        elif item[0] != "file":
            raise ProtocolError("manifest", "line %d: only `file` lines follow the header" % (i + 1))
        else:
            if item[1] in [f[0] for f in out["files"]]:
                raise ProtocolError("file", "listed twice: %s" % describe(item[1]))
            out["files"].append(item[1:])
    if len(lines) < len(order):
        raise ProtocolError("manifest", "incomplete header (qala-bundle, kind, version, micropython)")
    del out["qala-bundle"]
    _files_fit(out["kind"], [f[0] for f in out["files"]])
    return out


# ---------------------------------------------------------------------------------------- offer, cancel


def encode_offer(key: object, site: str, device: str, rid: str, kind: str, version: str, manifest_sha: str,
                 size: int, trial: int, tries: int, ts: int) -> bytes:
    """An offer of a bundle to site/device, signed with the board's command key."""
    check_id("site", site)
    check_id("device", device)
    body = ('{"op":"offer","id":"%s","kind":"%s","version":"%s","manifest":"%s","size":%d,"trial":%d,'
            '"tries":%d,"ts":%d') % (
        check_id("id", rid), _kind(kind), check_version("version", version), check_sha("manifest", manifest_sha),
        integer("size", size, 1, 65536), integer("trial", trial, 10, 86400), integer("tries", tries, 1, 20),
        timestamp("ts", ts))
    return sign.seal(key, DOMAIN_OFFER, site, device, body.encode())


def encode_cancel(key: object, site: str, device: str, rid: str, ts: int) -> bytes:
    """Stop a download that is not installed yet, signed with the board's command key."""
    check_id("site", site)
    check_id("device", device)
    body = '{"op":"cancel","id":"%s","ts":%d' % (check_id("id", rid), timestamp("ts", ts))
    return sign.seal(key, DOMAIN_OFFER, site, device, body.encode())


def _signed(obj: dict, payload: object, key: object, domain: bytes, site: str, device: str) -> dict:  # type: ignore[type-arg]
    sig = required(obj, "sig")
    if not isinstance(sig, str):
        raise ProtocolError("sig", "must be a string of 64 hex characters, got %s" % describe(sig))
    sign.check(key, domain, site, device, payload)
    del obj["sig"]
    return obj


def _control(obj: dict) -> dict:  # type: ignore[type-arg]
    """Every field of an offer or cancel object checked (not its signature)."""
    op = required(obj, "op")
    if op == "offer":
        keys: tuple[str, ...] = ("op", "id", "kind", "version", "manifest", "size", "trial", "tries", "ts", "sig")
    elif op == "cancel":
        keys = ("op", "id", "ts", "sig")
    else:
        raise ProtocolError("op", "must be offer or cancel, got %s" % describe(op))
    for k in obj:
        if k not in keys:
            raise ProtocolError("ota", "unknown key %s in %s" % (describe(k), op))
    check_id("id", required(obj, "id"))
    timestamp("ts", required(obj, "ts"))
    if op == "offer":
        _kind(required(obj, "kind"))
        check_version("version", required(obj, "version"))
        check_sha("manifest", required(obj, "manifest"))
        integer("size", required(obj, "size"), 1, 65536)
        integer("trial", required(obj, "trial"), 10, 86400)
        integer("tries", required(obj, "tries"), 1, 20)
    return obj


def decode_control(key: object, site: str, device: str, payload: object) -> dict:  # type: ignore[type-arg]
    """An offer or a cancel ({"op": ..., fields without `sig`}), every field checked, then its signature."""
    obj = parse("ota", payload, 512)
    if not isinstance(obj, dict):
        raise ProtocolError("ota", "must be a JSON object, got %s" % describe(obj))
    return _signed(_control(obj), payload, key, DOMAIN_OFFER, site, device)


def decode_offer(key: object, site: str, device: str, payload: object) -> dict:  # type: ignore[type-arg]
    """An offer (not a cancel), every field checked, then its signature."""
    obj = decode_control(key, site, device, payload)
    if obj["op"] != "offer":
        raise ProtocolError("op", "must be offer, got %s" % describe(obj["op"]))
    return obj


# -------------------------------------------------------------------------------------------------- chunks


def encode_chunk_header(rid: str, f: int, o: int, n: int) -> bytes:
    """The header line of a chunk (ends with `\\n`); the n raw bytes follow it in the same payload."""
    return ('{"op":"chunk","id":"%s","f":%d,"o":%d,"n":%d}\n' % (
        check_id("id", rid), integer("f", f, -1, 199), integer("o", o, 0, 0x1000000),
        integer("n", n, 0, CHUNK_MAX))).encode()


def encode_nochunk(rid: str, f: int, why: str) -> bytes:
    """The answer to a get that cannot be served (unknown id or file, offset past the end): no bytes."""
    return ('{"op":"nochunk","id":"%s","f":%d,"why":%s}\n' % (
        check_id("id", rid), integer("f", f, -1, 0x7FFFFFFF), dumps_text(text("why", why[:200])))).encode()


def is_chunk(payload: object) -> bool:
    """Whether an `ota` payload is a chunk or nochunk (a header line) rather than an offer or cancel."""
    return isinstance(payload, (bytes, bytearray, memoryview)) and bytes(payload[:160]).find(b"\n") > 0


def split_chunk(payload: object) -> tuple:  # type: ignore[type-arg]
    """(header, data) of a chunk or nochunk payload: header a dict with op, id, f and o, n (chunk) or why
    (nochunk); data a memoryview of the payload's bytes after the header line (empty for a nochunk)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ProtocolError("chunk", "payload must be bytes, got %s" % describe(type(payload)))
    cut = bytes(payload[:160]).find(b"\n")
    if cut < 0:
        raise ProtocolError("chunk", "no header line (a JSON object and a newline) in the first 160 bytes")
    view = memoryview(payload)
    head = parse("chunk", view[:cut], 160)
    if not isinstance(head, dict):
        raise ProtocolError("chunk", "header must be a JSON object, got %s" % describe(head))
    data = view[cut + 1:]
    op = required(head, "op")
    check_id("id", required(head, "id"))
    if op == "nochunk":
        keys: tuple[str, ...] = ("op", "id", "f", "why")
        integer("f", required(head, "f"), -1, 0x7FFFFFFF)
        text("why", required(head, "why"))
        if len(data):
            raise ProtocolError("chunk", "a nochunk carries no bytes, got %d" % len(data))
    elif op == "chunk":
        keys = ("op", "id", "f", "o", "n")
        integer("f", required(head, "f"), -1, 199)
        integer("o", required(head, "o"), 0, 0x1000000)
        if integer("n", required(head, "n"), 0, CHUNK_MAX) != len(data):
            raise ProtocolError("n", "header says %d bytes, %d follow" % (head["n"], len(data)))
    else:
        raise ProtocolError("op", "must be chunk or nochunk, got %s" % describe(op))
    for k in head:
        if k not in keys:
            raise ProtocolError("chunk", "unknown key %s in %s" % (describe(k), op))
    return head, data


# ----------------------------------------------------------------------------------- board -> hub: otaack


def encode_get(rid: str, f: int, o: int, n: int) -> bytes:
    """A chunk request: n bytes of file f (-1: the manifest) from offset o."""
    return ('{"op":"get","id":"%s","f":%d,"o":%d,"n":%d}' % (
        check_id("id", rid), integer("f", f, -1, 199), integer("o", o, 0, 0x1000000),
        integer("n", n, 1, CHUNK_MAX))).encode()


def encode_state(key: object, site: str, device: str, rid: str, version: str, state: str, ts: int,
                 done: int | None = None, total: int | None = None, reason: str | None = None) -> bytes:
    """A signed state report; done/total while downloading, reason when refused or rolled back."""
    check_id("site", site)
    check_id("device", device)
    if state not in STATES:
        raise ProtocolError("state", "must be one of %s, got %s" % ("|".join(STATES), describe(state)))
    parts = ['{"op":"state","id":"%s","version":"%s","state":"%s"' % (
        check_id("id", rid), check_version("version", version), state)]
    if done is not None:
        parts.append(',"done":%d' % integer("done", done, 0, 0x7FFFFFFF))
    if total is not None:
        parts.append(',"total":%d' % integer("total", total, 0, 0x7FFFFFFF))
    if reason is not None:
        parts.append(',"reason":%s' % dumps_text(text("reason", reason[:200])))
    parts.append(',"ts":%d' % timestamp("ts", ts))
    return sign.seal(key, DOMAIN_REPORT, site, device, "".join(parts).encode())


def decode_board(key: object, site: str, device: str, payload: object) -> dict:  # type: ignore[type-arg]
    """A chunk request or a state report from site/device; a state's signature is checked (field `sig`)."""
    obj = _board(parse("otaack", payload, 640))
    if obj["op"] == "state":
        _signed(obj, payload, key, DOMAIN_REPORT, site, device)
    return obj


def _board(obj: object) -> dict:  # type: ignore[type-arg]
    if not isinstance(obj, dict):
        raise ProtocolError("otaack", "must be a JSON object, got %s" % describe(obj))
    op = required(obj, "op")
    if op == "get":
        keys: tuple[str, ...] = ("op", "id", "f", "o", "n")
    elif op == "state":
        keys = ("op", "id", "version", "state", "done", "total", "reason", "ts", "sig")
    else:
        raise ProtocolError("op", "must be get or state, got %s" % describe(op))
    for k in obj:
        if k not in keys:
            raise ProtocolError("otaack", "unknown key %s in %s" % (describe(k), op))
    check_id("id", required(obj, "id"))
    if op == "get":
        integer("f", required(obj, "f"), -1, 199)
        integer("o", required(obj, "o"), 0, 0x1000000)
        integer("n", required(obj, "n"), 1, CHUNK_MAX)
        return obj
    check_version("version", required(obj, "version"))
    state = required(obj, "state")
    if state not in STATES:
        raise ProtocolError("state", "must be one of %s, got %s" % ("|".join(STATES), describe(state)))
    if "done" in obj:
        integer("done", obj["done"], 0, 0x7FFFFFFF)
    if "total" in obj:
        integer("total", obj["total"], 0, 0x7FFFFFFF)
    if "reason" in obj:
        text("reason", obj["reason"])
    timestamp("ts", required(obj, "ts"))
    return obj
