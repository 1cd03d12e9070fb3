"""The writer's retry policy and dead-letter file, and both write clients' error classification.

Against a local fake HTTP server (aiohttp.web) where a real server cannot produce the case on demand: a 503
or a 500 followed by success, a 429. The 4xx cases are also checked against the real influxd 1.6.7 (an
unknown database, a field type conflict) and the connection-refused case needs no server at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from hub.config import InfluxConfig
from hub.metrics import Metrics
from hub.sinks.base import PermanentWriteError, TransientWriteError, classify
from hub.sinks.influx_v1 import InfluxV1Sink
from hub.sinks.influx_v2 import InfluxV2Sink
from hub.sinks.writer import Writer, batches
from hub.spool import Spool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from simulators.services import Influxd

LINES = b"air,device=d,quality=ok,sensor=s,site=x pm25=1 1795553687000\n"


class FakeInflux:
    """Answers each write with the next status of a script (then 204), recording every request."""

    def __init__(self, script: list[tuple[int, str]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query), await request.read()))
        if self.script:
            status, body = self.script.pop(0)
            return web.Response(status=status, text=body, content_type="application/json")
        return web.Response(status=204)


@pytest.fixture
async def fake() -> AsyncIterator[Any]:
    servers: list[web.AppRunner] = []

    async def start(script: list[tuple[int, str]]) -> tuple[FakeInflux, str]:
        server = FakeInflux(script)
        app = web.Application()
        app.router.add_post("/write", server.handle)
        app.router.add_post("/api/v2/write", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        servers.append(runner)
        port = runner.addresses[0][1]
        return server, f"http://127.0.0.1:{port}"

    yield start
    for runner in servers:
        await runner.cleanup()


def v1(url: str, **extra: Any) -> InfluxConfig:
    return InfluxConfig(api="v1", url=url, database="db", **extra)


def v2(url: str) -> InfluxConfig:
    return InfluxConfig(api="v2", url=url, org="o", bucket="b", token="t")


def test_classify() -> None:
    assert isinstance(classify(500, "x"), TransientWriteError)
    assert isinstance(classify(503, "x"), TransientWriteError)
    assert isinstance(classify(429, "x"), TransientWriteError)
    assert isinstance(classify(408, "x"), TransientWriteError)
    assert isinstance(classify(400, "x"), PermanentWriteError)
    assert isinstance(classify(401, "x"), PermanentWriteError)
    assert isinstance(classify(404, "x"), PermanentWriteError)


def test_batches_split_by_lines() -> None:
    data = b"".join(b"m v=%d %d\n" % (i, i) for i in range(7))
    out = batches(data, 3)
    assert [n for _, n in out] == [3, 3, 1]
    assert b"".join(body for body, _ in out) == data


async def test_v1_sends_db_rp_precision_and_credentials(fake: Any) -> None:
    server, url = await fake([])
    sink = InfluxV1Sink(v1(url, retention_policy="raw", username="u", password="p"))
    await sink.write(LINES)
    await sink.close()
    ((path, query, body),) = server.requests
    assert path == "/write"
    assert query == {"db": "db", "rp": "raw", "precision": "ms", "u": "u", "p": "p"}
    assert body == LINES


@pytest.mark.parametrize("make", [v1, v2])
async def test_clients_classify_server_answers(fake: Any, make: Any) -> None:
    _, url = await fake([(503, '{"error":"busy"}'), (400, '{"error":"bad line","message":"bad line"}')])
    sink = InfluxV1Sink(make(url)) if make is v1 else InfluxV2Sink(make(url))
    with pytest.raises(TransientWriteError, match="503"):
        await sink.write(LINES)
    with pytest.raises(PermanentWriteError, match="bad line") as info:
        await sink.write(LINES)
    assert info.value.status == 400
    await sink.write(LINES)
    await sink.close()


@pytest.mark.parametrize("make", [v1, v2])
async def test_connection_refused_is_transient(make: Any) -> None:
    config = make("http://127.0.0.1:9")
    sink = InfluxV1Sink(config) if make is v1 else InfluxV2Sink(config)
    with pytest.raises(TransientWriteError):
        await sink.write(LINES)
    await sink.close()


def make_writer(tmp_path: Path, sink: Any, batch_size: int = 5000) -> tuple[Writer, Spool, Metrics]:
    spool = Spool(tmp_path / "segments", 1 << 20)
    spool.recover()
    metrics = Metrics()
    writer = Writer(sink, spool, metrics, tmp_path / "dead-letter.lp", batch_size=batch_size,
                    retry_min=0.01, retry_max=0.05)
    return writer, spool, metrics


async def run_until_idle(writer: Writer, spool: Spool) -> None:
    import asyncio  # noqa: PLC0415

    segment = spool.seal()
    assert segment is not None
    writer.submit([segment])
    task = asyncio.create_task(writer.run())
    await asyncio.wait_for(writer.idle.wait(), 10)
    task.cancel()


async def test_writer_retries_5xx_until_accepted_then_removes_the_segment(fake: Any, tmp_path: Path) -> None:
    server, url = await fake([(500, '{"error":"engine: error syncing wal"}'), (503, "{}")])
    writer, spool, metrics = make_writer(tmp_path, InfluxV1Sink(v1(url)))
    spool.append(LINES, 1)
    await run_until_idle(writer, spool)
    await writer.sink.close()
    assert len(server.requests) == 3
    assert (metrics.write_retries, metrics.points_written, metrics.dead_letter_batches) == (2, 1, 0)
    assert spool.used_bytes == 0
    assert not (tmp_path / "dead-letter.lp").exists()


async def test_writer_sends_4xx_batches_to_the_dead_letter_file_without_retry(fake: Any, tmp_path: Path) -> None:
    server, url = await fake([(400, '{"error":"partial write: field type conflict"}')])
    writer, spool, metrics = make_writer(tmp_path, InfluxV1Sink(v1(url)), batch_size=1)
    spool.append(LINES + LINES.replace(b"pm25=1", b"pm25=2"), 2)
    await run_until_idle(writer, spool)
    await writer.sink.close()
    assert len(server.requests) == 2  # the refused batch once, the next batch once
    assert (metrics.dead_letter_batches, metrics.dead_letter_points, metrics.points_written) == (1, 1, 1)
    dead = (tmp_path / "dead-letter.lp").read_text()
    assert dead.startswith("# qala dead letter: time=")
    assert "status=400" in dead
    assert "error=HTTP 400: partial write: field type conflict" in dead
    assert dead.endswith(LINES.decode())
    assert spool.used_bytes == 0


@pytest.mark.integration
async def test_real_influxd_4xx_goes_to_dead_letter(tmp_path: Path, influxd: Influxd, influxd_database: str) -> None:
    """A field type conflict (400) and an unknown database (404), as influxd 1.6.7 answers them."""
    # a string pm25 in the same shard (same week) makes our float pm25 a field type conflict
    influxd.write(influxd_database, 'air,device=e,quality=ok,sensor=s,site=x pm25="text" 1795553680000', "ms")
    sink = InfluxV1Sink(InfluxConfig(api="v1", url=influxd.url, database=influxd_database))
    writer, spool, metrics = make_writer(tmp_path, sink)
    spool.append(LINES, 1)
    await run_until_idle(writer, spool)
    missing = InfluxV1Sink(InfluxConfig(api="v1", url=influxd.url, database="no_such_database"))
    with pytest.raises(PermanentWriteError, match="database not found") as info:
        await missing.write(LINES)
    assert info.value.status == 404
    await missing.close()
    await writer.sink.close()
    assert metrics.dead_letter_batches == 1
    assert "field type conflict" in (tmp_path / "dead-letter.lp").read_text()
