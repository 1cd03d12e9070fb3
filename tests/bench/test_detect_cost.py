"""bench/detect_cost.py runs (a short version): the in-process measure of what the detectors cost the ingest
path. No timing is asserted (figures belong in docs/performance.md); that it runs, feeds every message to the
detectors and reports both halves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.detect_cost import cpu_per_message, messages

REPO = Path(__file__).resolve().parents[2]


def test_both_halves_process_every_message(tmp_path: Path) -> None:
    msgs = messages(2_000)
    assert len({topic for topic, _ in msgs}) == 1_000
    assert cpu_per_message(msgs, detect=True, work=tmp_path) > 0
    assert cpu_per_message(msgs, detect=False, work=tmp_path) > 0


def test_the_command_reports_and_refuses_bad_arguments() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "detect_cost.py"), "--reps", "1", "--messages", "2000"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "the detectors' part" in done.stdout
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "detect_cost.py"), "--reps", "0"],
                         capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert bad.returncode == 2
    assert "--reps must be at least 1" in bad.stderr
    assert "Traceback" not in bad.stderr


pytestmark = pytest.mark.slow
