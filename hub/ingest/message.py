"""A message the hub's broker handed over (what it came on, how to acknowledge it, its topic and payload), and
the inbox both brokers (hub.ingest.mqtt, hub.ingest.amqp) hand messages over in.

Imports the standard library; knows nothing of MQTT's or AMQP's wire formats.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple


class Message(NamedTuple):
    generation: int
    """The connection it came on (hub.broker): an acknowledgement is only sent on that connection."""
    mid: int
    """MQTT's packet id, or AMQP's delivery tag."""
    qos: int
    topic: str
    """The MQTT topic, whichever protocol carried it (`qala/{site}/{device}/{kind}`)."""
    payload: bytes


class Inbox:
    """Messages received and not yet drained, oldest first, and the flag set when some arrive."""

    def __init__(self) -> None:
        self.queue: deque[Message] = deque()
        self.wakeup = asyncio.Event()
        """Set when messages arrive (once per read), cleared by `drain`."""

    def drain(self, limit: int) -> list[Message]:
        """Take up to `limit` received messages, oldest first; clears the wake-up flag."""
        self.wakeup.clear()
        queue = self.queue
        n = min(limit, len(queue))
        return [queue.popleft() for _ in range(n)]
