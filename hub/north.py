"""The northbound feed for a situation centre: alerts and district summaries as versioned JSON documents,
published on the hub's own MQTT connection and POSTed, signed, to webhooks (docs/integrators.md,
"Northbound feed"; the JSON Schema is hub/north.schema.json, shipped with the package).

Every document is an envelope around the API's JSON (the Alert and District objects of hub.alerts and
hub.coverage, `GET /v1/alerts`, `GET /v1/districts`):

    {"v": 1, "type": "alert" | "district_summary", "site": "...", "sent_at": ms, "data": Alert | District}

`sent_at` is when the hub handed the document to the feed; it is the same on every transport and every
attempt. The pure part: `envelope`, `encode` (compact UTF-8 JSON; NaN and infinities refused), `alert_topic`,
`district_topic`, `district_level`, `signature`.

MQTT (`north.mqtt`), through `publish(topic, payload, qos, retain=...)`, the hub's connection
(hub.ingest.mqtt.MqttSource.publish), QoS 1 throughout:
- `qala/{site}/_north/alerts/{id}`: an open alert (firing, acknowledged) is published retained, so a consumer
  that connects later gets every open alert at once. A resolved alert is published not retained, then its
  retained copy is cleared by an empty retained message; a consumer treats either as "no longer open".
- `qala/{site}/_north/districts/{district}` (`north.mqtt_summaries`): each summary retained, the latest per
  district. Devices without a district are `_none`; other characters than A-Z a-z 0-9 _ - . (and a leading
  `_`) are percent-encoded (`district_level`); `data.district` carries the name itself.
While `connected()` says the broker is away, only the latest document per topic waits here: a newer one of the
same topic replaces it (counted, `north_mqtt_superseded`), so an outage costs memory per topic, not per
document. What was handed to the connection is its business (kept until the broker's PUBACK).

Webhooks (`[[north.webhooks]]`): one worker per webhook sends its documents in order, each a POST of the
document's bytes with
    Content-Type: application/json
    X-Qala-Event: alert | summary
    X-Qala-Delivery: a random UUID, the same on every attempt of one document (receivers de-duplicate on it)
    X-Qala-Timestamp: Unix seconds of this attempt
    X-Qala-Signature: sha256=<hex HMAC-SHA256 with the webhook's secret of "{delivery}.{timestamp}." + body>
The receiver recomputes the HMAC over the exact bytes it received, refuses a timestamp more than 5 minutes
away from its clock (a captured request cannot be replayed later) and remembers delivery ids (a replay
within the 5 minutes, or a retry after a lost answer, is acknowledged and ignored). A 2xx answer delivers the
document; 408, 429, 5xx, a time-out or a connection error is retried after jittered exponential backoff
(hub.backoff: retry_min doubling to retry_max; a 429's or 503's Retry-After in seconds, up to retry_max)
at most max_retries times; any other answer (a 4xx; a 3xx: redirects are not followed, the signed body
goes nowhere else) gives the document up at once. Given-up documents are counted (`north_webhook_failed`) and
logged, at most one WARNING a minute per webhook. Each webhook holds at most `queue` documents waiting: past
it the oldest summary is dropped, an alert only when no summary is left (`north_webhook_dropped`); a new
summary of a district replaces one of the same district still waiting (`north_webhook_superseded`).

`alert(doc)` and `summary(doc)` never block and never raise: a document that cannot be sent (no id, a topic
character, a NaN outside an alert's evidence, where it becomes null) is logged and counted (`north_refused`).
`run()` is the feed's task; `close()` lets the workers send what waits for up to a few seconds, then stops
them (what is left is counted as dropped). `fields()` are the counters and gauges for `qala_hub`
(hub.metrics.Metrics.snapshot's `gauges`). Webhook secrets and URLs (which may hold a token) are never logged
or shown: a webhook is named by its origin.

Imports the standard library, aiohttp (its client), hub.backoff, hub.config (NorthConfig) and
hub.trust.broker (the `_north` topic level); knows nothing of how alerts and summaries are made, nor of the
MQTT connection's inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from hub import __version__
from hub.backoff import Backoff
from hub.config import NorthConfig
from hub.trust.broker import NORTH
from protocols import topics

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from hub.config import HubConfig, WebhookConfig

log = logging.getLogger(__name__)

VERSION = 1
"""The envelope's `v`: changes only when a field is removed or changes meaning."""
ALERT = "alert"
SUMMARY = "summary"
TYPES = {ALERT: "alert", SUMMARY: "district_summary"}
"""X-Qala-Event (and the webhooks' `events`) -> the envelope's `type`."""
OPEN_STATES = ("firing", "acknowledged")
NO_DISTRICT = "_none"
SCHEMA = Path(__file__).with_name("north.schema.json")

