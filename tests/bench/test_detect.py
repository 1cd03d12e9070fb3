"""bench/detect.py, small: a fortnight of a small simulated city through the detectors, against the targets.

Every kind must find at least 90 % of its labelled faults with at most 1 false alarm per 1,000 device-days
(on this small city: none at all). The full month is `python bench/detect.py` (docs/performance.md).
"""

from __future__ import annotations

import pytest

from bench.detect import run, small_city
from hub.detect import events as ev

pytestmark = pytest.mark.slow


def test_detectors_meet_the_targets_on_a_small_city() -> None:
    city = small_city(seed=17, days=14)
    result = run(city)
    kinds = result["detectors"]
    assert isinstance(kinds, dict)
    short = {kind: (r["found"], r["faults"], r["false"]) for kind, r in kinds.items()
             if r["recall"] < 0.9 or r["false_per_1000dd"] > 1.0}
    assert not short, short
    assert {kind for kind, r in kinds.items() if r["faults"]} == set(ev.KINDS)
