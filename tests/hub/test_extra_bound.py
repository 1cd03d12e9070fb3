"""Readings from outside MQTT (Modbus, control audit) are bounded in RAM while the spool cannot take them."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from hub import service
from hub.config import parse
from hub.model import Reading
from hub.service import Hub
from tests.hub.test_config_modbus import BASE

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


async def test_oldest_extra_readings_dropped_and_counted_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "MAX_EXTRA", 5)
    hub = Hub(parse(copy.deepcopy(BASE) | {"spool": {"path": str(tmp_path / "spool")}}, {}))
    readings = [Reading("energy", "ast-01", "m1", "meter", "ok", "voltage", 230.0 + i, i) for i in range(8)]
    hub.emit(readings[:4])
    hub.emit(readings[4:])
    assert hub._extra == readings[3:]  # the newest five kept, in order
    assert hub.metrics.readings_dropped == 3
    fields = {r.field: r.value for r in hub.metrics.snapshot("ast-01", "hub", 1, {})}
    assert fields["readings_dropped"] == 3.0