EVENT_HEADER = "X-Qala-Event"
DELIVERY_HEADER = "X-Qala-Delivery"
TIMESTAMP_HEADER = "X-Qala-Timestamp"
SIGNATURE_HEADER = "X-Qala-Signature"
TOLERANCE = 300
"""Seconds a receiver accepts between X-Qala-Timestamp and its own clock (docs/integrators.md)."""

CLOSE_TIMEOUT = 5.0
"""Seconds `close` lets the webhooks' workers send what waits before it stops them."""
WAIT_CONNECTED = 0.5
"""Seconds between looks at the MQTT connection while it is down."""
WARN_EVERY = 60.0
"""At most one WARNING a minute per webhook (and for refused documents); the rest are DEBUG."""

COUNTERS = ("north_refused", "north_mqtt_published", "north_mqtt_superseded", "north_webhook_sent",
            "north_webhook_failed", "north_webhook_retries", "north_webhook_dropped", "north_webhook_superseded")
"""The cumulative fields of `fields()`; the gauges are north_mqtt_pending and north_webhook_queued."""

_ALERT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")


class Publish(Protocol):
    """The hub's MQTT publish (hub.ingest.mqtt.MqttSource.publish): queues, never blocks."""

    def __call__(self, topic: str, payload: bytes, qos: int = ..., *, retain: bool = ...) -> None: ...


class DocumentError(ValueError):
    """A document the feed cannot send; the message says which key and why."""


class NorthError(RuntimeError):
    """The feed cannot start as configured (a webhook's ca_file); the message names the key."""


# ------------------------------------------------------------------------------------------ documents


