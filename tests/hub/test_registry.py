"""The device registry: birth, last will, safe mode, last seen; kept across restarts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hub.registry import Registry
from protocols import payloads

if TYPE_CHECKING:
    from pathlib import Path

CAPS: dict[str, object] = {"sensors": {"air1": {"driver": "sim", "q": ["pm25"]}}}


def birth(ts: int = 1_795_553_687_000, fw: str = "1.0.0") -> payloads.Status:
    return payloads.decode_status(payloads.encode_status("online", ts=ts, boot=3, fw=fw, caps=CAPS))


def test_birth_last_will_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    reg = Registry(path)
    assert not reg.known("d1")
    assert reg.update("d1", birth(), 1000)
    assert reg.known("d1")
    assert not reg.update("d1", birth(), 2000)  # the retained birth again: nothing changed
    reg.seen("d1", 3000)
    reg.save()
    again = Registry(path)
    info = again.devices["d1"]
    assert (info.state, info.fw, info.boot, info.last_seen, info.since) == ("online", "1.0.0", 3, 3000, 1000)
    assert info.caps == CAPS
    offline = payloads.decode_status(payloads.encode_status("offline"))
    assert again.update("d1", offline, 4000)
    assert Registry(path).devices["d1"].state == "offline"
    assert Registry(path).devices["d1"].fw == "1.0.0"  # a last will does not erase what the birth said


def test_firmware_change_is_a_change(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.json")
    reg.update("d1", birth(fw="1.0.0"), 1)
    assert reg.update("d1", birth(fw="1.1.0"), 2)


def test_safe_mode_keeps_the_error(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.json")
    safe = payloads.decode_status(
        payloads.encode_status("safe", ts=1_795_553_687_000, boot=1, fw="1.0.0", error="config: bad pin")
    )
    assert reg.update("d1", safe, 1)
    assert reg.devices["d1"].error == "config: bad pin"


def test_last_seen_only_for_known_devices(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.json")
    reg.seen("ghost", 1)
    assert not reg.known("ghost")


def test_unreadable_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("{not json")
    reg = Registry(path)
    assert reg.devices == {}
    assert (tmp_path / "registry.json.corrupt").exists()
    reg.update("d1", birth(), 1)
    assert json.loads(path.read_text())["devices"]["d1"]["state"] == "online"
