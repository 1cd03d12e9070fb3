"""hub.control.throttle with a fake clock: delays, blocks, resets, the LRU bound and the log limit."""

from __future__ import annotations

import pytest

from hub.control.throttle import DEFAULT, Policy, Throttle, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(policy: Policy = DEFAULT) -> tuple[Throttle, Clock]:
    clock = Clock()
    return Throttle(policy, clock), clock


def test_default_figures_free_then_doubling_delays_then_a_block() -> None:
    t, clock = make()
    verdicts = [t.failure("10.0.0.1") for _ in range(10)]
    assert [v.delay for v in verdicts] == [0, 0, 0, 0.25, 0.5, 1, 2, 4, 4, 4]
    assert [v.failures for v in verdicts] == list(range(1, 11))
    assert [v.blocked_for for v in verdicts] == [0] * 9 + [60]
    assert t.retry_after("10.0.0.1") == 60
    clock.now += 59.5
    assert t.retry_after("10.0.0.1") == pytest.approx(0.5)
    clock.now += 0.5
    assert t.retry_after("10.0.0.1") == 0
    assert t.counts == {"wrong_token": 10, "blocked": 1, "refused": 2}


def test_each_further_block_is_twice_as_long_up_to_the_cap() -> None:
    t, clock = make()
    blocks = []
    for _ in range(8):
        verdicts = [t.failure("a") for _ in range(10)]
        assert [v.delay for v in verdicts][:3] == [0, 0, 0]  # a block's end starts a new window
        blocks.append(verdicts[-1].blocked_for)
        clock.now += t.retry_after("a")
    assert blocks == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_quiet_for_max_block_after_a_block_forgets_the_blocks() -> None:
    t, clock = make()
    for _ in range(10):
        t.failure("a")
    clock.now += 60 + 3600
    assert [t.failure("a").blocked_for for _ in range(10)][-1] == 60


def test_a_window_without_failures_starts_over() -> None:
    t, clock = make()
    for _ in range(5):
        t.failure("a")
    clock.now += 59.9
    assert t.failure("a").failures == 6
    clock.now += 0.2  # 60.1 s after the window's first failure
    assert t.failure("a") == (0.0, 1, 0.0, True, 0)


def test_a_success_forgets_the_address_and_other_addresses_are_untouched() -> None:
    t, _ = make()
    for _ in range(9):
        t.failure("a")
    assert t.failure("b").delay == 0
    t.success("a")
    assert t.failure("a").failures == 1
    assert t.retry_after("b") == 0
    assert len(t) == 2


def test_the_state_is_an_lru_bounded_by_addresses() -> None:
    t, _ = make(Policy(addresses=100))
    for _ in range(9):
        t.failure("old")
    for i in range(1000):
        t.failure(f"10.0.{i // 256}.{i % 256}")
        assert len(t) <= 100
    assert len(t) == 100
    assert t.failure("old").failures == 1  # forgotten first: least recently seen


def test_recently_seen_addresses_stay_in_the_lru() -> None:
    t, _ = make(Policy(addresses=3))
    for _ in range(10):
        t.failure("blocked")
    t.failure("x")
    t.failure("y")
    assert t.retry_after("blocked") > 0  # seen: moves to the recent end
    t.failure("z")
    assert t.retry_after("blocked") > 0
    assert t.failure("x").failures == 1  # x was the least recently seen


def test_log_lines_are_limited_over_all_addresses() -> None:
    t, clock = make(Policy(log_lines=3, log_period=60))
    logged = [t.failure(f"a{i}") for i in range(10)]
    assert [v.log for v in logged] == [True] * 3 + [False] * 7
    assert not t.failure("a0").log  # not the first of its window: never a line
    clock.now += 60
    v = t.failure("b")
    assert (v.log, v.suppressed) == (True, 7)
    assert t.failure("c").suppressed == 0


def test_a_block_is_logged_and_the_slowed_failures_in_between_are_not() -> None:
    t, _ = make()
    assert [t.failure("a").log for _ in range(10)] == [True] + [False] * 8 + [True]


@pytest.mark.parametrize(("address", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::/64"),
    (None, "unknown"),
    ("", "unknown"),
    ("not-an-ip", "not-an-ip"),
])
def test_client_key(address: str | None, key: str) -> None:
    assert client_key(address) == key
