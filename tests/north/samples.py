"""Alert and District objects as the plan's API contract shapes them (docs/integrators.md, hub/north.schema.json),
for the northbound tests: the hub's AlertBook and coverage make the real ones (hub.alerts, hub.coverage)."""

from __future__ import annotations

from typing import Any

T0 = 1_796_000_000_000  # ms


def alert(state: str = "firing", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "a-0123456789ab", "kind": "leak", "severity": "warning", "state": state, "device": "wm-17",
        "quantity": "water_flow", "district": "Old Town", "message": "night flow never below 0.12 m3/h",
        "evidence": {"night_min_m3_h": 0.12, "threshold_m3_h": 0.02, "nights": 3},
        "fired_at": T0, "updated_at": T0, "acked_at": None, "acked_by": None, "note": None, "resolved_at": None,
        "count": 1,
    }
    if state in ("acknowledged", "resolved"):
        doc |= {"acked_at": T0 + 60_000, "acked_by": "control", "note": "crew sent"}
    if state == "resolved":
        doc |= {"resolved_at": T0 + 3_600_000, "updated_at": T0 + 3_600_000}
    return doc | overrides


def district(name: str = "Old Town", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "district": name, "expected": 12, "online": 11, "on_time": 10, "coverage": 10 / 12,
        "quantities": {"pm25": {"expected": 4, "on_time": 4}, "water_flow": {"expected": 8, "on_time": 6}},
        "aqi": 42.0, "open_alerts": 1,
        "consumption": {"water_m3_h": 3.25, "energy_kw": None, "heat_kw": 120.5},
    }
    return doc | overrides
