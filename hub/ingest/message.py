"""A message the hub's broker handed over: what it came on, how to acknowledge it, its topic and payload.

Imports nothing of ours; knows nothing of MQTT's or AMQP's wire formats.
"""

from __future__ import annotations

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
