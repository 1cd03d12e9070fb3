"""The board's half of protocols/ota.py: what a board needs to take an update, and nothing else.

A board imports this module alone (firmware/ota.py), not protocols/ota.py: the hub's half (manifest and offer
encoders, chunk headers, the otaack decoder) would cost it about 4 KB of heap while it downloads. Everyone
else imports protocols/ota.py, which has every name of this module too (the formats are described there).

- offers and cancels: `decode_control` (every field checked, then the signature: ProtocolError naming the
  field, `sig` last);
- chunks: `is_chunk`, `split_chunk`;
- the manifest, line by line: `parse_manifest_line`;
- what the board sends: `encode_get`, `encode_state` (signed).

Imports protocols.fields, protocols.sign and protocols.topics; knows nothing of files, sockets or clocks.
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
OTA = "ota"  # the topic kinds (protocols/topics.py): hub -> board, offers and chunks
OTAACK = "otaack"  # board -> hub: chunk requests and state reports
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


def check_kind(value: object) -> str:
    """A bundle kind: fw or config."""
    if not isinstance(value, str) or value not in KINDS:
        raise ProtocolError("kind", "must be one of %s, got %s" % ("|".join(KINDS), describe(value)))
    return value


def mpy_version(value: str) -> tuple[int, int]:
    """A MicroPython version `major.minor` as (major, minor)."""
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
        return (what, check_kind(value))
    if what == "version":
        return (what, check_version("version", value))
    if what == "micropython":
        return (what, mpy_version(value))
    raise ProtocolError("manifest", "unknown line %s" % describe(line))


def check_signed(obj: dict, payload: object, key: object, domain: bytes, site: str, device: str) -> dict:  # type: ignore[type-arg]
    """obj (payload's object) without its `sig`, once payload's signature is right (ProtocolError `sig` if not)."""
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
        check_kind(required(obj, "kind"))
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
    return check_signed(_control(obj), payload, key, DOMAIN_OFFER, site, device)


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
