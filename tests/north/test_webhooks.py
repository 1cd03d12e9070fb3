"""The northbound webhooks (hub/north.py) against a real HTTP server (aiohttp's, in the test's event loop):
signatures that verify, retries with one delivery id, giving up on a refusal, the bounded queue, the shutdown,
TLS with a private CA, no secret in any log line, and the receiver of docs/integrators.md run as written."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from http.server import HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from aiohttp import web

from hub import north
from hub.config import NorthConfig, WebhookConfig
from hub.trust import tls
from simulators.services import free_port
from tests.north import samples

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

REPO = Path(__file__).resolve().parents[2]
SECRET = "wh-secret-0123456789abcdef"
TOKEN = "T0K3N-in-the-path"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(north.SCHEMA.read_text()))


class Receiver:
    """An HTTP endpoint that records every request and answers from a script: (status, delay s, headers)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.script: deque[tuple[int, float, dict[str, str]]] = deque()
        self.otherwise = (204, 0.0, {})
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body, time.time()))
        status, delay, headers = self.script.popleft() if self.script else self.otherwise
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, headers=headers)

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, _ in self.requests]


async def serve(receiver: Receiver, context: ssl.SSLContext | None = None) -> web.AppRunner:
    app = web.Application()
    app.router.add_post(f"/hooks/{TOKEN}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"{'https' if context else 'http'}://127.0.0.1:{port}/hooks/{TOKEN}?key={TOKEN}"
    return runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    runner = await serve(got)
    yield got
    await runner.cleanup()


def hook(url: str, **options: Any) -> WebhookConfig:
    values: dict[str, Any] = {"url": url, "secret": SECRET, "origin": north.origin(url), "timeout": 2.0,
                              "retry_min": 0.01, "retry_max": 0.05, "max_retries": 8} | options
    return WebhookConfig(**values)


class Feed:
    """A running Northbound without MQTT; closed (and its task awaited) at the end of the test."""

    def __init__(self, *hooks: WebhookConfig, start: bool = True) -> None:
        self.north = north.Northbound(NorthConfig(mqtt=False, webhooks=hooks), "ast-01", None)
        self.task: asyncio.Task[None] | None = None
        if start:
            self.start()

    def start(self) -> None:
        self.task = asyncio.create_task(self.north.run())

    async def close(self, timeout: float = north.CLOSE_TIMEOUT) -> None:  # noqa: ASYNC109 - the feed's drain
        await self.north.close(timeout)
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):  # close() stopped it past its timeout
                await self.task

    def count(self, name: str) -> float:
        return self.north.fields()[name]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def check_signed(headers: dict[str, str], body: bytes, secret: str = SECRET) -> None:
    """The receiver's check, written out from the contract (not with hub.north)."""
    signed = f"{headers['X-Qala-Delivery']}.{headers['X-Qala-Timestamp']}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-Qala-Signature"] == "sha256=" + expected
    assert abs(time.time() - int(headers["X-Qala-Timestamp"])) <= 5


# ------------------------------------------------------------------------------------------ delivery


async def test_a_document_arrives_signed_with_its_headers(receiver: Receiver) -> None:
    feed = Feed(hook(receiver.url))
    feed.north.alert(samples.alert())
    feed.north.summary(samples.district())
    await until(lambda: len(receiver.requests) == 2)
    await feed.close()
    (alert_headers, alert_body, _), (summary_headers, summary_body, _) = receiver.requests
    for headers, body, event in ((alert_headers, alert_body, "alert"), (summary_headers, summary_body, "summary")):
        check_signed(headers, body)
        assert headers["X-Qala-Event"] == event
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"].startswith("qala-hub/")
        assert uuid.UUID(headers["X-Qala-Delivery"]).version == 4
        VALIDATOR.validate(json.loads(body))
    assert alert_headers["X-Qala-Delivery"] != summary_headers["X-Qala-Delivery"]
    assert [d["data"] for d in receiver.documents()] == [samples.alert(), samples.district()]
    assert (feed.count("north_webhook_sent"), feed.count("north_webhook_failed")) == (2, 0)


async def test_5xx_is_retried_with_one_delivery_id_until_it_succeeds(receiver: Receiver) -> None:
    receiver.script.extend([(500, 0, {}), (503, 0, {}), (502, 0, {})])
    feed = Feed(hook(receiver.url))
    feed.north.alert(samples.alert())
    await until(lambda: len(receiver.requests) == 4)
    feed.north.alert(samples.alert("resolved"))
    await until(lambda: len(receiver.requests) == 5)
    await feed.close()
    deliveries = [headers["X-Qala-Delivery"] for headers, _, _ in receiver.requests]
    assert len(set(deliveries[:4])) == 1  # one document, four attempts, one id
    assert deliveries[4] != deliveries[0]
    bodies = {body for _, body, _ in receiver.requests[:4]}
    assert len(bodies) == 1  # the same bytes every time (sent_at included)
    for headers, body, _ in receiver.requests:
        check_signed(headers, body)  # each attempt signed with its own timestamp
    assert [d["data"]["state"] for d in receiver.documents()] == ["firing"] * 4 + ["resolved"]
    assert (feed.count("north_webhook_sent"), feed.count("north_webhook_retries"),
            feed.count("north_webhook_failed")) == (2, 3, 0)