def envelope(event: str, site: str, sent_at: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """The document of one alert (event ALERT) or district summary (SUMMARY) at sent_at (Unix ms)."""
    return {"v": VERSION, "type": TYPES[event], "site": site, "sent_at": sent_at, "data": dict(data)}


def encode(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; DocumentError for what JSON cannot carry (NaN, infinities, other objects)."""
    try:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"not JSON: {exc}") from None


def north_root(site: str) -> str:
    """`qala/{site}/_north`, the feed's topic tree (hub.trust.broker.north_filter lets integrators read it)."""
    topics.check_id("site", site)
    return f"{topics.ROOT}/{site}/{NORTH}"


def alert_topic(site: str, alert_id: object) -> str:
    """`qala/{site}/_north/alerts/{id}`; DocumentError if the id is no safe topic level."""
    if not isinstance(alert_id, str) or not _ALERT_ID.fullmatch(alert_id):
        raise DocumentError(f"data.id: must be 1..64 of A-Z a-z 0-9 _ -, got {alert_id!r}")
    return f"{north_root(site)}/alerts/{alert_id}"


def district_level(district: str) -> str:
    """A district's topic level: `_none` for "" (no district), else the name with every character outside
    A-Z a-z 0-9 _ - . (and a leading `_`) percent-encoded as its UTF-8 bytes (`Old Town` -> `Old%20Town`)."""
    if not district:
        return NO_DISTRICT
    out = []
    for i, char in enumerate(district):
        if char in _SAFE and not (i == 0 and char == "_"):
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode())
    return "".join(out)


def district_topic(site: str, district: object) -> str:
    """`qala/{site}/_north/districts/{district_level(district)}`; DocumentError unless district is a string."""
    if not isinstance(district, str):
        raise DocumentError(f'data.district: must be a string ("" for devices without one), got {district!r}')
    return f"{north_root(site)}/districts/{district_level(district)}"


def signature(secret: bytes, delivery: str, timestamp: int, body: bytes) -> str:
    """X-Qala-Signature: `sha256=` and the hex HMAC-SHA256 of `{delivery}.{timestamp}.` + body."""
    signed = f"{delivery}.{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, without a login: what logs may show of a webhook."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)(?:[^@/?#]*@)?([^/?#]*)", url)
    return match.group(1) + match.group(2) if match else "(a webhook)"


# ------------------------------------------------------------------------------------------ the feed


@dataclass
class _Doc:
    event: str
    key: str
    """The alert's id or the summary's district."""
    body: bytes
    delivery: str


_SENT, _RETRY, _GIVE_UP = "sent", "retry", "give up"


class _Hook:
    """One webhook: its queue, its worker's state."""

    def __init__(self, index: int, config: WebhookConfig) -> None:
        self.index = index
        self.config = config
        self.name = f"{index} ({config.origin or origin(config.url)})"
        self.secret = config.secret.encode()
        self.queue: deque[_Doc] = deque()
        self.current: _Doc | None = None
        self.wakeup = asyncio.Event()
        self.failing = False
        self.last_warning = -math.inf
        self.ssl: ssl.SSLContext | bool = True
        if config.ca_file is not None:
            try:
                self.ssl = ssl.create_default_context(cafile=str(config.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise NorthError(f"north.webhooks[{index}].ca_file: cannot use {config.ca_file}: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None

    def __repr__(self) -> str:
        return f"<webhook {self.name} queued={len(self.queue)}>"

    def waiting(self) -> int:
        return len(self.queue) + (self.current is not None)


class Northbound:
    """The feed: `alert`/`summary` queue and return; `run()` sends; `close()` ends it."""

    def __init__(
        self,
        config: NorthConfig,
        site: str,
        publish: Publish | None,
        *,
        connected: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """publish: the hub's MQTT publish (None: no MQTT); connected: whether that connection is up now (None:
        always); clock: Unix seconds (tests move it). NorthError if a webhook's ca_file cannot be used."""
        self.site = topics.check_id("site", site)
        self.config = config
        self._publish = publish if config.mqtt else None
        self._connected = connected or (lambda: True)
        self._clock = clock
        self._hooks = [_Hook(i, hook) for i, hook in enumerate(config.webhooks)]
        self._pending: dict[str, list[tuple[bytes, bool]]] = {}
        """MQTT topic -> the messages (payload, retain) of its latest document, not yet handed over."""
        self._wakeup = asyncio.Event()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._closing = False
        self._task: asyncio.Task[Any] | None = None
        self._done = asyncio.Event()
        self._last_refusal = -math.inf

    def __repr__(self) -> str:
        return (f"<Northbound site={self.site} mqtt={self._publish is not None} "
                f"webhooks={[hook.name for hook in self._hooks]}>")

    @property
    def enabled(self) -> bool:
        """Whether anything is sent at all (MQTT or a webhook)."""
        return self._publish is not None or bool(self._hooks)

    # ------------------------------------------------------------------------- the hub's side

    def alert(self, alert: Mapping[str, Any]) -> None:
        """Queue an Alert's new state (hub.alerts' JSON); returns at once, never raises."""
        self._take(ALERT, alert)

    def summary(self, district: Mapping[str, Any]) -> None:
        """Queue one district's summary (hub.coverage's District JSON); returns at once, never raises."""
        self._take(SUMMARY, district)

    def fields(self) -> dict[str, float]:
        """Counters since the start and the gauges now, for qala_hub (docs/influxdb.md)."""
        out: dict[str, float] = {name: float(count) for name, count in self._counts.items()}
        out["north_mqtt_pending"] = float(sum(len(messages) for messages in self._pending.values()))
        out["north_webhook_queued"] = float(sum(hook.waiting() for hook in self._hooks))
        return out

    async def run(self) -> None:
        """Send until `close()` (or cancellation): the MQTT pump and one worker per webhook."""
        self._task = asyncio.current_task()
        try:
            if not self.enabled:
                return
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(headers={"User-Agent": f"qala-hub/{__version__}"}, timeout=timeout,
                                             trust_env=False) as session, asyncio.TaskGroup() as group:
                if self._publish is not None:
                    group.create_task(self._pump(self._publish), name="qala-hub.north.mqtt")
                for hook in self._hooks:
                    group.create_task(self._worker(hook, session), name=f"qala-hub.north.webhook{hook.index}")
        finally:
            self._done.set()

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:  # noqa: ASYNC109 - a drain deadline
        """Stop taking documents; hand the MQTT ones over, let the webhooks send what waits for up to `timeout`
        seconds, then stop (what is left is counted in north_webhook_dropped and logged)."""
        self._closing = True
        self._wakeup.set()
        for hook in self._hooks:
            hook.wakeup.set()
        await asyncio.sleep(0)  # a run() task created just now starts first
        task = self._task
        if task is None:
            if self._pending or any(hook.waiting() for hook in self._hooks):  # never ran: send what waits here
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self.run()
        elif not task.done():
            try:
                async with asyncio.timeout(timeout):
                    await self._done.wait()
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        left = sum(hook.waiting() for hook in self._hooks)
        if left:
            self._counts["north_webhook_dropped"] += left
            log.warning("north: stopped with documents not delivered count=%d (counted in north_webhook_dropped)",
                        left)
            for hook in self._hooks:
                hook.queue.clear()
                hook.current = None

    # ------------------------------------------------------------------------- queueing

    def _take(self, event: str, data: Mapping[str, Any]) -> None:
        if self._closing or not self.enabled:
            return
        try:
            self._queue(event, data)
        except DocumentError as exc:
            self._refuse(event, str(exc))
        except Exception:  # the caller is the alert loop: a bug here must not stop it
            log.exception("north: could not queue a document type=%s", TYPES[event])
            self._counts["north_refused"] += 1

    def _refuse(self, event: str, why: str) -> None:
        self._counts["north_refused"] += 1
        now = time.monotonic()
        if now - self._last_refusal >= WARN_EVERY:
            self._last_refusal = now
            log.warning("north: document refused type=%s why=%s (counted in north_refused)", TYPES[event], why)
        else:
            log.debug("north: document refused type=%s why=%s", TYPES[event], why)

    def _queue(self, event: str, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DocumentError(f"data: must be a JSON object (dict), got {type(data).__name__}")
        if event == ALERT:
            key = data.get("id")
            topic = alert_topic(self.site, key)
            state = data.get("state")
            if state not in (*OPEN_STATES, "resolved"):
                raise DocumentError(f"data.state: must be firing, acknowledged or resolved, got {state!r}")
            retained = state in OPEN_STATES
            if isinstance(data.get("evidence"), dict):  # a detector's figure that is NaN must not cost the alert
                data = {**data, "evidence": _finite(data["evidence"])}
        else:
            key = data.get("district")
            topic = district_topic(self.site, key)
            retained = True
        body = encode(envelope(event, self.site, int(self._clock() * 1000), data))
        if self._publish is not None and (event == ALERT or self.config.mqtt_summaries):
            # retained while open (or the latest summary); a resolved alert, then its retained copy cleared
            self._stage(topic, [(body, True)] if retained else [(body, False), (b"", True)])
        for hook in self._hooks:
            if event in hook.config.events:
                self._enqueue(hook, _Doc(event, str(key), body, str(uuid.uuid4())))

    def _stage(self, topic: str, messages: list[tuple[bytes, bool]]) -> None:
        if self._pending.pop(topic, None) is not None:
            self._counts["north_mqtt_superseded"] += 1
        self._pending[topic] = messages
        self._wakeup.set()

    def _enqueue(self, hook: _Hook, doc: _Doc) -> None:
        queue = hook.queue
        if doc.event == SUMMARY:
            for old in queue:
                if old.event == SUMMARY and old.key == doc.key:
                    queue.remove(old)
                    self._counts["north_webhook_superseded"] += 1
                    break
        queue.append(doc)
        while len(queue) > hook.config.queue:
            victim = next((d for d in queue if d.event == SUMMARY), queue[0])
            queue.remove(victim)
            self._counts["north_webhook_dropped"] += 1
            self._warn(hook, "queue full: the oldest %s dropped (counted in north_webhook_dropped) queue=%d",
                       TYPES[victim.event], hook.config.queue)
        hook.wakeup.set()

    def _warn(self, hook: _Hook, text: str, *args: object) -> None:
        now = time.monotonic()
        level = logging.DEBUG
        if now - hook.last_warning >= WARN_EVERY:
            hook.last_warning = now
            level = logging.WARNING
        log.log(level, "north: webhook %s: %s", hook.name, text % args)

    # ------------------------------------------------------------------------- MQTT

    async def _pump(self, publish: Publish) -> None:
        while True:
            if self._pending and self._connected():
                self._hand_over(publish)
            if self._closing:
                self._hand_over(publish)  # the connection keeps QoS 1 messages across an outage
                return
            self._wakeup.clear()
            if self._pending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(WAIT_CONNECTED):
                        await self._wakeup.wait()
            else:
                await self._wakeup.wait()

    def _hand_over(self, publish: Publish) -> None:
        pending, self._pending = self._pending, {}
        for topic, messages in pending.items():
            for payload, retain in messages:
                try:
                    publish(topic, payload, 1, retain=retain)
                except Exception:  # one failed publish must not end the feed
                    log.exception("north: publish failed topic=%s", topic)
                    continue
                self._counts["north_mqtt_published"] += 1

    # ------------------------------------------------------------------------- webhooks

    async def _worker(self, hook: _Hook, session: aiohttp.ClientSession) -> None:
        while True:
            while not hook.queue:
                if self._closing:
                    return
                hook.wakeup.clear()
                await hook.wakeup.wait()
            hook.current = doc = hook.queue.popleft()
            try:
                await self._deliver(hook, session, doc)
            except Exception:  # a bug here must not end the feed, nor the hub's task group with it
                log.exception("north: webhook %s: delivery failed delivery=%s", hook.name, doc.delivery)
                self._counts["north_webhook_failed"] += 1
            hook.current = None

    async def _deliver(self, hook: _Hook, session: aiohttp.ClientSession, doc: _Doc) -> None:
        config = hook.config
        backoff = Backoff(config.retry_min, config.retry_max)
        attempt = 0
        while True:
            outcome, why, wait = await self._post(hook, session, doc)
            if outcome == _SENT:
                self._counts["north_webhook_sent"] += 1
                if hook.failing:
                    hook.failing = False
                    log.info("north: webhook %s: delivering again", hook.name)
                return
            if outcome == _GIVE_UP or attempt >= config.max_retries:
                self._counts["north_webhook_failed"] += 1
                tries = f"after {attempt + 1} attempts" if attempt else "at once"
                self._warn(hook, "%s given up %s: %s delivery=%s (counted in north_webhook_failed)",
                           TYPES[doc.event], tries, why, doc.delivery)
                return
            attempt += 1
            self._counts["north_webhook_retries"] += 1
            delay = backoff.next() if wait is None else min(wait, config.retry_max)
            if not hook.failing:
                hook.failing = True
                log.warning("north: webhook %s: %s, retrying with backoff", hook.name, why)
            else:
                log.debug("north: webhook %s: %s, retry %d in %.1f s", hook.name, why, attempt, delay)
            await asyncio.sleep(delay)

    async def _post(self, hook: _Hook, session: aiohttp.ClientSession,
                    doc: _Doc) -> tuple[str, str, float | None]:
        """(outcome, why, the Retry-After delay if any) of one attempt."""
        config = hook.config
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: doc.event,
            DELIVERY_HEADER: doc.delivery,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(hook.secret, doc.delivery, timestamp, doc.body),
        }
        try:
            async with session.post(config.url, data=doc.body, headers=headers, allow_redirects=False,
                                    ssl=hook.ssl, timeout=aiohttp.ClientTimeout(total=config.timeout)) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After", "")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await response.content.read(65536)  # the answer's start; the rest is discarded
        except TimeoutError:
            return _RETRY, f"no answer within {config.timeout:g} s", None
        except aiohttp.ClientSSLError as exc:
            return _RETRY, f"TLS failed: {_reason(exc)}", None
        except aiohttp.ClientError as exc:
            return _RETRY, f"connection failed: {_reason(exc)}", None
        return _judge(status, retry_after)


def _judge(status: int, retry_after: str) -> tuple[str, str, float | None]:
    """What an answer's status means: delivered, worth a retry (with the Retry-After delay if any) or not."""
    if 200 <= status < 300:
        return _SENT, f"HTTP {status}", None
    if status in (408, 429) or status >= 500:
        wait = float(retry_after) if status in (429, 503) and retry_after.isdigit() else None
        return _RETRY, f"HTTP {status}", wait
    if 300 <= status < 400:
        return _GIVE_UP, f"HTTP {status}: redirects are not followed (set url to the final address)", None
    return _GIVE_UP, f"HTTP {status}", None


def _finite(value: Any) -> Any:
    """value with every NaN or infinite number inside it replaced by None (JSON null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _reason(exc: aiohttp.ClientError) -> str:
    """Why a request failed, without the URL (it may hold a token)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or type(exc.os_error).__name__
    return type(exc).__name__


def make_northbound(config: HubConfig | NorthConfig, site: str, publish: Publish | None, *,
                    connected: Callable[[], bool] | None = None) -> Northbound:
    """The feed of a hub's config (its [north]; a NorthConfig itself also does) for `site`, on the hub's
    MqttSource: `make_northbound(config, config.site.id, source.publish, connected=lambda: source.connected)`.
    NorthError if a webhook's ca_file cannot be used."""
    north = config if isinstance(config, NorthConfig) else config.north
    return Northbound(north, site, publish, connected=connected)
