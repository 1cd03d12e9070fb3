"""Over-the-air wire formats (protocols/ota.py): manifest, offer, cancel, chunks, gets, state reports.

Runs under CPython and MicroPython (the board decodes offers and chunks and encodes gets and states).
"""

import hashlib

from expect import refused

from protocols import ota, sign
from protocols.errors import ProtocolError

MICROPYTHON_HEAP = "96k"

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
TS = 1764806400000  # 2025-12-04
SHA = "ab" * 32
FILES = [("firmware/app.mpy", 12345, SHA), ("protocols/sign.mpy", 2345, "0" * 64)]

MANIFEST = (
    b"qala-bundle 1\n"
    b"kind fw\n"
    b"version 0.2.0\n"
    b"micropython 1.22\n"
    b"file firmware/app.mpy 12345 " + SHA.encode() + b"\n"
    b"file protocols/sign.mpy 2345 " + b"0" * 64 + b"\n"
)


def _hex(data):
    return "".join("%02x" % b for b in hashlib.sha256(data).digest())


def test_manifest_round_trip():
    data = ota.encode_manifest("fw", "0.2.0", (1, 22), FILES)
    assert data == MANIFEST
    assert ota.encode_manifest("fw", "0.2.0", "1.22", FILES) == MANIFEST
    m = ota.parse_manifest(data)
    assert m["kind"] == "fw"
    assert m["version"] == "0.2.0"
    assert m["micropython"] == (1, 22)
    assert [tuple(f) for f in m["files"]] == FILES
    assert ota.parse_manifest(data.decode())["version"] == "0.2.0"


def test_manifest_lines():
    assert ota.parse_manifest_line(b"qala-bundle 1\n") == ("qala-bundle", 1)
    assert ota.parse_manifest_line("kind config") == ("kind", "config")
    assert ota.parse_manifest_line(b"version 1.0.0-rc1\n") == ("version", "1.0.0-rc1")
    assert ota.parse_manifest_line(b"micropython 1.22\n") == ("micropython", (1, 22))
    assert ota.parse_manifest_line(b"file a/b.mpy 0 " + SHA.encode()) == ("file", "a/b.mpy", 0, SHA)
    assert ota.parse_manifest_line(bytearray(b"kind fw\n")) == ("kind", "fw")
    refused(ota.parse_manifest_line, b"qala-bundle 2\n", field="manifest", contains="not supported")
    refused(ota.parse_manifest_line, b"kind firmware\n", field="kind")
    refused(ota.parse_manifest_line, b"version \n", field="version")
    refused(ota.parse_manifest_line, b"version ../x\n", field="version")
    refused(ota.parse_manifest_line, b"micropython 1\n", field="micropython", contains="major.minor")
    refused(ota.parse_manifest_line, b"micropython 1.x\n", field="micropython")
    refused(ota.parse_manifest_line, b"colour blue\n", field="manifest", contains="unknown line")
    refused(ota.parse_manifest_line, b"file a.mpy 12 " + SHA.encode() + b" extra\n", field="manifest")
    refused(ota.parse_manifest_line, b"file a.mpy -1 " + SHA.encode(), field="manifest")
    refused(ota.parse_manifest_line, b"file a.mpy 1 " + SHA.upper().encode(), field="file", contains="lowercase")
    refused(ota.parse_manifest_line, b"file a.mpy 1 abc", field="file")
    refused(ota.parse_manifest_line, b"\xff\xfe", field="manifest", contains="UTF-8")
    refused(ota.parse_manifest_line, 5, field="manifest")
    refused(ota.parse_manifest_line, b"kind fw\r\n", field="kind")
    refused(ota.parse_manifest_line, b"x" * 300, field="manifest", contains="longer")


def test_manifest_paths_stay_inside_the_slot():
    for bad in ("../main.py", "/main.py", "firmware//app.mpy", "firmware/../../x", "./a.mpy", "a/", "a b.mpy",
                "a\\b.mpy", "", "x" * 97):
        refused(ota.check_path, "file", bad, field="file")
        refused(ota.encode_manifest, "fw", "1.0", (1, 22), [(bad, 1, SHA)], field="file")
    assert ota.check_path("file", "firmware/drivers/bme280.mpy") == "firmware/drivers/bme280.mpy"
    line = b"file ../main.py 1 " + SHA.encode()
    refused(ota.parse_manifest_line, line, field="file", contains="'..'")


