"""hub/trust/passwd.py: mosquitto's $7$ hashes, byte for byte in structure, and accepted by the real broker."""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.trust import passwd

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto
    from tests._plugins.services import ServiceFactory

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def _theirs(tmp_path: Path, user: str, password: str) -> str:
    path = tmp_path / "theirs"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(path), user, password], check=True, capture_output=True)
    return path.read_text().strip().split(":", 1)[1]


def test_the_hash_has_mosquitto_passwd_s_structure(tmp_path: Path) -> None:
    theirs = _theirs(tmp_path, "alice", "secret")
    ours = passwd.hash_password("secret")
    for hashed in (theirs, ours):
        empty, tag, iterations, salt, key = hashed.split("$")
        assert (empty, tag, iterations) == ("", "7", "101")
        assert len(base64.b64decode(salt)) == passwd.SALT_BYTES == 12
        assert len(base64.b64decode(key)) == passwd.KEY_BYTES == 64
    assert len(ours) == len(theirs)


def test_we_verify_mosquitto_passwd_s_hash_and_it_is_pbkdf2_sha512(tmp_path: Path) -> None:
    theirs = _theirs(tmp_path, "alice", "p4ss:word/ü")
    assert passwd.verify("p4ss:word/ü", theirs)
    assert not passwd.verify("p4ss:word/u", theirs)
    salt = base64.b64decode(theirs.split("$")[3])
    assert passwd.hash_password("p4ss:word/ü", salt=salt) == theirs


def test_salts_are_fresh_each_time() -> None:
    assert passwd.hash_password("x") != passwd.hash_password("x")


def test_file_round_trip_sorted_one_line_per_user() -> None:
    text = passwd.make_file([("b/2", "pw2"), ("a/1", "pw1")])
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a/1", "b/2"]
    entries = passwd.parse_file("# comment\n\n" + text)
    assert passwd.verify("pw1", entries["a/1"])
    assert "pw1" not in text


@pytest.mark.parametrize(("user", "problem"), [("", "non-empty"), ("a:b", "':'"), ("a\nb", "line breaks")])
def test_usernames_mosquitto_cannot_store_are_refused(user: str, problem: str) -> None:
    with pytest.raises(passwd.PasswdError, match=problem.replace("'", ".")):
        passwd.make_file([(user, "pw")])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice\n", "line 1: expected user:hash"),
        ("alice:$6$abc$def\n", "line 1: hash: not a"),
        ("alice:$7$x$AAAA$AAAA\n", "line 1: hash: bad iteration"),
        ("alice:$7$101$!!$AAAA\n", "line 1: hash: bad iteration count or base64"),
        ("alice:$7$0$AAAA$AAAA\n", "line 1: hash: empty salt or key, or no iterations"),
        ("# c\nalice:$7$101$AAAA$AAAA\nalice:$7$101$AAAA$AAAA\n", "line 3: user 'alice' appears twice"),
    ],
)
def test_a_malformed_password_file_names_the_line(text: str, problem: str) -> None:
    with pytest.raises(passwd.PasswdError, match="^" + problem.replace("$", r"\$")):
        passwd.parse_file(text)


def test_an_empty_password_is_refused() -> None:
    with pytest.raises(passwd.PasswdError, match="password: must be a non-empty string"):
        passwd.hash_password("")


def _connect(broker: Mosquitto, user: str, password: str) -> int:
    """The CONNACK return code a password login gets (MQTT 3.1.1: 0 accepted, 5 not authorized)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{user}", protocol=paho.MQTTv311)
    client.username_pw_set(user, password)
    done = threading.Event()
    codes: list[int] = []

    def on_connect(_c: object, _u: object, _f: object, rc: paho.ReasonCode, _p: object = None) -> None:
        codes.append(0 if not rc.is_failure else 5 if rc.getName() == "Not authorized" else int(rc.value))
        done.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


@pytest.mark.integration
def test_real_mosquitto_accepts_our_hash_and_refuses_a_wrong_password(
    tmp_path: Path, mosquitto_factory: ServiceFactory[Mosquitto]
) -> None:
    password_file = tmp_path / "passwd"
    password_file.write_text(passwd.make_file([("site/dev-1", "right-one")]))
    password_file.chmod(0o600)
    # plain on purpose: our hash format against mosquitto's own reader, without the rest of a store
    broker = mosquitto_factory(plain=True, extra_config=["allow_anonymous false", f"password_file {password_file}"])
    assert _connect(broker, "site/dev-1", "right-one") == 0
    assert _connect(broker, "site/dev-1", "wrong-one") == 5  # MQTT 3.1.1: not authorized
    assert _connect(broker, "site/dev-2", "right-one") == 5
