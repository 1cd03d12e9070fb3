"""The simulators' faults: the labelled city (simulators/faults.py), the light fleet's switches
(simulators.fleet) and the twins' spike, drift and leak (simulators/twins)."""

from __future__ import annotations

import collections
import itertools

import pytest

from hub.detect import events as ev
from protocols import catalogue
from simulators import fleet
from simulators.faults import City
from simulators.twins import pms5003, pulse


@pytest.fixture(scope="module")
def city() -> City:
    return City(5, 10, groups3=2, groups2=1, air_single=1, water=3, heat=2, energy=2, faults_per_kind=2,
                warmup_days=3, episodes=3)


def test_the_city_is_deterministic_and_labels_every_kind(city: City) -> None:
    again = City(5, 10, groups3=2, groups2=1, air_single=1, water=3, heat=2, energy=2, faults_per_kind=2,
                 warmup_days=3, episodes=3)
    assert again.faults == city.faults
    kinds = collections.Counter(f.kind for f in city.faults)
    assert set(kinds) == set(ev.KINDS)
    for f in city.faults:
        assert city.start + 3 * 86_400_000 <= f.start_ms < f.end_ms <= city.end
        assert f.start_ms <= f.due_ms <= f.end_ms
    per_device: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for f in city.faults:
        per_device[f.device].append((f.start_ms, f.end_ms))
    for spans in per_device.values():  # one fault at a time per board
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_the_messages_are_in_arrival_order_with_checked_qualities(city: City) -> None:
    last = 0
    seen = 0
    for m in city.messages():
        assert m.now_ms >= last - 60_000  # a backlog replay may overlap the next live message by its spacing
        last = max(last, m.now_ms)
        for q, v, quality in m.readings:
            assert quality == catalogue.check(q, v)
        seen += 1
        if seen > 200_000:
            break
    assert seen > 200_000


def test_light_fleet_faults() -> None:
    f = fleet.parse_fault("spike:esil-air-01:30:40:pm25")
    assert f == fleet.LightFault("spike", "esil-air-01", "pm25", 30.0, 40.0, 500.0)
    state: dict[str, float] = {}
    readings = [("pm25", 10.0), ("co2", 500.0)]
    assert fleet.apply_faults([f], 10, readings, state) == (readings, 0)
    assert fleet.apply_faults([f], 35, readings, state) == ([("pm25", 510.0), ("co2", 500.0)], 0)
    clock = fleet.parse_fault("clock:b:0:10")
    assert fleet.apply_faults([clock], 5, readings, state)[1] == 600_000
    assert fleet.apply_faults([fleet.parse_fault("silent:b:0:10")], 5, readings, state) == (None, 0)
    stuck = fleet.parse_fault("counter_stopped:b:0:10:water_volume")
    assert fleet.apply_faults([stuck], 1, [("water_volume", 5.0)], state)[0] == [("water_volume", 5.0)]
    assert fleet.apply_faults([stuck], 2, [("water_volume", 6.0)], state)[0] == [("water_volume", 5.0)]
    for bad, text in (("smoke:b:0:1", "unknown kind"), ("spike:b:5:1", "START_S < END_S"), ("spike:b", "expected")):
        with pytest.raises(fleet.FleetError, match=text):
            fleet.parse_fault(bad)


def test_light_fleet_consumption_and_aqi_episode() -> None:
    """The two kinds a live fleet could not show before: a meter counting 3x its use (and never going back
    after the fault), a PM2.5 episode that rises to +80 over the first half and holds."""
    use = fleet.parse_fault("consumption:b:10:20:energy_import")
    assert use.size == 3.0
    state: dict[str, float] = {}
    sent = [fleet.apply_faults([use], t, [("energy_import", 1.0 + 0.01 * t)], state)[0] for t in range(30)]
    values = [r[0][1] for r in sent if r]
    steps = [round(b - a, 3) for a, b in itertools.pairwise(values)]
    assert steps[:10] == [0.01] * 10
    assert steps[11:19] == [0.03] * 8  # three times the usual increment inside the fault
    assert all(step > 0 for step in steps)  # the counter never runs back when the fault ends
    assert steps[-5:] == [0.01] * 5
    episode = fleet.parse_fault("aqi_forecast:b:0:100")
    assert episode.size == 80.0
    pm = [fleet.apply_faults([episode], t, [("pm25", 12.0), ("pm10", 20.0)], {})[0] for t in (0, 25, 50, 75, 120)]
    assert [r[0] for r in pm if r] == [("pm25", 12.0), ("pm25", 52.0), ("pm25", 92.0), ("pm25", 92.0), ("pm25", 12.0)]
    assert all(r[1] == ("pm10", 20.0) for r in pm if r)


def test_twins_spike_drift_and_leak() -> None:
    t = pms5003.Twin({}, lambda: 0)
    normal = t.wave(14, 8)
    t.set("spike", 1)
    assert t.wave(14, 8) - normal > 300
    assert abs(t.wave(14, 8) - normal) < 20  # once only
    t.set("drift")
    drifted = [t.wave(14, 8) for _ in range(200)]
    assert drifted[-1] - drifted[0] > 20
    meter = pulse.Twin({}, lambda: 0)
    plain = meter._period()
    meter.set("leak")
    assert meter._period() < plain