def test_manifest_whole_refusals():
    refused(ota.parse_manifest, MANIFEST[:-1], field="manifest", contains="newline")
    refused(ota.parse_manifest, b"kind fw\n" + MANIFEST, field="manifest", contains="line 1")
    refused(ota.parse_manifest, b"qala-bundle 1\nkind fw\n", field="manifest", contains="incomplete")
    refused(ota.parse_manifest, MANIFEST + b"kind fw\n", field="manifest", contains="only `file`")
    refused(ota.parse_manifest, MANIFEST.replace(b"\n", b"\n\n", 1), field="manifest")
    twice = MANIFEST + b"file firmware/app.mpy 1 " + SHA.encode() + b"\n"
    refused(ota.parse_manifest, twice, field="file", contains="twice")
    no_files = b"qala-bundle 1\nkind fw\nversion 1\nmicropython 1.22\n"
    refused(ota.parse_manifest, no_files, field="file", contains="at least one")
    refused(ota.parse_manifest, 42, field="manifest")
    refused(ota.encode_manifest, "fw", "1.0", (1, 22), FILES + FILES[:1], field="file", contains="twice")
    refused(ota.encode_manifest, "fw", "1.0", (1, 22), [], field="file")
    refused(ota.encode_manifest, "app", "1.0", (1, 22), FILES, field="kind")


def test_config_manifest_holds_board_json_only():
    data = ota.encode_manifest("config", "c7", (1, 22), [("board.json", 812, SHA)])
    assert ota.parse_manifest(data)["files"][0][0] == "board.json"
    refused(ota.encode_manifest, "config", "c7", (1, 22), FILES, field="file", contains="exactly one")
    bad = data.replace(b"board.json", b"board2.json")
    refused(ota.parse_manifest, bad, field="file", contains="board.json")


def _offer(**kw):
    args = {"key": KEY, "site": "s1", "device": "d1", "rid": "r20261204a", "kind": "fw", "version": "0.2.0",
            "manifest_sha": SHA, "size": 420, "trial": 300, "tries": 3, "ts": TS}
    args.update(kw)
    return ota.encode_offer(args["key"], args["site"], args["device"], args["rid"], args["kind"], args["version"],
                            args["manifest_sha"], args["size"], args["trial"], args["tries"], args["ts"])


def _offer_with(name, value):
    return _offer(**{name: value})


def test_offer_round_trip():
    payload = _offer()
    body = (b'{"op":"offer","id":"r20261204a","kind":"fw","version":"0.2.0","manifest":"' + SHA.encode()
            + b'","size":420,"trial":300,"tries":3,"ts":1764806400000')
    assert payload == sign.seal(KEY, b"qala-ota", "s1", "d1", body)
    offer = ota.decode_offer(KEY, "s1", "d1", payload)
    assert offer == {"op": "offer", "id": "r20261204a", "kind": "fw", "version": "0.2.0", "manifest": SHA,
                     "size": 420, "trial": 300, "tries": 3, "ts": TS}
    assert ota.decode_control(sign.Key(KEY), "s1", "d1", payload) == offer
    assert ota.decode_control(KEY, "s1", "d1", payload.decode()) == offer
    assert not ota.is_chunk(payload)


def test_offer_refused_with_another_key_board_or_domain():
    payload = _offer()
    refused(ota.decode_offer, OTHER, "s1", "d1", payload, field="sig", contains="bad signature")
    refused(ota.decode_offer, KEY, "s1", "d2", payload, field="sig")
    refused(ota.decode_offer, KEY, "s2", "d1", payload, field="sig")
    as_report = sign.seal(KEY, ota.DOMAIN_REPORT, "s1", "d1", payload[:-74])
    refused(ota.decode_offer, KEY, "s1", "d1", as_report, field="sig")
    # one byte changed: still a valid offer, but no longer its signature
    refused(ota.decode_offer, KEY, "s1", "d1", payload.replace(b'"size":420', b'"size":421'), field="sig")
    refused(ota.decode_offer, KEY, "s1", "d1", payload[:-74] + b"}", field="sig", contains="required")


