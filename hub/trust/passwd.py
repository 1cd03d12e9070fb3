"""mosquitto's password_file: the `$7$` hash (PBKDF2-HMAC-SHA512) and the file's lines.

Owns the hash format mosquitto 2.0 writes and reads (`mosquitto_passwd`, `-H sha512-pbkdf2`, its default):

    <username>:$7$<iterations>$<base64 salt>$<base64 derived key>

with a 12-byte random salt, 101 iterations and a 64-byte key (mosquitto's SALT_LEN and PW_DEFAULT_ITERATIONS;
its `mosquitto_passwd` writes exactly this, and the broker reads the iteration count from the line). The
passwords Qala hashes are 24 random bytes (`secrets.token_urlsafe(24)`), so the low iteration count costs no
strength: there is nothing to guess. Usernames must not contain ':' or a line break.

Pure (text in, text out): the store writes the file, atomically and mode 600. Standard library only. Knows
nothing of the store's layout, TLS or MQTT topics.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

ITERATIONS = 101
SALT_BYTES = 12
KEY_BYTES = 64
_TAG = "$7$"


class PasswdError(ValueError):
    """A username, password or password_file line that mosquitto could not use; the message says which."""


def check_username(user: str) -> str:
    """The username if mosquitto can store it (non-empty, no ':', no line break, no NUL)."""
    if not isinstance(user, str) or not user or any(c in user for c in ":\r\n\x00"):
        raise PasswdError(f"username {user!r}: must be non-empty, without ':' or line breaks")
    return user


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`$7$<iterations>$<salt>$<key>` for password, as `mosquitto_passwd -b` writes it (random salt by default)."""
    if not isinstance(password, str) or not password:
        raise PasswdError("password: must be a non-empty string")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if iterations < 1:
        raise PasswdError(f"iterations: must be positive, got {iterations}")
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, KEY_BYTES)
    return f"{_TAG}{iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify(password: str, hashed: str) -> bool:
    """True if password matches a `$7$` hash (compared in constant time); PasswdError if the hash is malformed."""
    iterations, salt, key = _split(hashed)
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, len(key))
    return hmac.compare_digest(got, key)


def _split(hashed: str) -> tuple[int, bytes, bytes]:
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7":  # "", "7", iterations, salt, key
        raise PasswdError("hash: not a $7$<iterations>$<salt>$<key> hash")
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        key = base64.b64decode(parts[4], validate=True)
    except ValueError:
        raise PasswdError("hash: bad iteration count or base64 in a $7$ hash") from None
    if iterations < 1 or not salt or not key:
        raise PasswdError("hash: empty salt or key, or no iterations, in a $7$ hash")
    return iterations, salt, key


def format_file(entries: Mapping[str, str]) -> str:
    """password_file text: one `user:hash` line per entry, sorted by user (hashes as hash_password made them)."""
    lines = []
    for user in sorted(entries):
        check_username(user)
        _split(entries[user])
        lines.append(f"{user}:{entries[user]}\n")
    return "".join(lines)


def make_file(passwords: Iterable[tuple[str, str]]) -> str:
    """password_file text for (user, clear password) pairs, each hashed with a fresh salt."""
    return format_file({check_username(user): hash_password(password) for user, password in passwords})


def parse_file(text: str) -> dict[str, str]:
    """user -> hash of a password_file's text; PasswdError naming the line of a malformed one."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep:
            raise PasswdError(f"line {number}: expected user:hash")
        try:
            check_username(user)
            _split(hashed)
        except PasswdError as exc:
            raise PasswdError(f"line {number}: {exc}") from None
        if user in entries:
            raise PasswdError(f"line {number}: user {user!r} appears twice")
        entries[user] = hashed
    return entries
