"""The known-device rule: messages of ids provisioning did not create are counted, logged flood-proof, dropped.

Unit level (hub.ingest.process, hub.metrics, hub.service's ack path); the flood against a real influxd is in
tests/hub/test_unprovisioned_flood.py.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from hub import config as hub_config
from hub.ingest import process as process_module
from hub.ingest.process import FloodLog, Processor
from hub.ingest.sequence import SequenceTracker
from hub.metrics import Metrics
from hub.model import Reading
from hub.registry import Registry
from hub.service import Hub
from protocols import payloads
from tests._plugins.trust import provision_site
from tests.hub.conftest import write_config

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto

TS = 1_795_553_687_000
CAPS: dict[str, object] = {"sensors": {"air1": {"driver": "sim", "q": ["pm25"]}}}
KNOWN = frozenset({"d1", "d2"})
LOGGER = "hub.ingest.process"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tele(seq: int, value: float = 1.0) -> bytes:
    return payloads.encode_telemetry(seq, TS + seq, 1, "air1", [("pm25", value)])


BIRTH = payloads.encode_status("online", ts=TS, boot=1, fw="1", caps=CAPS)


def make(tmp_path: Path, known: frozenset[str] | None = KNOWN, *, require_birth: bool = False,
         clock: Clock | None = None) -> Processor:
    floodlog = FloodLog(60, 3, clock) if clock is not None else None
    return Processor("s", Registry(tmp_path / "r.json"), SequenceTracker(), Metrics(), require_birth=require_birth,
                     known=known, floodlog=floodlog)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [("telemetry", tele(0)), ("status", BIRTH), ("status", payloads.encode_status("offline"))],
)
def test_a_message_of_an_unprovisioned_id_is_counted_and_dropped(tmp_path: Path, kind: str, payload: bytes) -> None:
    p = make(tmp_path)
    lines: list[str] = []
    assert p.process(f"qala/s/ghost/{kind}", payload, 5, lines) == []
    assert lines == []
    assert p.metrics.unprovisioned[kind] == 1
    assert sum(p.metrics.unprovisioned.values()) == 1
    assert p.metrics.rejects == dict.fromkeys(p.metrics.rejects, 0)  # not a reject of another reason
    assert p.metrics.messages_in == 1
    assert p.metrics.telemetry_in == p.metrics.status_in == p.metrics.readings_in == 0
    assert p.registry.devices == {}  # never entered into the registry
    assert not (tmp_path / "r.json").exists()
    assert p.tracker.see("ghost", 1, 0).name == "FIRST"  # the tracker never saw it either


def test_provisioned_ids_are_processed_as_before(tmp_path: Path) -> None:
    p = make(tmp_path)
    assert len(p.process("qala/s/d1/status", BIRTH, 0)) == 5
    (reading,) = p.process("qala/s/d1/telemetry", tele(0), 5)
    assert reading == ("air", "s", "d1", "air1", "ok", "pm25", 1.0, TS)
    assert sum(p.metrics.unprovisioned.values()) == 0
    assert set(p.registry.devices) == {"d1"}


def test_without_a_known_set_every_id_is_stored_as_before(tmp_path: Path) -> None:
    p = make(tmp_path, known=None)
    assert len(p.process("qala/s/ghost/telemetry", tele(0), 0)) == 1
    assert len(p.process("qala/s/ghost/status", BIRTH, 0)) == 5
    assert sum(p.metrics.unprovisioned.values()) == 0
    assert p.metrics.unknown_device_stored == 1
    assert set(p.registry.devices) == {"ghost"}


def test_an_empty_known_set_drops_everything(tmp_path: Path) -> None:
    p = make(tmp_path, known=frozenset())
    assert p.process("qala/s/d1/telemetry", tele(0), 0) == []
    assert p.metrics.unprovisioned["telemetry"] == 1


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("qala/other/ghost/telemetry", "other_site"),  # the site is checked first
        ("qala/s/bad ghost/telemetry", "bad_topic"),
        ("qala/s/ghost/nonsense", "bad_topic"),
        ("qala/s/d1/cmd", "bad_topic"),  # a provisioned id on a kind the hub does not ingest
    ],
)
def test_bad_topics_and_other_sites_keep_their_own_reason(tmp_path: Path, topic: str, reason: str) -> None:
    p = make(tmp_path)
    assert p.process(topic, tele(0), 0) == []
    assert p.metrics.rejects[reason] == 1
    assert sum(p.metrics.unprovisioned.values()) == 0


def test_provisioning_comes_before_the_birth_rule(tmp_path: Path) -> None:
    """require_birth applies to provisioned ids only; an unprovisioned id is dropped whatever it says."""
    strict = make(tmp_path, require_birth=True)
    assert strict.process("qala/s/d1/telemetry", tele(0), 0) == []  # provisioned, never born: birth rule
    assert strict.metrics.rejects["unknown_device"] == 1
    assert strict.process("qala/s/ghost/status", BIRTH, 0) == []  # a birth does not make an id known
    assert strict.process("qala/s/ghost/telemetry", tele(0), 0) == []
    assert strict.metrics.unprovisioned["telemetry"] == strict.metrics.unprovisioned["status"] == 1
    assert strict.metrics.rejects["unknown_device"] == 1

    lenient = make(tmp_path / "lenient", require_birth=False)
    assert len(lenient.process("qala/s/d1/telemetry", tele(0), 0)) == 1  # provisioned, never born: stored
    assert lenient.metrics.unknown_device_stored == 1
    assert lenient.process("qala/s/ghost/telemetry", tele(0), 0) == []
    assert lenient.metrics.unknown_device_stored == 1


def test_a_flood_of_ids_does_not_fill_the_topic_cache(tmp_path: Path) -> None:
    p = make(tmp_path)
    p.process("qala/s/d1/telemetry", tele(0), 0)
    for i in range(1000):
        p.process(f"qala/s/ghost{i}/telemetry", tele(0), 0)
    assert p.metrics.unprovisioned["telemetry"] == 1000
    assert list(p._topics) == ["qala/s/d1/telemetry"]


def test_set_known_revokes_an_admitted_topic(tmp_path: Path) -> None:
    p = make(tmp_path)
    assert len(p.process("qala/s/d2/telemetry", tele(0), 0)) == 1
    p.set_known(frozenset({"d1"}))  # the store was re-read: d2 revoked
    assert p.process("qala/s/d2/telemetry", tele(1), 0) == []
    assert p.metrics.unprovisioned["telemetry"] == 1
    p.set_known(None)
    assert len(p.process("qala/s/d2/telemetry", tele(2), 0)) == 1


def test_ack_device(tmp_path: Path) -> None:
    p = make(tmp_path)
    assert p.ack_device("qala/s/d1/ack") == "d1"
    assert p.ack_device("qala/s/d1/ack") == "d1"  # cached
    assert p.ack_device("qala/s/ghost/ack") is None
    assert p.metrics.unprovisioned["ack"] == 1
    assert p.ack_device("qala/other/d1/ack") is None
    assert p.ack_device("qala/s/d1") is None
    assert p.metrics.rejects["other_site"] == p.metrics.rejects["bad_topic"] == 1
    assert p.metrics.messages_in == 0  # acks are not counted as ingested messages (as before)


# ------------------------------------------------------------------------------------------- FloodLog


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_flood_log_names_a_few_ids_then_sums_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = Clock()
    p = make(tmp_path, clock=clock)  # at most 3 ids named per 60 s
    for _ in range(3):
        for i in range(1000):
            p.process(f"qala/s/ghost{i}/telemetry", tele(0), 0)
    assert p.metrics.unprovisioned["telemetry"] == 3000
    lines = _lines(caplog)
    assert len(lines) == 3
    assert [line.split()[3] for line in lines] == ["device=ghost0", "device=ghost1", "device=ghost2"]
    assert lines[0].startswith("unprovisioned device dropped device=ghost0 kind=telemetry: ")
    assert "unprovisioned_dropped" in lines[0]
    clock.now = 59.0
    p.floodlog.tick()
    assert len(_lines(caplog)) == 3  # the window is not over
    clock.now = 60.0
    p.process("qala/s/ghost0/status", BIRTH, 0)  # the next drop closes the window, then is named again
    lines = _lines(caplog)
    assert len(lines) == 5
    assert lines[3].startswith("unprovisioned devices dropped, not named one by one messages=2991 ids=997 seconds=60 ")
    assert lines[4].split()[3:5] == ["device=ghost0", "kind=status:"]


def test_flood_log_tick_writes_the_summary_without_a_new_drop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = Clock()
    flood = FloodLog(60, 1, clock)
    for i in range(5):
        flood.dropped(f"x{i}", "telemetry")
    assert len(_lines(caplog)) == 1
    clock.now = 61.0
    flood.tick()
    assert "messages=4 ids=4 seconds=61 " in _lines(caplog)[1]
    clock.now = 200.0
    flood.tick()  # nothing unnamed in that window: no line
    assert len(_lines(caplog)) == 2


def test_flood_log_memory_is_bounded(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(process_module, "FLOOD_TRACKED", 10)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = Clock()
    flood = FloodLog(60, 1, clock)
    for i in range(101):
        flood.dropped(f"x{i}", "telemetry")
    assert len(flood._unnamed) == 10
    clock.now = 60.0
    flood.tick()
    assert "messages=100 ids=10+ " in _lines(caplog)[-1]


def test_a_device_id_in_a_log_line_is_a_checked_id(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only ids that passed protocols.topics' check reach the line: no newline or control character injected."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    p = make(tmp_path)
    p.process("qala/s/evil\ndevice=d1/telemetry", tele(0), 0)
    assert p.metrics.rejects["bad_topic"] == 1
    assert sum(p.metrics.unprovisioned.values()) == 0


# -------------------------------------------------------------------------------------------- metrics


def test_snapshot_fields() -> None:
    metrics = Metrics()
    metrics.unprovisioned["telemetry"] = 7
    metrics.unprovisioned["status"] = 2
    metrics.unprovisioned["ack"] = 1
    fields = {r.field: r.value for r in metrics.snapshot("s", "hub", 0, {})}
    assert fields["unprovisioned_dropped"] == 10.0
    assert fields["unprovisioned_telemetry"] == 7.0
    assert fields["unprovisioned_status"] == 2.0
    assert fields["unprovisioned_ack"] == 1.0
    assert fields["rejects"] == 0.0  # not a reject: its own counter


# ---------------------------------------------------------------------------------------------- Hub


def _hub(tmp_path: Path, known: frozenset[str] | None) -> Hub:
    """A hub whose store provisions `known` (None: plain mode, no store)."""
    store = None if known is None else provision_site(tmp_path / "store", sorted(known)).root
    broker = cast("Mosquitto", SimpleNamespace(host="127.0.0.1", port=1, store=store))  # never connected here
    path = write_config(tmp_path, broker, {"api": "v1", "url": "http://127.0.0.1:1", "database": "x"})
    return Hub(hub_config.load(path))


def _message(topic: str, payload: bytes) -> Any:
    return SimpleNamespace(topic=topic, payload=payload)


def test_hub_hands_known_to_the_processor_and_drops_unprovisioned_acks(tmp_path: Path) -> None:
    hub = _hub(tmp_path, frozenset({"t1"}))
    assert hub.processor.known == frozenset({"t1"})
    acks: list[str] = []
    hub.control.on_ack = lambda device, payload: acks.append(device)  # type: ignore[method-assign]
    ack = b'{"v":1,"id":"c1","act":"fan","st":"applied","ts":1795553687000}'
    site = hub.config.site.id
    hub._take([_message(f"qala/{site}/ghost/ack", ack), _message(f"qala/{site}/t1/ack", ack)], 0, [])
    assert acks == ["t1"]
    assert hub.metrics.unprovisioned["ack"] == 1


def test_hub_in_plain_mode_stores_every_id(tmp_path: Path) -> None:
    hub = _hub(tmp_path, None)
    assert hub.processor.known is None


def test_readings_from_outside_mqtt_are_never_filtered(tmp_path: Path) -> None:
    """Modbus devices come from the hub's own config: their Readings take Hub.ingest, not the known-device rule."""
    hub = _hub(tmp_path, frozenset())
    reading = Reading("air", hub.config.site.id, "meter1", "m", "ok", "pm25", 1.0, TS)
    hub.ingest([reading])
    assert hub._extra == [reading]
