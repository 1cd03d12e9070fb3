"""InfluxDB 1.x write client: POST line protocol to `/write?db=&rp=&precision=ms` with aiohttp.

One client (one connection pool) per hub, used by the single writer task: influxd 1.6.7 answers small
concurrent writes with `500 engine: error syncing wal`, so the hub never writes concurrently. Credentials
go in the `u`/`p` query parameters that influxd 1.x documents. The server's error text (`{"error": ...}`)
is carried in the raised WriteError, so the dead-letter file says why a batch was refused.

Imports aiohttp and hub.sinks.base; knows nothing of the spool or MQTT.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import aiohttp

from hub.sinks.base import TransientWriteError, classify
from hub.sinks.lineproto import PRECISION

if TYPE_CHECKING:
    from hub.config import InfluxConfig


def _server_message(text: str) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(answer, dict) and "error" in answer:
        return str(answer["error"])[:500]
    return text.strip()[:500]


class InfluxV1Sink:
    def __init__(self, config: InfluxConfig) -> None:
        self.url = config.url + "/write"
        self.params = {"db": config.database, "precision": PRECISION}
        if config.retention_policy:
            self.params["rp"] = config.retention_policy
        if config.username is not None:
            self.params["u"] = config.username
            self.params["p"] = config.password or ""
        self.timeout = aiohttp.ClientTimeout(total=config.timeout)
        self.description = f"influxdb v1 {config.url} db={config.database}"
        self._session: aiohttp.ClientSession | None = None

    async def write(self, body: bytes) -> None:
        if self._session is None:
            # trust_env=False: a loopback or site-LAN database must never be reached through a proxy
            self._session = aiohttp.ClientSession(timeout=self.timeout, trust_env=False)
        try:
            async with self._session.post(
                self.url, params=self.params, data=body, headers={"Content-Type": "text/plain; charset=utf-8"}
            ) as response:
                if 200 <= response.status < 300:
                    return
                text = await response.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientWriteError(f"{type(exc).__name__}: {exc}") from exc
        raise classify(response.status, _server_message(text))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
