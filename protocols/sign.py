"""HMAC-SHA256 and the signature of `cmd` and `ack` payloads: one implementation for boards and the hub.

MicroPython has `hashlib.sha256` but no `hmac` module, so HMAC (RFC 2104) is built here on sha256 alone; the
tests check it against CPython's `hmac` on the RFC 4231 vectors. A `Key` holds the two padded HMAC keys,
computed once from the 32-byte command key (a board keeps one for its whole run), and never shows them in
its repr.

A signed payload is compact JSON whose last member is `"sig":"<64 lowercase hex>"`. The signature is the
HMAC of

    domain + b"\\x00" + site + "/" + device + b"\\x00" + body

where `domain` is `qala-cmd` or `qala-ack` (a command can never pass for an ack, nor the other way round),
site/device name the board the payload is for or from (a command for one board is refused by every other),
and body is the payload's bytes before `,"sig":"`. `seal` appends the signature to a body that lacks the
closing brace; `check` verifies one, comparing in constant time, and raises ProtocolError (field `sig`).

Imports hashlib and binascii only; knows nothing of JSON fields, topics or sockets.
"""

import binascii
import hashlib

from protocols._compat import const
from protocols.errors import ProtocolError

CMD = b"qala-cmd"
ACK = b"qala-ack"
KEY_BYTES = const(32)
_BLOCK = const(64)
_SIG_HEX = const(64)
_TAIL = b',"sig":"'
# `,"sig":"` + 64 hex + `"}`
_TAIL_LEN = const(74)


class Key:
    """A prepared HMAC-SHA256 key: the inner and outer padded keys, made once."""

    def __init__(self, raw: bytes | bytearray) -> None:
        if not isinstance(raw, (bytes, bytearray)) or not raw:
            raise ProtocolError("key", "must be non-empty bytes")
        if len(raw) > _BLOCK:
            raw = hashlib.sha256(raw).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(_BLOCK):
            b = raw[i] if i < len(raw) else 0
            ipad[i] = b ^ 0x36
            opad[i] = b ^ 0x5C
        self._i = bytes(ipad)
        self._o = bytes(opad)

    def __repr__(self) -> str:
        return "<sign.Key>"

    def mac(self, parts: tuple[bytes | bytearray | memoryview, ...]) -> bytes:
        """The HMAC (32 bytes) of the concatenation of parts, without building it."""
        h = hashlib.sha256(self._i)
        for part in parts:
            h.update(part)
        outer = hashlib.sha256(self._o)
        outer.update(h.digest())
        return outer.digest()


def prepare(key: object) -> Key:
    """`key` as a Key: raw bytes are prepared, a Key is returned as it is."""
    if isinstance(key, Key):
        return key
    if not isinstance(key, (bytes, bytearray)):
        raise ProtocolError("key", "must be bytes")
    return Key(key)


def from_hex(field: str, text: object) -> bytes:
    """A command key from its 64 hex characters (config files, the provisioning store)."""
    if not isinstance(text, str) or len(text) != 2 * KEY_BYTES:
        raise ProtocolError(field, "must be %d hex characters" % (2 * KEY_BYTES))
    try:
        return binascii.unhexlify(text)
    except ValueError:
        raise ProtocolError(field, "must be %d hex characters" % (2 * KEY_BYTES)) from None


def hmac_sha256(key: object, msg: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of msg under key (bytes or Key)."""
    return prepare(key).mac((msg,))


def equal(a: bytes, b: bytes) -> bool:
    """a == b in time that depends on their length only, not on where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def _mac(key: object, domain: bytes, site: str, device: str, body: bytes | bytearray | memoryview) -> bytes:
    scope = ("%s/%s" % (site, device)).encode()
    return binascii.hexlify(prepare(key).mac((domain, b"\x00", scope, b"\x00", body)))


def signature(key: object, domain: bytes, site: str, device: str, body: bytes) -> str:
    """The 64 hex characters that sign body (the payload's bytes before `,"sig":"`)."""
    return _mac(key, domain, site, device, body).decode()


def seal(key: object, domain: bytes, site: str, device: str, body: bytes) -> bytes:
    """body (a JSON object without its closing brace) + `,"sig":"<hex>"}`."""
    return b"".join((body, _TAIL, _mac(key, domain, site, device, body), b'"}'))


def signed(payload: bytes | bytearray | memoryview) -> bool:
    """Whether payload ends the way a signed payload does (`,"sig":"` + 64 characters + `"}`)."""
    n = len(payload)
    return n > _TAIL_LEN and bytes(payload[n - _TAIL_LEN:n - _SIG_HEX - 2]) == _TAIL and bytes(payload[n - 2:]) == b'"}'


def check(key: object, domain: bytes, site: str, device: str, payload: object) -> None:
    """ProtocolError (field `sig`, "bad signature") unless payload's last member is its right signature.

    The caller tells an unsigned payload (no `sig` member: "unsigned command") from a badly signed one.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    if not isinstance(payload, (bytes, bytearray, memoryview)) or not signed(payload):
        raise ProtocolError("sig", "bad signature (sig must be the last member, 64 hex characters)")
    cut = len(payload) - _TAIL_LEN
    view = memoryview(payload)
    want = _mac(key, domain, site, device, view[:cut])
    if not equal(want, bytes(view[cut + 8:cut + 8 + _SIG_HEX])):
        raise ProtocolError("sig", "bad signature")
