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

The board's half (checks, decode_control, is_chunk, split_chunk, parse_manifest_line, encode_get,
encode_state) lives in protocols/ota_board.py, which a board imports alone (it saves the board about 4 KB of
heap during an update); every one of its names is here too, so this module is the whole API.

Imports protocols.ota_board, protocols.fields, protocols.sign and protocols.topics; knows nothing of files,
sockets or clocks.
"""

from protocols import sign
from protocols.errors import ProtocolError, describe
from protocols.fields import dumps_text, integer, parse, required, text, timestamp
from protocols.ota_board import (
    CHUNK_MAX,
    DOMAIN_OFFER,
    DOMAIN_REPORT,
    KINDS,
    OTA,
    OTAACK,
    STATES,
    check_kind,
    check_path,
    check_sha,
    check_signed,
    check_version,
    decode_control,
    encode_get,
    encode_state,
    is_chunk,
    mpy_version,
    parse_manifest_line,
    split_chunk,
)
from protocols.topics import check_id

__all__ = [
    "CHUNK_MAX", "DOMAIN_OFFER", "DOMAIN_REPORT", "KINDS", "OTA", "OTAACK", "STATES", "check_kind", "check_path",
    "check_sha", "check_signed", "check_version", "decode_board", "decode_control", "decode_offer", "encode_cancel",
    "encode_chunk_header", "encode_get", "encode_manifest", "encode_nochunk", "encode_offer", "encode_state",
    "is_chunk", "mpy_version", "parse_manifest", "parse_manifest_line", "split_chunk",
]


def encode_manifest(kind: str, version: str, micropython: tuple[int, int] | str,
                    files: list[tuple[str, int, str]]) -> bytes:
    """The manifest text; `micropython` is (major, minor) or "major.minor"; files are (path, size, sha256 hex)."""
    check_kind(kind)
    check_version("version", version)
    if isinstance(micropython, str):
        micropython = mpy_version(micropython)
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


def encode_offer(key: object, site: str, device: str, rid: str, kind: str, version: str, manifest_sha: str,
                 size: int, trial: int, tries: int, ts: int) -> bytes:
    """An offer of a bundle to site/device, signed with the board's command key."""
    check_id("site", site)
    check_id("device", device)
    body = ('{"op":"offer","id":"%s","kind":"%s","version":"%s","manifest":"%s","size":%d,"trial":%d,'
            '"tries":%d,"ts":%d') % (
        check_id("id", rid), check_kind(kind), check_version("version", version), check_sha("manifest", manifest_sha),
        integer("size", size, 1, 65536), integer("trial", trial, 10, 86400), integer("tries", tries, 1, 20),
        timestamp("ts", ts))
    return sign.seal(key, DOMAIN_OFFER, site, device, body.encode())


def encode_cancel(key: object, site: str, device: str, rid: str, ts: int) -> bytes:
    """Stop a download that is not installed yet, signed with the board's command key."""
    check_id("site", site)
    check_id("device", device)
    body = '{"op":"cancel","id":"%s","ts":%d' % (check_id("id", rid), timestamp("ts", ts))
    return sign.seal(key, DOMAIN_OFFER, site, device, body.encode())


def decode_offer(key: object, site: str, device: str, payload: object) -> dict:  # type: ignore[type-arg]
    """An offer (not a cancel), every field checked, then its signature."""
    obj = decode_control(key, site, device, payload)
    if obj["op"] != "offer":
        raise ProtocolError("op", "must be offer, got %s" % describe(obj["op"]))
    return obj


def encode_chunk_header(rid: str, f: int, o: int, n: int) -> bytes:
    """The header line of a chunk (ends with `\\n`); the n raw bytes follow it in the same payload."""
    return ('{"op":"chunk","id":"%s","f":%d,"o":%d,"n":%d}\n' % (
        check_id("id", rid), integer("f", f, -1, 199), integer("o", o, 0, 0x1000000),
        integer("n", n, 0, CHUNK_MAX))).encode()


def encode_nochunk(rid: str, f: int, why: str) -> bytes:
    """The answer to a get that cannot be served (unknown id or file, offset past the end): no bytes."""
    return ('{"op":"nochunk","id":"%s","f":%d,"why":%s}\n' % (
        check_id("id", rid), integer("f", f, -1, 0x7FFFFFFF), dumps_text(text("why", why[:200])))).encode()


def decode_board(key: object, site: str, device: str, payload: object) -> dict:  # type: ignore[type-arg]
    """A chunk request or a state report from site/device; a state's signature is checked (field `sig`)."""
    obj = _board(parse("otaack", payload, 640))
    if obj["op"] == "state":
        check_signed(obj, payload, key, DOMAIN_REPORT, site, device)
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
