"""InfluxDB v2 write client: influxdb-client's async client (`InfluxDBClientAsync.write_api`).

Works with InfluxDB 2.x, 3.x, 1.8+ (v2 compatibility API), Cloud and VictoriaMetrics (which ignores org and
bucket). The async write API writes each call at once and does not retry or batch by itself: batching,
retries and the spool are the hub's (influxdb-client's own batching loses data, influxdb-client-python#504).
The client is created on first use, inside the running event loop, as the library requires.

Imports influxdb_client, aiohttp (for its connection errors) and hub.sinks.base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision

from hub.sinks.base import TransientWriteError, classify

if TYPE_CHECKING:
    from hub.config import InfluxConfig


class InfluxV2Sink:
    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self.description = f"influxdb v2 {config.url} org={config.org} bucket={config.bucket}"
        self._client: Any = None
        self._write_api: Any = None

    async def write(self, body: bytes) -> None:
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self.config.url,
                token=self.config.token,
                org=self.config.org,
                timeout=int(self.config.timeout * 1000),
            )
            self._write_api = self._client.write_api()
        try:
            await self._write_api.write(
                bucket=self.config.bucket,
                org=self.config.org,
                record=body,
                write_precision=WritePrecision.MS,
            )
        except InfluxDBError as exc:
            status = getattr(exc, "status", None)
            if status is None and exc.response is not None:
                status = getattr(exc.response, "status", None)
            if status is None:
                raise TransientWriteError(f"{type(exc).__name__}: {exc.message}") from exc
            message = exc.message.decode("utf-8", "replace") if isinstance(exc.message, bytes) else str(exc.message)
            raise classify(int(status), message) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientWriteError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
