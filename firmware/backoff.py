"""Reconnect delays: exponential backoff with jitter, as a pure function of the attempt number.

No clock, no randomness of its own: the caller passes 16 random bits, so tests can pin every delay.
"""


def delay_ms(attempt, rand16, base_ms=500, cap_ms=60000):
    """The wait before reconnect `attempt` (0 = first retry): uniform in [d/2, d], d = min(cap, base * 2^attempt).

    Half the window is fixed so that a board never hammers the broker; the other half is jitter, so that a
    street of boards that lost the same broker does not come back in lockstep.
    """
    attempt = min(attempt, 20)
    d = base_ms << attempt
    d = min(d, cap_ms)
    half = d // 2
    return half + (half * (rand16 & 0xFFFF)) // 0xFFFF
