"""The simulated meters' electrical values are consistent, as a real meter's are: S = V x I per phase,
P = S x PF <= S, S^2 = P^2 + Q^2, totals the phases' sums. The landed simulator drew each register on its own
(apparent power below active power; V x I far from P), and people judge the dashboards by these values."""

from __future__ import annotations

import math

import pytest

from hub.modbus.profile import load, resolve
from simulators.modbus_devices import SimulatedDevice


def values(profile: str, t: float, seed: int = 0) -> dict[str, float]:
    clock = [0.0]
    device = SimulatedDevice(load(resolve(profile)), seed=seed, clock=lambda: clock[0])
    clock[0] = t
    return {reg.name: device.value(reg) for reg in device.profile.registers}


@pytest.mark.parametrize("t", [0.0, 3.7, 11.0, 42.5, 600.0])
@pytest.mark.parametrize("profile", ["sdm120", "qala_board"])
def test_a_single_phase_meter_obeys_the_power_triangle(profile: str, t: float) -> None:
    v = values(profile, t, seed=int(t))
    s, p, q = v["power_apparent"], v["power_active"], v["power_reactive"]
    assert s == pytest.approx(v["voltage"] * v["current"])
    assert p <= s
    assert p == pytest.approx(s * v["power_factor"])
    assert math.hypot(p, q) == pytest.approx(s)


@pytest.mark.parametrize("t", [0.0, 5.5, 300.0])
def test_a_three_phase_meter_adds_its_phases(t: float) -> None:
    v = values("sdm630", t)
    for phase in ("l1", "l2", "l3"):
        s = v[f"power_apparent_{phase}"]
        assert s == pytest.approx(v[f"voltage_{phase}"] * v[f"current_{phase}"])
        assert v[f"power_active_{phase}"] <= s
        assert math.hypot(v[f"power_active_{phase}"], v[f"power_reactive_{phase}"]) == pytest.approx(s)
    for kind in ("active", "reactive", "apparent"):
        assert v[f"power_{kind}_total"] == pytest.approx(sum(v[f"power_{kind}_{ph}"] for ph in ("l1", "l2", "l3")))
    assert v["power_factor_total"] == pytest.approx(v["power_active_total"] / v["power_apparent_total"])
    assert len({round(v[f"voltage_{ph}"], 6) for ph in ("l1", "l2", "l3")}) == 3  # each phase its own
