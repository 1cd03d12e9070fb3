"""HMAC-SHA256 and payload signatures (protocols/sign.py). Runs under both interpreters.

The RFC 4231 vectors are checked as literals on both; under CPython they are checked against `hmac` too.
"""

import binascii

from expect import refused

from protocols import sign

MICROPYTHON_HEAP = "64k"

KEY = bytes(range(32))

# RFC 4231 section 4: (key, data, HMAC-SHA256); test case 5's value is truncated to 128 bits
RFC4231 = (
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, (b"This is a test using a larger than block-size key and a larger than block-size data. The key "
                     b"needs to be hashed before being used by the HMAC algorithm."),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_rfc4231_vectors():
    for key, data, want in RFC4231:
        got = binascii.hexlify(sign.hmac_sha256(key, data)).decode()
        assert got[:len(want)] == want, (key, data, got)
        assert sign.hmac_sha256(sign.Key(key), data) == sign.hmac_sha256(key, data)


def test_against_cpython_hmac():
    try:
        import hashlib  # noqa: PLC0415 - CPython's, to compare with
        import hmac  # noqa: PLC0415
    except ImportError:  # MicroPython: the literals above are the check
        return
    for key, data, _ in RFC4231:
        assert sign.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()
    for size in (0, 1, 63, 64, 65, 200):
        data = bytes(range(256))[:size]
        assert sign.hmac_sha256(KEY, data) == hmac.new(KEY, data, hashlib.sha256).digest()


def test_equal_is_plain_equality():
    assert sign.equal(b"abc", b"abc")
    assert not sign.equal(b"abc", b"abd")
    assert not sign.equal(b"abc", b"ab")
    assert sign.equal(b"", b"")


def test_key_never_shows_in_repr():
    k = sign.Key(KEY)
    assert repr(k) == "<sign.Key>"
    assert binascii.hexlify(KEY).decode() not in repr(k)
    assert sign.prepare(k) is k
    refused(sign.Key, b"", field="key")
    refused(sign.prepare, "0011", field="key")


def test_key_from_hex():
    text = binascii.hexlify(KEY).decode()
    assert sign.from_hex("cmd_key", text) == KEY
    refused(sign.from_hex, "cmd_key", text[:-2], field="cmd_key", contains="64 hex")
    refused(sign.from_hex, "cmd_key", "zz" * 32, field="cmd_key", contains="64 hex")
    refused(sign.from_hex, "cmd_key", 5, field="cmd_key")


def test_seal_and_check():
    body = b'{"v":2,"id":"c-1","n":3'
    sealed = sign.seal(KEY, sign.CMD, "lab", "t1", body)
    assert sealed.startswith(body + b',"sig":"')
    assert sealed.endswith(b'"}')
    sig = sign.signature(KEY, sign.CMD, "lab", "t1", body)
    assert sealed == body + b',"sig":"' + sig.encode() + b'"}'
    # the signed bytes: domain NUL site/device NUL body
    assert sign.hmac_sha256(KEY, b"qala-cmd\x00lab/t1\x00" + body) == binascii.unhexlify(sig)
    sign.check(KEY, sign.CMD, "lab", "t1", sealed)
    sign.check(KEY, sign.CMD, "lab", "t1", bytearray(sealed))
    sign.check(KEY, sign.CMD, "lab", "t1", sealed.decode())
    # another key, another board, another site, another kind, another body: all refused
    refused(sign.check, bytes(32), sign.CMD, "lab", "t1", sealed, field="sig", contains="bad signature")
    refused(sign.check, KEY, sign.CMD, "lab", "t2", sealed, field="sig", contains="bad signature")
    refused(sign.check, KEY, sign.CMD, "lab2", "t1", sealed, field="sig", contains="bad signature")
    refused(sign.check, KEY, sign.ACK, "lab", "t1", sealed, field="sig", contains="bad signature")
    refused(sign.check, KEY, sign.CMD, "lab", "t1", sealed.replace(b'"n":3', b'"n":4'), field="sig")
    # a signature that is not the last member, or not 64 characters, or none
    refused(sign.check, KEY, sign.CMD, "lab", "t1", sealed[:-3] + b'"}', field="sig", contains="last member")
    refused(sign.check, KEY, sign.CMD, "lab", "t1", b'{"v":2}', field="sig")
    refused(sign.check, KEY, sign.CMD, "lab", "t1", 5, field="sig")
