"""The hub's broker behind one small interface: what the service needs of whatever carries the site's messages.

Two implementations, chosen by the config:
- hub.ingest.mqtt.MqttSource: one MQTT broker (mosquitto, the default for one machine), a persistent session,
  PUBACKs after the spool's fsync, a retained will;
- hub.ingest.amqp.AmqpSource ([cluster]): a RabbitMQ cluster over AMQP, the hub one of several competing
  consumers of the site's quorum queue, acknowledgements after the spool's fsync (docs/scale.md).

The service (hub.service) calls only what `Broker` declares, so neither implementation is branched on there.

Imports hub.config and both adapters (aio-pika only when [cluster] is given); knows nothing of payloads, the
spool or InfluxDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from hub.ingest.mqtt import MqttSource
from protocols import liveness, ota, topics

if TYPE_CHECKING:
    import asyncio
    import threading
    from collections import deque
    from collections.abc import Callable, Iterable

    from hub.config import HubConfig
    from hub.ingest.message import Message


class Broker(Protocol):
    queue: deque[Message]
    """Messages received and not yet drained, oldest first."""
    wakeup: asyncio.Event
    """Set when messages arrive (once per read), cleared by `drain`."""
    connected: bool
    subscribed: threading.Event
    """Set once the first connection's subscriptions (or consumers) are in place: what a test or a tool waits
    for, in a thread, before it publishes."""

    def start(self) -> None:
        """Start connecting (and reconnecting, for ever); call from the running event loop."""

    def drain(self, limit: int) -> list[Message]:
        """Take up to `limit` received messages, oldest first."""

    def ack(self, messages: Iterable[Message]) -> int:
        """Acknowledge a drained batch once it is spooled; messages of an earlier connection are skipped (the
        broker delivers them again). Returns how many were acknowledged."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """Send a message to boards (commands, OTA, confirmations, the hub's liveness); QoS 1 survives a
        reconnect."""

    def close_intake(self) -> None:
        """Hand over nothing more; what arrives later stays at the broker, unacknowledged."""

    async def stop(self) -> None:
        """Send the acknowledgements still queued, then disconnect."""


def make_broker(config: HubConfig, on_connect: Callable[[], None]) -> Broker:
    """The broker [mqtt] or [cluster] describes, subscribed to what a hub of the site reads."""
    site = config.site.id
    if config.cluster is not None:
        from hub.ingest.amqp import AmqpSource  # noqa: PLC0415 - aio-pika only with [cluster]

        return AmqpSource(config.cluster, config.mqtt, site, config.trust.hub, on_connect=on_connect)
    telemetry = topics.subscription(site, topics.TELEMETRY)
    if config.mqtt.share_group is not None:
        # hubs of one group split telemetry; each still gets every status (retained births) and ack
        telemetry = f"$share/{config.mqtt.share_group}/{telemetry}"
    return MqttSource(
        config.mqtt,
        [telemetry, topics.subscription(site, topics.STATUS), topics.subscription(site, topics.ACK),
         topics.subscription(site, ota.OTAACK)],
        on_connect=on_connect,
        will=(topics.hub_topic(site, config.trust.hub), liveness.encode_hub_state(liveness.OFFLINE)),
    )
