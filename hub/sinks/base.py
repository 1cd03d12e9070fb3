"""What a write client promises the writer: send one batch of line protocol, or say why not.

A client raises TransientWriteError when a retry may succeed (connection refused or reset, timeout, HTTP
5xx, 429) and PermanentWriteError when it cannot (any other 4xx: a bad line, an unknown database, a bad
token); the writer retries the first with backoff and sends the batch to the dead-letter file on the
second. Imports nothing but typing.
"""

from __future__ import annotations

from typing import Protocol


class WriteError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TransientWriteError(WriteError):
    """Worth retrying: the server was unreachable, overloaded or failed internally."""


class PermanentWriteError(WriteError):
    """The server refused the batch for a reason a retry cannot change (HTTP 4xx other than 408/429)."""


def classify(status: int, message: str) -> WriteError:
    """The error for a non-2xx HTTP status."""
    if status >= 500 or status in (408, 429):
        return TransientWriteError(f"HTTP {status}: {message}", status)
    return PermanentWriteError(f"HTTP {status}: {message}", status)


class Sink(Protocol):
    """A write client for one InfluxDB API."""

    description: str

    async def write(self, body: bytes) -> None:
        """Write newline-separated line protocol with ms timestamps; raise a WriteError on failure."""

    async def close(self) -> None:
        """Release connections."""