def test_offer_fields_refused_by_name():
    refused(_offer_with, "rid", "bad id", field="id")
    refused(_offer_with, "kind", "os", field="kind")
    refused(_offer_with, "version", "", field="version")
    refused(_offer_with, "manifest_sha", "xy", field="manifest")
    refused(_offer_with, "size", 0, field="size")
    refused(_offer_with, "trial", 5, field="trial")
    refused(_offer_with, "tries", 0, field="tries")
    refused(_offer_with, "ts", 5, field="ts", contains="clock")
    refused(_offer_with, "device", "d/1", field="device")
    good = _offer()
    refused(ota.decode_offer, KEY, "s1", "d1", good.replace(b'"size":420', b'"size":"420"'), field="size")
    refused(ota.decode_offer, KEY, "s1", "d1", good.replace(b'"trial":300', b'"trial":1'), field="trial")
    refused(ota.decode_offer, KEY, "s1", "d1", good.replace(b'"op":"offer"', b'"op":"reboot"'), field="op")
    refused(ota.decode_offer, KEY, "s1", "d1", good.replace(b'"tries":3', b'"tries":3,"x":1'), field="ota",
            contains="unknown key")
    refused(ota.decode_offer, KEY, "s1", "d1", good.replace(b',"kind":"fw"', b""), field="kind",
            contains="required")
    refused(ota.decode_offer, KEY, "s1", "d1", b"[1,2]", field="ota")
    refused(ota.decode_offer, KEY, "s1", "d1", b"not json", field="ota", contains="JSON")
    refused(ota.decode_offer, KEY, "s1", "d1", b"{" + b" " * 600 + b"}", field="ota", contains="limit")
    cancel = ota.encode_cancel(KEY, "s1", "d1", "r1", TS)
    refused(ota.decode_offer, KEY, "s1", "d1", cancel, field="op", contains="must be offer")


def test_cancel_round_trip():
    payload = ota.encode_cancel(KEY, "s1", "d1", "r1", TS)
    assert payload.startswith(b'{"op":"cancel","id":"r1","ts":1764806400000,"sig":"')
    assert ota.decode_control(KEY, "s1", "d1", payload) == {"op": "cancel", "id": "r1", "ts": TS}
    refused(ota.decode_control, OTHER, "s1", "d1", payload, field="sig")
    refused(ota.encode_cancel, KEY, "s1", "d1", "", TS, field="id")


def test_chunk_round_trip():
    data = bytes(range(256)) * 8
    payload = ota.encode_chunk_header("r1", 3, 4096, len(data)) + data
    assert payload.startswith(b'{"op":"chunk","id":"r1","f":3,"o":4096,"n":2048}\n')
    assert ota.is_chunk(payload)
    head, got = ota.split_chunk(payload)
    assert head == {"op": "chunk", "id": "r1", "f": 3, "o": 4096, "n": 2048}
    assert isinstance(got, memoryview)
    assert bytes(got) == data
    head, got = ota.split_chunk(bytearray(ota.encode_chunk_header("r1", -1, 0, 0)))
    assert head["f"] == -1
    assert len(got) == 0
    # a chunk whose data hold newlines and JSON is still split at the header's newline
    tricky = b'\n{"op":"offer"}\n'
    head, got = ota.split_chunk(ota.encode_chunk_header("r1", 0, 0, len(tricky)) + tricky)
    assert bytes(got) == tricky


def test_chunk_refusals():
    refused(ota.encode_chunk_header, "r1", 0, 0, ota.CHUNK_MAX + 1, field="n")
    refused(ota.encode_chunk_header, "r1", -2, 0, 1, field="f")
    refused(ota.encode_chunk_header, "r1", 0, -1, 1, field="o")
    head = ota.encode_chunk_header("r1", 0, 0, 4)
    refused(ota.split_chunk, head + b"abc", field="n", contains="4 bytes, 3 follow")
    refused(ota.split_chunk, head + b"abcde", field="n")
    refused(ota.split_chunk, b'{"op":"chunk","id":"r1","f":0,"o":0,"n":4}abcd', field="chunk",
            contains="no header line")
    refused(ota.split_chunk, b'{"op":"chunk","id":"r1","f":0,"o":0}\n', field="n", contains="required")
    refused(ota.split_chunk, b'{"op":"offer","id":"r1"}\n', field="op")
    refused(ota.split_chunk, b'{"op":"chunk","id":"r1","f":0,"o":0,"n":0,"x":1}\n', field="chunk",
            contains="unknown key")
    refused(ota.split_chunk, b"[]\n", field="chunk")
    refused(ota.split_chunk, b"nope\n", field="chunk", contains="JSON")
    refused(ota.split_chunk, "text\n", field="chunk")


