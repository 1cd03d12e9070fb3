"""Safe mode: the board cannot run its config, so it drives nothing and says exactly why.

The error goes to the console every minute and, when the config still names a usable site, device and
broker, retained on the board's status topic (`{"state":"safe","error":...}`) after every (re)connect.
Actuators are never touched in this mode. Imported only when needed.
"""

import asyncio

from firmware import VERSION, log
from firmware.app import guard
from firmware.mqtt import client_for
from protocols import status, topics


async def run(impl, error, reach, boot):
    """Never returns."""
    log.error("safe mode: %s", error)
    if reach is None:
        log.error("safe mode: no usable site/device/mqtt in the config; reporting on the console only")
        while True:
            await asyncio.sleep(60)
            log.error("safe mode: %s", error)
    site, device, mqtt, wifi = reach
    client = client_for(mqtt, site, device)
    client.can_connect = impl.link_up
    topic = topics.build(site, device, topics.STATUS)

    async def report(c, session):
        while impl.now_ms() is None:  # noqa: ASYNC110 - the clock has no event to wait on
            await asyncio.sleep(1)
        c.publish_nowait(topic, status.encode_status(status.SAFE, impl.now_ms(), boot, VERSION, None, error),
                         True)

    if wifi is not None:
        guard("network", lambda: impl.network({"wifi": wifi, "ntp_host": "pool.ntp.org"}))
    await client.run(report)