async def test_408_429_and_no_answer_are_retried_and_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.script.extend([(408, 0, {}), (429, 0, {"Retry-After": "1"}), (204, 1.0, {})])
    feed = Feed(hook(receiver.url, timeout=0.3, retry_max=2.0))
    feed.north.alert(samples.alert())
    await until(lambda: len(receiver.requests) == 4)
    await until(lambda: feed.count("north_webhook_sent") == 1)
    await feed.close()
    times = [t for _, _, t in receiver.requests]
    assert times[2] - times[1] >= 0.9  # Retry-After: 1 (retry_max 2 lets it through)
    assert (feed.count("north_webhook_retries"), feed.count("north_webhook_failed")) == (3, 0)


@pytest.mark.parametrize(("status", "says"), [
    (400, "HTTP 400"), (401, "HTTP 401"), (404, "HTTP 404"), (422, "HTTP 422"),
    (302, "HTTP 302: redirects are not followed"),
])
async def test_a_refusal_gives_the_document_up_at_once_and_the_next_goes(
    receiver: Receiver, status: int, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script.append((status, 0, {"Location": "http://elsewhere.example/"}))
    feed = Feed(hook(receiver.url))
    feed.north.alert(samples.alert())
    feed.north.alert(samples.alert("acknowledged"))
    await until(lambda: len(receiver.requests) == 2)
    await until(lambda: feed.count("north_webhook_sent") == 1)
    await feed.close()
    assert [d["data"]["state"] for d in receiver.documents()] == ["firing", "acknowledged"]
    assert (feed.count("north_webhook_failed"), feed.count("north_webhook_retries")) == (1, 0)
    assert f"alert given up at once: {says}" in caplog.text


async def test_retries_end_after_max_retries(receiver: Receiver) -> None:
    receiver.otherwise = (500, 0, {})
    feed = Feed(hook(receiver.url, max_retries=2))
    feed.north.alert(samples.alert())
    await until(lambda: feed.count("north_webhook_failed") == 1)
    await feed.close()
    assert len(receiver.requests) == 3
    assert feed.count("north_webhook_retries") == 2


async def test_a_receiver_that_is_not_there_is_retried_then_given_up_and_no_secret_is_logged(
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hub.north")
    url = f"http://user:pa55word@127.0.0.1:{free_port()}/hooks/{TOKEN}?key={TOKEN}"
    feed = Feed(hook(url, max_retries=3))
    feed.north.alert(samples.alert())
    feed.north.summary(samples.district())
    await until(lambda: feed.count("north_webhook_failed") == 2)
    await feed.close()
    assert feed.count("north_webhook_retries") == 6
    assert "connection failed" in caplog.text
    assert re.search(r"webhook 0 \(http://127\.0\.0\.1:\d+\)", caplog.text)
    for secret in (SECRET, TOKEN, "pa55word", "user:"):
        assert secret not in caplog.text
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 2  # one "retrying" and one "given up" a minute, the rest DEBUG


# ------------------------------------------------------------------------------------------ the queue


async def test_the_queue_bound_drops_the_oldest_summaries_first_then_the_oldest_alerts(receiver: Receiver) -> None:
    feed = Feed(hook(receiver.url, queue=5), start=False)  # not sending yet: everything waits

    def alert(n: int) -> dict[str, Any]:
        return samples.alert(id=f"a-{n:012x}")

    def summary(name: str, online: int = 1) -> dict[str, Any]:
        return samples.district(name, online=online)

    feed.north.summary(summary("A"))
    feed.north.alert(alert(1))
    feed.north.summary(summary("B"))
    feed.north.alert(alert(2))
    feed.north.summary(summary("C"))
    feed.north.summary(summary("C", online=7))  # replaces the waiting summary of C
    assert feed.count("north_webhook_superseded") == 1
    feed.north.alert(alert(3))
    feed.north.alert(alert(4))  # 7 waiting: A, then B dropped
    assert feed.count("north_webhook_dropped") == 2
    feed.north.alert(alert(5))  # C goes
    feed.north.alert(alert(6))  # no summary left: the oldest alert goes
    assert feed.count("north_webhook_dropped") == 4
    assert feed.count("north_webhook_queued") == 5
    feed.start()
    await until(lambda: len(receiver.requests) == 5)
    await feed.close()
    assert [d["data"]["id"] for d in receiver.documents()] == [alert(n)["id"] for n in (2, 3, 4, 5, 6)]
    assert feed.count("north_webhook_queued") == 0


async def test_each_webhook_gets_the_events_it_asked_for(receiver: Receiver) -> None:
    other = Receiver()
    runner = await serve(other)
    try:
        feed = Feed(hook(receiver.url, events=("alert",)), hook(other.url, events=("summary",)))
        feed.north.alert(samples.alert())
        feed.north.summary(samples.district())
        await until(lambda: len(receiver.requests) == 1 and len(other.requests) == 1)
        await asyncio.sleep(0.1)
        await feed.close()
    finally:
        await runner.cleanup()
    assert [d["type"] for d in receiver.documents()] == ["alert"]
    assert [d["type"] for d in other.documents()] == ["district_summary"]


async def test_close_sends_what_waits_then_counts_what_could_not_go(receiver: Receiver) -> None:
    feed = Feed(hook(receiver.url))
    for n in range(3):
        feed.north.alert(samples.alert(id=f"a-{n:012x}"))
    await feed.close()  # the receiver answers: all three go before close returns
    assert len(receiver.requests) == 3
    assert feed.count("north_webhook_dropped") == 0

    receiver.otherwise = (503, 0, {})
    feed = Feed(hook(receiver.url, retry_min=0.5, retry_max=0.5, max_retries=100))
    for n in range(3):
        feed.north.alert(samples.alert(id=f"a-{n:012x}"))
    started = time.monotonic()
    await feed.close(timeout=0.3)
    assert time.monotonic() - started < 2
    assert feed.count("north_webhook_dropped") == 3  # the one being retried and the two behind it
    assert feed.count("north_webhook_queued") == 0


# ------------------------------------------------------------------------------------------ TLS


async def test_https_with_a_private_ca(tmp_path: Path) -> None:
    ca_pem, ca_key = tls.make_ca("test webhook CA")
    cert_pem, cert_key = tls.make_server_cert(ca_pem, ca_key, ["localhost"], ["127.0.0.1"])
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(cert_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    got = Receiver()
    runner = await serve(got, context)
    try:
        trusted = Feed(hook(got.url, ca_file=tmp_path / "ca.pem"))
        trusted.north.alert(samples.alert())
        await until(lambda: trusted.count("north_webhook_sent") == 1)
        await trusted.close()
        untrusted = Feed(hook(got.url, max_retries=1))  # the system's CAs do not know this one
        untrusted.north.alert(samples.alert())
        await until(lambda: untrusted.count("north_webhook_failed") == 1)
        await untrusted.close()
    finally:
        await runner.cleanup()
    assert len(got.requests) == 1


# ------------------------------------------------------------------------------------------ the receiver in the docs


def docs_receiver() -> dict[str, Any]:
    """The receiver example of docs/integrators.md, run as written (not as __main__)."""
    text = (REPO / "docs" / "integrators.md").read_text()
    section = text[text.index("### Verifying a webhook"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": "docs_receiver"}
    exec(compile(code.group(1), "docs/integrators.md", "exec"), namespace)
    return namespace


async def test_the_receiver_in_the_docs_verifies_the_feed_and_refuses_forgeries_and_replays() -> None:
    receiver = docs_receiver()
    receiver["SECRET"] = SECRET.encode()
    handled: list[dict[str, Any]] = []
    receiver["handle"] = handled.append
    server = HTTPServer(("127.0.0.1", 0), receiver["Receiver"])
    server.RequestHandlerClass.log_message = lambda *_args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/north"
    try:
        feed = Feed(hook(url))
        feed.north.alert(samples.alert())
        feed.north.summary(samples.district())
        await until(lambda: feed.count("north_webhook_sent") == 2)
        await feed.close()
        assert [d["data"] for d in handled] == [samples.alert(), samples.district()]

        body = north.encode(north.envelope(north.ALERT, "ast-01", 0, samples.alert("resolved")))
        delivery = str(uuid.uuid4())

        def post(body: bytes, timestamp: int, secret: str = SECRET, delivery: str = delivery) -> int:
            headers = {"X-Qala-Delivery": delivery, "X-Qala-Timestamp": str(timestamp),
                       "X-Qala-Signature": north.signature(secret.encode(), delivery, timestamp, body)}
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        now = int(time.time())
        assert await asyncio.to_thread(post, body, now) == 204
        assert len(handled) == 3
        assert await asyncio.to_thread(post, body, now) == 204  # a replay (or a retry): acknowledged, ignored
        assert len(handled) == 3
        other = str(uuid.uuid4())
        forged = body.replace(b'"resolved"', b'"firing"', 1)  # a body changed after signing
        tampered = urllib.request.Request(url, data=forged, method="POST", headers={
            "X-Qala-Delivery": other, "X-Qala-Timestamp": str(now),
            "X-Qala-Signature": north.signature(SECRET.encode(), other, now, body)})
        with pytest.raises(urllib.error.HTTPError, match="401"):
            await asyncio.to_thread(urllib.request.urlopen, tampered, timeout=5)
        assert await asyncio.to_thread(post, body, now - 600, SECRET, str(uuid.uuid4())) == 401  # stale
        assert await asyncio.to_thread(post, body, now, "another-secret-0123456", str(uuid.uuid4())) == 401
        assert len(handled) == 3
    finally:
        server.shutdown()
        server.server_close()