def test_nochunk():
    payload = ota.encode_nochunk("r1", 7, 'no file 7 in release "0.2.0"')
    assert ota.is_chunk(payload)
    head, data = ota.split_chunk(payload)
    assert head == {"op": "nochunk", "id": "r1", "f": 7, "why": 'no file 7 in release "0.2.0"'}
    assert len(data) == 0
    head, _ = ota.split_chunk(payload[:-1] + b"\n")
    assert head["op"] == "nochunk"
    refused(ota.split_chunk, payload + b"x", field="chunk", contains="no bytes")
    assert len(ota.encode_nochunk("r1", 0, "y" * 500)) < 300


def test_get_and_state_round_trip():
    get = ota.encode_get("r1", -1, 0, 2048)
    assert get == b'{"op":"get","id":"r1","f":-1,"o":0,"n":2048}'
    assert ota.decode_board(KEY, "s1", "d1", get) == {"op": "get", "id": "r1", "f": -1, "o": 0, "n": 2048}
    refused(ota.encode_get, "r1", 0, 0, 0, field="n")
    refused(ota.encode_get, "r1", 0, 0, 5000, field="n")
    state = ota.encode_state(KEY, "s1", "d1", "r1", "0.2.0", "downloading", TS, done=4096, total=40960)
    assert state.startswith(b'{"op":"state","id":"r1","version":"0.2.0","state":"downloading","done":4096,'
                            b'"total":40960,"ts":1764806400000,"sig":"')
    assert ota.decode_board(KEY, "s1", "d1", state) == {
        "op": "state", "id": "r1", "version": "0.2.0", "state": "downloading", "done": 4096, "total": 40960,
        "ts": TS}
    rb = ota.encode_state(KEY, "s1", "d1", "r1", "0.2.0", "rolledback", TS,
                          reason='raised at start-up: ValueError: "x"\nline')
    got = ota.decode_board(KEY, "s1", "d1", rb)
    assert got["reason"] == 'raised at start-up: ValueError: "x"\nline'
    assert "done" not in got
    for state_name in ota.STATES:
        ota.decode_board(KEY, "s1", "d1", ota.encode_state(KEY, "s1", "d1", "r1", "1", state_name, TS))
    assert len(ota.encode_state(KEY, "s1", "d1", "r1", "1", "refused", TS, reason="z" * 900)) < 400


def test_state_refusals():
    refused(ota.encode_state, KEY, "s1", "d1", "r1", "1", "broken", TS, field="state")
    refused(ota.encode_state, KEY, "s1", "d1", "r1", "1", "healthy", 0, field="ts")
    state = ota.encode_state(KEY, "s1", "d1", "r1", "1", "healthy", TS)
    refused(ota.decode_board, OTHER, "s1", "d1", state, field="sig", contains="bad signature")
    refused(ota.decode_board, KEY, "s1", "d2", state, field="sig")
    offer_domain = sign.seal(KEY, ota.DOMAIN_OFFER, "s1", "d1", state[:-74])
    refused(ota.decode_board, KEY, "s1", "d1", offer_domain, field="sig")
    refused(ota.decode_board, KEY, "s1", "d1", state[:-74] + b"}", field="sig", contains="required")
    refused(ota.decode_board, KEY, "s1", "d1", b'{"op":"get","id":"r1","f":0,"o":0}', field="n")
    refused(ota.decode_board, KEY, "s1", "d1", b'{"op":"put","id":"r1"}', field="op")
    refused(ota.decode_board, KEY, "s1", "d1", b'{"op":"get","id":"r1","f":0,"o":0,"n":1,"z":0}', field="otaack")
    refused(ota.decode_board, KEY, "s1", "d1", b'"get"', field="otaack")


def test_hashes_of_real_bytes():
    """A manifest built from real bytes verifies against hashlib on either interpreter."""
    blob = b"print('hello')\n" * 100
    data = ota.encode_manifest("fw", "0.3.0", (1, 22), [("firmware/x.py", len(blob), _hex(blob))])
    m = ota.parse_manifest(data)
    assert m["files"][0][2] == _hex(blob)
    assert len(_hex(blob)) == 64
    try:
        ota.check_sha("file", _hex(blob).upper())
    except ProtocolError:
        pass
    else:
        raise AssertionError("upper-case hex accepted")
