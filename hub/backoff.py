"""Jittered exponential backoff, shared by the MQTT reconnect loop and the InfluxDB writers.

Delay n is `d/2 + uniform(0, d/2)` with `d = min(maximum, minimum * 2**n)` ("equal jitter"): it grows
fast, never exceeds `maximum`, and hubs that lost the same broker or database at the same moment do not
come back in lockstep (mosquitto#1035, amrc-connectivity-stack#167). `reset()` after a success.

Pure: standard library only.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError(f"backoff needs 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self.attempts = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def next(self) -> float:
        """The delay before the next attempt, in seconds."""
        ceiling = min(self.maximum, self.minimum * 2 ** min(self.attempts, 60))
        self.attempts += 1
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.attempts = 0
