"""What the detectors cost the ingest path, in one process: no broker, no TLS, no database, so no noise from them.

`hub.ingest.process.Processor.process` (decode, checks, sequence, last values, line protocol: the hub's
per-message work) over the messages of 1,000 boards in turn (bench/ingest.py's six-reading payload), once with
`Detectors` fed and once without, alternating, a fresh Processor and Detectors each time (so each run also
pays for learning its boards, as a freshly started hub does). Per repetition the CPU per message of both; the
figure is the median of the repetitions' differences (each repetition's pair runs back to back, so the
machine's drift cancels). bench/ingest.py --detect-ab measures the same end to end, through mosquitto, TLS,
the spool and influxd, where its noise is larger.

    python bench/detect_cost.py                 # 10 repetitions of 100,000 messages, about a minute
    python bench/detect_cost.py --reps 3 --messages 20000

Figures go into docs/performance.md ("Ingest with the detectors on and off") by hand.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _run
from bench.ingest import BOARDS, payload
from hub.coverage import LastValues
from hub.detect.config import DetectConfig
from hub.detect.engine import Detectors
from hub.ingest.process import Processor
from hub.ingest.sequence import SequenceTracker
from hub.metrics import Metrics
from hub.registry import Registry

SITE = "bench"
WRITER_LINES = 30_000
"""Lines joined into one body, as the hub's writer does (its strings come and go as in the hub)."""


def messages(n: int) -> list[tuple[str, bytes]]:
    """n (topic, payload) of the 1,000 boards in turn, stamped an hour ago and one ms apart."""
    ts0 = int(time.time() * 1000) - 3_600_000
    return [(f"qala/{SITE}/b{i % BOARDS:04d}/telemetry", payload(i % BOARDS, i // BOARDS, ts0 + i)) for i in range(n)]


def cpu_per_message(msgs: list[tuple[str, bytes]], *, detect: bool, work: Path) -> float:
    """CPU microseconds per message of a fresh Processor (with fresh Detectors when `detect`)."""
    processor = Processor(SITE, Registry(work / "registry.json"), SequenceTracker(), Metrics(), require_birth=False)
    processor.sample = LastValues().sample
    if detect:
        processor.detect = Detectors(DetectConfig())
    now_ms = int(time.time() * 1000)
    lines: list[str] = []
    bodies: list[bytes] = []
    gc.collect()
    t0 = time.process_time()
    for topic, raw in msgs:
        processor.process(topic, raw, now_ms, lines)
        if len(lines) >= WRITER_LINES:
            bodies.append("\n".join(lines).encode())
            lines = []
            del bodies[:-4]
    return (time.process_time() - t0) / len(msgs) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="repetitions, each with and without (default 10)")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per run (default 100000)")
    args = parser.parse_args()
    if args.reps < 1 or args.messages < BOARDS:
        parser.error(f"--reps must be at least 1 and --messages at least {BOARDS}")
    logging.disable(logging.WARNING)  # 1,000 "telemetry before any birth message" lines per run
    msgs = messages(args.messages)
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory(prefix="qala-detect-cost-") as tmp:
        for rep in range(args.reps):
            for detect in ((True, False) if rep % 2 == 0 else (False, True)):
                (on if detect else off).append(cpu_per_message(msgs, detect=detect, work=Path(tmp)))
            print(f"rep {rep + 1}: with detectors {on[-1]:.2f} us/message, without {off[-1]:.2f}", flush=True)
    diffs = sorted(a - b for a, b in zip(on, off, strict=True))
    print(f"\nProcessor.process, {args.messages:,} messages of {BOARDS:,} boards, {args.reps} repetitions: "
          f"with detectors {statistics.median(on):.2f} us/message, without {statistics.median(off):.2f}; "
          f"the detectors' part {statistics.median(diffs):+.2f} us (repetitions from {diffs[0]:+.2f} to "
          f"{diffs[-1]:+.2f})")
    return 0


if __name__ == "__main__":
    _run.run(main)
