"""The ingest feeds the detectors: every telemetry message in sequence (a gap flagged), never a resent or
late one (its old counter would seem to step back); without detectors nothing changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.detect import events as ev
from hub.detect.config import DetectConfig
from hub.detect.engine import Detectors
from hub.ingest.process import Processor
from hub.ingest.sequence import SequenceTracker
from hub.metrics import Metrics
from hub.registry import Registry
from protocols import payloads

if TYPE_CHECKING:
    from pathlib import Path

TS = 1_767_571_200_000
TOPIC = "qala/s/m1/telemetry"


class Recorder(Detectors):
    def __init__(self) -> None:
        super().__init__(DetectConfig())
        self.calls: list[tuple[str, str, int, bool]] = []

    def sample(self, device: str, sensor: str, ts_ms: int, readings: list[tuple[str, float, str]],  # type: ignore[override]
               now_ms: int, gap: bool) -> None:
        self.calls.append((device, sensor, ts_ms, gap))
        super().sample(device, sensor, ts_ms, readings, now_ms, gap)


def tele(seq: int, volume: float) -> bytes:
    return payloads.encode_telemetry(seq, TS + seq * 60_000, 1, "meter", [("water_volume", volume)])


def test_the_processor_feeds_messages_in_sequence_only(tmp_path: Path) -> None:
    proc = Processor("s", Registry(tmp_path / "r.json"), SequenceTracker(), Metrics())
    det = proc.detect = Recorder()
    for seq, volume in ((0, 10.0), (1, 11.0), (3, 13.0), (2, 12.0), (1, 11.0), (4, 14.0)):
        proc.process(TOPIC, tele(seq, volume), TS + seq * 60_000)
    assert det.calls == [("m1", "meter", TS, False), ("m1", "meter", TS + 60_000, False),
                         ("m1", "meter", TS + 180_000, True), ("m1", "meter", TS + 240_000, False)]
    assert [e for e in det.tick(TS + 300_000) if e.kind == ev.COUNTER_BACKWARDS] == []


def test_without_detectors_the_processor_is_as_before(tmp_path: Path) -> None:
    proc = Processor("s", Registry(tmp_path / "r.json"), SequenceTracker(), Metrics())
    assert proc.detect is None
    assert len(proc.process(TOPIC, tele(0, 1.0), TS)) == 1


def hub_toml(tmp_path: Path, detect: str) -> dict[str, object]:
    import tomllib  # noqa: PLC0415

    return tomllib.loads(f"""
[site]
id = "s"
[trust]
plain = true
[mqtt]
host = "127.0.0.1"
[influxdb]
api = "v1"
url = "http://127.0.0.1:8086"
database = "d"
[spool]
path = "{tmp_path / 'state'}"
{detect}
""")


def test_the_hub_wires_its_detectors_unless_disabled(tmp_path: Path) -> None:
    from hub import config as hub_config  # noqa: PLC0415
    from hub.service import Hub  # noqa: PLC0415

    on = Hub(hub_config.parse(hub_toml(tmp_path, ""), {}))
    assert on.detectors.enabled
    assert on.processor.detect is on.detectors
    off = Hub(hub_config.parse(hub_toml(tmp_path, "[detect]\nenabled = false"), {}))
    assert off.processor.detect is None
    assert off.detectors.tick(TS) == []


def test_modbus_readings_reach_the_detectors(tmp_path: Path) -> None:
    from hub import config as hub_config  # noqa: PLC0415
    from hub.model import Reading  # noqa: PLC0415
    from hub.service import Hub  # noqa: PLC0415

    hub = Hub(hub_config.parse(hub_toml(tmp_path, ""), {}))
    for k, volume in enumerate((100.0, 101.0, 50.0)):
        ts = TS + k * 60_000
        hub.ingest([Reading("water", "s", "meter-1", "meter", "ok", "water_volume", volume, ts),
                    Reading("water", "s", "meter-1", "meter", "ok", "water_flow", 1.0, ts),
                    Reading("qala_hub", "s", "meter-1", "meter", "ok", "poll_ms", 12.0, ts)])
    fired = [e for e in hub.detectors.tick(TS + 180_000) if e.kind == ev.COUNTER_BACKWARDS]
    assert [(e.device, e.quantity) for e in fired] == [("meter-1", "water_volume")]
