"""Per-message processing: bad input is counted by reason and logged at most once per device per minute."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from hub.ingest.process import Processor, RateLimitedLog
from hub.ingest.sequence import SequenceTracker
from hub.metrics import Metrics
from hub.registry import Registry
from protocols import payloads

if TYPE_CHECKING:
    from pathlib import Path

TS = 1_795_553_687_000
CAPS: dict[str, object] = {"sensors": {"air1": {"driver": "sim", "q": ["pm25"]}}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def proc(tmp_path: Path, clock: Clock) -> Processor:
    p = Processor("s", Registry(tmp_path / "r.json"), SequenceTracker(), Metrics(), ratelog=RateLimitedLog(60, clock),
                  require_birth=True)
    birth = payloads.encode_status("online", ts=TS, boot=1, fw="1", caps=CAPS)
    assert len(p.process("qala/s/d1/status", birth, 0)) == 5  # state, online, safe, boot, fw
    return p


def tele(seq: int, value: float = 1.0) -> bytes:
    return payloads.encode_telemetry(seq, TS + seq, 1, "air1", [("pm25", value)])


def test_good_telemetry(proc: Processor) -> None:
    (reading,) = proc.process("qala/s/d1/telemetry", tele(0), 5)
    assert reading == ("air", "s", "d1", "air1", "ok", "pm25", 1.0, TS)
    assert proc.registry.devices["d1"].last_seen == 5


def test_unwatched_telemetry_comes_back_as_lines(proc: Processor) -> None:
    lines: list[str] = []
    assert len(proc.process("qala/s/d1/telemetry", tele(0), 5, lines)) == 1  # by default every sample is watched
    proc.watches = lambda device, sensor, _values: (device, sensor) == ("d1", "air1")
    assert len(proc.process("qala/s/d1/telemetry", tele(1), 5, lines)) == 1
    assert lines == []
    proc.watches = lambda _device, _sensor, _values: False
    assert proc.process("qala/s/d1/telemetry", tele(2), 5, lines) == []
    assert lines == [f"air,device=d1,quality=ok,sensor=air1,site=s pm25=1 {TS + 2}"]
    assert proc.metrics.readings_in == 3


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("qala/s/d1/telemetry", b"garbage", "bad_payload"),
        ("qala/s/d1/status", b'{"v":1,"state":"maybe"}', "bad_payload"),
        ("qala/s/bad dev/telemetry", tele(0), "bad_topic"),
        ("elsewhere/x", tele(0), "bad_topic"),
        ("qala/s/d1/cmd", b"{}", "bad_topic"),
        ("qala/other/d1/telemetry", tele(0), "other_site"),
        ("qala/s/ghost/telemetry", tele(0), "unknown_device"),
    ],
)
def test_rejects_by_reason(proc: Processor, topic: str, payload: bytes, reason: str) -> None:
    assert proc.process(topic, payload, 0) == []
    assert proc.metrics.rejects[reason] == 1
    assert sum(proc.metrics.rejects.values()) == 1


def test_out_of_range_is_counted_and_kept(proc: Processor) -> None:
    body = payloads.encode_telemetry(0, TS, 1, "air1", [("pm25", 5000.0)])
    (reading,) = proc.process("qala/s/d1/telemetry", body, 0)
    assert reading.quality == "range"
    assert proc.metrics.rejects["out_of_range"] == 1


def test_unknown_devices_stored_and_counted_when_birth_not_required(tmp_path: Path) -> None:
    p = Processor("s", Registry(tmp_path / "r.json"), SequenceTracker(), Metrics(), require_birth=False)
    assert len(p.process("qala/s/ghost/telemetry", tele(0), 0)) == 1
    assert p.metrics.unknown_device_stored == 1
    assert p.metrics.rejects["unknown_device"] == 0


def test_bad_input_logged_once_per_device_per_minute(
    proc: Processor, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    proc.process("qala/s/d2/status", payloads.encode_status("online", ts=TS, boot=1, fw="1", caps=CAPS), 0)
    caplog.set_level(logging.WARNING, logger="hub.ingest.process")
    for _ in range(100):
        proc.process("qala/s/d1/telemetry", b"garbage", 0)
        proc.process("qala/s/d2/telemetry", b"garbage", 0)
    assert len(caplog.records) == 2
    assert proc.metrics.rejects["bad_payload"] == 200
    clock.now = 59.0
    proc.process("qala/s/d1/telemetry", b"garbage", 0)
    assert len(caplog.records) == 2
    clock.now = 61.0
    proc.process("qala/s/d1/telemetry", b"garbage", 0)
    assert len(caplog.records) == 3
    assert "device=d1" in caplog.records[-1].getMessage()


def test_sequence_gaps_and_duplicates(proc: Processor) -> None:
    for seq in (0, 1, 5, 5):
        proc.process("qala/s/d1/telemetry", tele(seq), 0)
    assert proc.tracker.gaps == 3
    assert proc.tracker.duplicates == 1


def test_a_hub_among_several_does_not_judge_sequences(proc: Processor, caplog: pytest.LogCaptureFixture) -> None:
    """Competing hubs (a cluster, a share group) each see part of a board's messages: a jump is no gap."""
    proc.sequences = False
    with caplog.at_level("WARNING"):
        for seq in (0, 3, 9):
            assert proc.process("qala/s/d1/telemetry", tele(seq), 0)  # stored all the same
    assert (proc.tracker.gaps, proc.tracker.duplicates) == (0, 0)
    assert "sequence gap" not in caplog.text


def test_status_written_only_when_it_changes(proc: Processor) -> None:
    birth = payloads.encode_status("online", ts=TS, boot=1, fw="1", caps=CAPS)
    assert proc.process("qala/s/d1/status", birth, 0) == []
    offline = payloads.encode_status("offline")
    readings = proc.process("qala/s/d1/status", offline, 99)
    assert {r.field: r.value for r in readings}["online"] == 0.0
    assert all(r.ts == 99 for r in readings)
