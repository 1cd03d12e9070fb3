"""bench/cluster.py, small (`hubs --small`, about 30 s): the same burst through one hub on mosquitto, the
cluster's plain consumer and 1 and 2 hubs on the secure cluster, every message stored (or consumed) and
counted per board. The full runs and their figures are in docs/performance.md (City scale).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def test_small_city_run_stores_every_message(tmp_path: Path) -> None:
    out = tmp_path / "hubs.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "cluster.py"), "hubs", "--small", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    runs = {name: run for name, run in results.items() if isinstance(run, dict) and "msg_s" in run}
    assert set(runs) == {"mosquitto_1hub", "consumer", "cluster_1hub", "cluster_2hub"}
    for name, run in runs.items():
        assert run["stored"] == run["messages"] == run["acked"], name
        assert run["lost"] == 0, name
        assert not run["errors"], name
        assert run["cpu_us_msg"]["generator"] > 0, name
    assert results["cluster_2hub"]["boards_stored"] == 40
