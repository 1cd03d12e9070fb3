"""Throttling of wrong API tokens per client address: pure logic with an injected clock (no I/O, no asyncio).

Per address (an IPv6 address counts as its /64, see `client_key`):
- the first `free` wrong tokens within `window` seconds are answered at once;
- each further one is answered after a delay that doubles from `first_delay` up to `max_delay`;
- the `limit`-th wrong token within the window blocks the address for `block` seconds (each further block
  twice as long, up to `max_block`): until then every request from it is refused (HTTP 429 with
  Retry-After) without looking at its token, so a right guess cannot be told from a wrong one;
- a right token from the address (when it is not blocked) forgets everything about it.
A right token from another address is never slowed: the state is per address. The state is an LRU of at
most `addresses` entries (the least recently seen address is forgotten first), so a flood of addresses
cannot grow it without bound. WARNING lines are decided here too (`Verdict.log`): one at an address's first
wrong token of a window and one when it is blocked, at most `log_lines` per `log_period` over all
addresses; the rest are counted (`Verdict.suppressed`). Tokens never reach this module.

The aiohttp middleware that applies it is in hub.control.api. Imports only the standard library.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Policy:
    """The figures (docs/control.md); the defaults are the hub's."""

    free: int = 3
    """Wrong tokens per window answered without delay."""
    first_delay: float = 0.25
    """Seconds before answering the first slowed wrong token; doubles with each further one."""
    max_delay: float = 4.0
    limit: int = 10
    """Wrong tokens within `window` that block the address (the limit-th is still answered 401)."""
    window: float = 60.0
    """Seconds from an address's first wrong token during which its wrong tokens are counted together."""
    block: float = 60.0
    """Seconds of the first block; each further block of the same address lasts twice as long."""
    max_block: float = 3600.0
    """Longest block; also how long an address must stay quiet after a block before its count of blocks is
    forgotten."""
    addresses: int = 10_000
    """Most addresses remembered (LRU)."""
    log_lines: int = 10
    log_period: float = 60.0
    """At most `log_lines` WARNING lines per `log_period` seconds, over all addresses."""


DEFAULT = Policy()


class Verdict(NamedTuple):
    """What to do with one wrong token."""

    delay: float
    """Seconds to wait before answering it (401)."""
    failures: int
    """Wrong tokens from the address in the current window, this one included."""
    blocked_for: float
    """Above 0: this wrong token blocked the address for that many seconds."""
    log: bool
    """Whether to log a WARNING line for it."""
    suppressed: int
    """WARNING lines left out (over all addresses) since the last one logged; say so on this one."""


@dataclass
class _Entry:
    failures: int = 0
    since: float = 0.0
    blocked_until: float = 0.0
    blocks: int = 0


class Throttle:
    """Wrong-token state per client address, bounded; `clock` gives seconds (time.monotonic by default)."""

    def __init__(self, policy: Policy = DEFAULT, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._logged: deque[float] = deque()
        self._suppressed = 0
        self.counts = {"wrong_token": 0, "blocked": 0, "refused": 0}
        """Totals: wrong tokens, blocks started, requests refused while blocked (429)."""

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: str) -> float:
        """Seconds the address must still wait (a 429 is answered and counted), or 0 if it may try."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        left = entry.blocked_until - self.clock()
        if left <= 0:
            return 0.0
        self._entries.move_to_end(key)
        self.counts["refused"] += 1
        return left

    def success(self, key: str) -> None:
        """A right token from the address: forget it (call only when retry_after said 0)."""
        self._entries.pop(key, None)

    def failure(self, key: str) -> Verdict:
        """A wrong token from the address (call only when retry_after said 0)."""
        p, now = self.policy, self.clock()
        self.counts["wrong_token"] += 1
        entry = self._touch(key)
        if entry.blocked_until and now >= entry.blocked_until:  # a block has ended: a new window
            entry.failures = 0
            if now - entry.blocked_until >= p.max_block:
                entry.blocks = 0
            entry.blocked_until = 0.0
        if entry.failures and now - entry.since >= p.window:
            entry.failures = 0
        if entry.failures == 0:
            entry.since = now
        entry.failures += 1
        n = entry.failures
        delay = 0.0 if n <= p.free else min(p.max_delay, p.first_delay * 2.0 ** min(n - p.free - 1, 60))
        blocked_for = 0.0
        if n >= p.limit:
            entry.blocks += 1
            blocked_for = min(p.max_block, p.block * 2.0 ** min(entry.blocks - 1, 60))
            entry.blocked_until = now + blocked_for
            self.counts["blocked"] += 1
        log, suppressed = (self._may_log(now) if n == 1 or blocked_for else (False, 0))
        return Verdict(delay, n, blocked_for, log, suppressed)

    def _touch(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
            while len(self._entries) > self.policy.addresses:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry

    def _may_log(self, now: float) -> tuple[bool, int]:
        while self._logged and now - self._logged[0] >= self.policy.log_period:
            self._logged.popleft()
        if len(self._logged) >= self.policy.log_lines:
            self._suppressed += 1
            return False, 0
        self._logged.append(now)
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed


def client_key(address: str | None) -> str:
    """The throttling key of a client address: itself, an IPv6 address's /64 (one host usually holds a whole
    /64), the IPv4 address inside an IPv4-mapped IPv6 one; `unknown` when there is none (a Unix socket)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
