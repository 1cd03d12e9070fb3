"""The northbound documents (hub/north.py) against their JSON Schema (hub/north.schema.json, draft 2020-12):
every document the feed sends validates, the schema refuses what the contract refuses, and the pure parts
(topics, signature, refusals) do what docs/integrators.md says. No servers here: test_mqtt.py and
test_webhooks.py send the same documents through a real mosquitto and a real HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hub import north
from hub.config import NorthConfig, WebhookConfig
from hub.detect.events import KINDS, SEVERITIES
from tests.north import samples

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads(north.SCHEMA.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def valid(document: Any) -> bool:
    return VALIDATOR.is_valid(document)


class Capture:
    """A stand-in for MqttSource.publish: what the feed hands to the connection."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []

    def __call__(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        self.messages.append((topic, payload, qos, retain))


async def fed(feed: north.Northbound, capture: Capture) -> list[tuple[str, bytes, int, bool]]:
    """Run the feed until what it was given is handed over; the messages."""
    task = asyncio.create_task(feed.run())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not feed.fields()["north_mqtt_pending"]:
            break
    await feed.close()
    await task
    return capture.messages


ALERTS = [
    samples.alert("firing"),
    samples.alert("firing", quantity=None, district=None, kind="silent", severity="critical", evidence={}),
    samples.alert("acknowledged"),
    samples.alert("acknowledged", acked_by=None, note=None, count=7),
    samples.alert("resolved"),
    samples.alert("resolved", acked_at=None, acked_by=None, note=None),
    samples.alert("firing", message='Ünïcode ✓ "quoted"\nnew line', note="x" * 200, acked_at=samples.T0),
]
DISTRICTS = [
    samples.district(),
    samples.district("", aqi=None, quantities={}, coverage=0.0, expected=0, online=0, on_time=0, open_alerts=0,
                     consumption={"water_m3_h": None, "energy_kw": None, "heat_kw": None}),
    samples.district("north-1", coverage=1, aqi=0),
]


@pytest.mark.parametrize("data", ALERTS)
async def test_every_alert_document_validates(data: dict[str, Any]) -> None:
    capture = Capture()
    feed = north.Northbound(NorthConfig(), "ast-01", capture, clock=lambda: 1_796_000_123.456)
    feed.alert(data)
    messages = await fed(feed, capture)
    documents = [json.loads(payload) for _, payload, _, _ in messages if payload]
    assert documents == [{"v": 1, "type": "alert", "site": "ast-01", "sent_at": 1_796_000_123_456, "data": data}]
    for document in documents:
        VALIDATOR.validate(document)
    assert all(topic == "qala/ast-01/_north/alerts/a-0123456789ab" and qos == 1 for topic, _, qos, _ in messages)


@pytest.mark.parametrize("data", DISTRICTS)
async def test_every_district_summary_validates(data: dict[str, Any]) -> None:
    capture = Capture()
    feed = north.Northbound(NorthConfig(), "ast-01", capture)
    feed.summary(data)
    [(topic, payload, qos, retain)] = await fed(feed, capture)
    document = json.loads(payload)
    VALIDATOR.validate(document)
    assert (document["type"], document["data"], qos, retain) == ("district_summary", data, 1, True)
    assert topic == "qala/ast-01/_north/districts/" + north.district_level(data["district"])


def test_the_schema_is_draft_2020_12_and_every_kind_and_severity_fits_it() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for kind in KINDS:
        assert valid(north.envelope(north.ALERT, "s", 0, samples.alert(kind=kind))), kind
    assert set(SCHEMA["$defs"]["Alert"]["properties"]["severity"]["enum"]) == set(SEVERITIES)
    assert all(kind in SCHEMA["$defs"]["Alert"]["properties"]["kind"]["description"] for kind in KINDS)


def test_the_schema_ships_in_the_package() -> None:
    assert north.SCHEMA == REPO / "hub" / "north.schema.json"
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.json" in package_data["*"]


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


@pytest.mark.parametrize(("why", "document"), [
    ("no version", _without(north.envelope(north.ALERT, "s", 0, samples.alert()), "v")),
    ("version 2", north.envelope(north.ALERT, "s", 0, samples.alert()) | {"v": 2}),
    ("a key the contract has not", north.envelope(north.ALERT, "s", 0, samples.alert()) | {"extra": 1}),
    ("an alert typed as a summary", north.envelope(north.SUMMARY, "s", 0, samples.alert())),
    ("a summary typed as an alert", north.envelope(north.ALERT, "s", 0, samples.district())),
    ("a bad site", north.envelope(north.ALERT, "no site", 0, samples.alert())),
    ("sent_at in seconds, as a float", north.envelope(north.ALERT, "s", 0, samples.alert()) | {"sent_at": 1.5}),
    ("an alert without its note key", north.envelope(north.ALERT, "s", 0, _without(samples.alert(), "note"))),
    ("an alert with an extra key", north.envelope(north.ALERT, "s", 0, samples.alert(extra=1))),
    ("an unknown state", north.envelope(north.ALERT, "s", 0, samples.alert(state="open"))),
    ("an unknown severity", north.envelope(north.ALERT, "s", 0, samples.alert(severity="major"))),
    ("a bad id", north.envelope(north.ALERT, "s", 0, samples.alert(id="alert-1"))),
    ("resolved without resolved_at", north.envelope(north.ALERT, "s", 0, samples.alert("resolved", resolved_at=None))),
    ("firing with resolved_at", north.envelope(north.ALERT, "s", 0, samples.alert(resolved_at=samples.T0))),
    ("acknowledged without acked_at", north.envelope(north.ALERT, "s", 0, samples.alert("acknowledged",
                                                                                      acked_at=None))),
    ("a note past 200 characters", north.envelope(north.ALERT, "s", 0, samples.alert(note="x" * 201))),
    ("count 0", north.envelope(north.ALERT, "s", 0, samples.alert(count=0))),
    ("coverage above 1", north.envelope(north.SUMMARY, "s", 0, samples.district(coverage=1.2))),
    ("a negative count", north.envelope(north.SUMMARY, "s", 0, samples.district(online=-1))),
    ("district null", north.envelope(north.SUMMARY, "s", 0, samples.district(None))),
    ("consumption without heat", north.envelope(north.SUMMARY, "s", 0, samples.district(
        consumption={"water_m3_h": 1.0, "energy_kw": 2.0}))),
    ("a quantity without on_time", north.envelope(north.SUMMARY, "s", 0, samples.district(
        quantities={"pm25": {"expected": 1}}))),
])
def test_the_schema_refuses_what_the_contract_refuses(why: str, document: dict[str, Any]) -> None:
    assert not valid(document), why


def test_topics() -> None:
    assert north.alert_topic("ast-01", "a-0123456789ab") == "qala/ast-01/_north/alerts/a-0123456789ab"
    assert north.district_topic("ast-01", "") == "qala/ast-01/_north/districts/_none"
    assert north.district_level("north-1") == "north-1"
    assert north.district_level("Old Town") == "Old%20Town"
    assert north.district_level("a/b+c#") == "a%2Fb%2Bc%23"
    assert north.district_level("_none") == "%5Fnone"  # no district may take the name of "none"
    assert north.district_level("Zürich") == "Z%C3%BCrich"
    assert north.district_level("100%") == "100%25"
    for bad in ("a/b", "+", "#", "", None, "x" * 65):
        with pytest.raises(north.DocumentError, match=r"data\.id"):
            north.alert_topic("s", bad)


def test_the_signature_is_an_hmac_of_delivery_timestamp_and_body() -> None:
    body = b'{"v":1}'
    expected = hmac.new(b"k" * 16, b"d-1.1796000000." + body, hashlib.sha256).hexdigest()
    assert north.signature(b"k" * 16, "d-1", 1_796_000_000, body) == "sha256=" + expected


def test_origin_shows_no_login_path_or_query() -> None:
    assert north.origin("https://user:pw@sc.example:8443/hooks/T0K3N?key=abc") == "https://sc.example:8443"
    assert north.origin("http://10.0.0.5/x") == "http://10.0.0.5"


@pytest.mark.parametrize(("event", "data", "why"), [
    (north.ALERT, samples.alert(id=None), "data.id"),
    (north.ALERT, samples.alert(id="a/b"), "data.id"),
    (north.ALERT, samples.alert(state="open"), "data.state"),
    (north.ALERT, samples.alert(count=float("nan")), "not JSON"),
    (north.ALERT, samples.alert(evidence={"v": object()}), "not JSON"),
    (north.SUMMARY, samples.district(None), "data.district"),
    (north.SUMMARY, samples.district(coverage=float("inf")), "not JSON"),
    (north.SUMMARY, ["not", "an", "object"], "data: must be a JSON object"),
])
async def test_a_document_that_cannot_be_sent_is_refused_counted_and_never_raised(
    event: str, data: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    capture = Capture()
    feed = north.Northbound(NorthConfig(), "s", capture)
    (feed.alert if event == north.ALERT else feed.summary)(data)
    assert feed.fields()["north_refused"] == 1
    assert why in caplog.text
    assert await fed(feed, capture) == []


async def test_alert_and_summary_return_at_once_and_never_raise_after_close() -> None:
    capture = Capture()
    feed = north.Northbound(NorthConfig(), "s", capture)
    await feed.close()
    feed.alert(samples.alert())
    feed.summary(samples.district())
    assert capture.messages == []
    assert feed.fields()["north_refused"] == 0


async def test_mqtt_summaries_off_and_mqtt_off() -> None:
    capture = Capture()
    feed = north.Northbound(NorthConfig(mqtt_summaries=False), "s", capture)
    feed.summary(samples.district())
    feed.alert(samples.alert())
    assert [topic for topic, *_ in await fed(feed, capture)] == ["qala/s/_north/alerts/a-0123456789ab"]
    capture = Capture()
    feed = north.Northbound(NorthConfig(mqtt=False), "s", capture)
    assert not feed.enabled
    feed.alert(samples.alert())
    assert await fed(feed, capture) == []


async def test_while_the_broker_is_away_only_the_latest_document_per_topic_waits() -> None:
    capture = Capture()
    up = False
    feed = north.Northbound(NorthConfig(), "s", capture, connected=lambda: up)
    task = asyncio.create_task(feed.run())
    feed.alert(samples.alert("firing"))
    feed.alert(samples.alert("acknowledged"))
    feed.alert(samples.alert("resolved"))
    for _ in range(50):
        feed.summary(samples.district(online=_ % 12))
    await asyncio.sleep(0.2)
    assert capture.messages == []
    assert feed.fields()["north_mqtt_superseded"] == 2 + 49
    up = True
    await asyncio.sleep(north.WAIT_CONNECTED + 0.3)
    got = [(topic.rsplit("/", 2)[-2], json.loads(payload)["data"]["state"] if payload and "alerts" in topic else
            payload[:1], retain) for topic, payload, _, retain in capture.messages]
    assert got == [("alerts", "resolved", False), ("alerts", b"", True), ("districts", b"{", True)]
    assert json.loads(capture.messages[-1][1])["data"]["online"] == 49 % 12
    assert feed.fields()["north_mqtt_published"] == 3
    await feed.close()
    await task


def test_no_secret_or_url_in_reprs() -> None:
    hook = WebhookConfig(url="https://sc.example/hook/T0K3N", secret="s3cr3t-s3cr3t-s3cr3t", origin="https://sc.example")
    feed = north.Northbound(NorthConfig(webhooks=(hook,)), "s", None)
    shown = repr(hook) + repr(NorthConfig(webhooks=(hook,))) + repr(feed) + repr(feed._hooks)
    assert "s3cr3t" not in shown
    assert "T0K3N" not in shown
    assert "https://sc.example" in shown


def test_a_ca_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    hook = WebhookConfig(url="https://x/", secret="s" * 16, ca_file=tmp_path / "missing.pem")
    with pytest.raises(north.NorthError, match=r"north.webhooks\[0\].ca_file: cannot use .*missing.pem"):
        north.Northbound(NorthConfig(webhooks=(hook,)), "s", None)


async def test_a_nan_in_an_alerts_evidence_becomes_null_and_the_alert_goes() -> None:
    capture = Capture()
    feed = north.Northbound(NorthConfig(), "s", capture)
    feed.alert(samples.alert(evidence={"mad": float("nan"), "values": [1.0, float("inf")], "n": 3}))
    [(_, payload, _, _)] = await fed(feed, capture)
    document = json.loads(payload)
    assert document["data"]["evidence"] == {"mad": None, "values": [1.0, None], "n": 3}
    VALIDATOR.validate(document)
    assert feed.fields()["north_refused"] == 0
