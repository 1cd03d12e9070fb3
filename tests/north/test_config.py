"""`[north]` in hub.toml (hub/config.py): defaults, a webhook as written, and each mistake named by its key."""

from __future__ import annotations

from typing import Any

import pytest

from hub.config import ConfigError, NorthConfig, parse
from hub.north import make_northbound

BASE: dict[str, Any] = {"site": {"id": "s"}, "mqtt": {"host": "h"}, "trust": {"plain": True},
                        "influxdb": {"api": "v1", "url": "http://x", "database": "d"}, "spool": {"path": "/tmp/sp"}}
HOOK = {"url": "https://sc.example/hooks/T0K3N?key=K", "secret": "${SC_SECRET}"}
ENV = {"SC_SECRET": "s" * 20}


def north(section: dict[str, Any]) -> NorthConfig:
    return parse(BASE | {"north": section}, ENV).north


def test_without_the_section_the_mqtt_feed_is_on_and_there_are_no_webhooks() -> None:
    assert parse(BASE, {}).north == NorthConfig(mqtt=True, mqtt_summaries=True, webhooks=())


def test_a_webhook_as_written_with_its_defaults(tmp_path: Any) -> None:
    config = north({"mqtt": False, "webhooks": [HOOK, HOOK | {"url": "http://10.0.0.5:8080/q/", "events": ["alert"],
                                                              "queue": 5, "max_retries": 0}]})
    assert not config.mqtt
    first, second = config.webhooks
    assert (first.url, first.secret, first.origin) == (HOOK["url"], "s" * 20, "https://sc.example")
    assert (first.events, first.timeout, first.max_retries, first.queue) == (("alert", "summary"), 10.0, 8, 1000)
    assert (second.url, second.events, second.queue, second.max_retries) == ("http://10.0.0.5:8080/q/", ("alert",),
                                                                               5, 0)
    assert "T0K3N" not in repr(config)
    assert "s" * 20 not in repr(config)
    relative = parse(BASE | {"north": {"webhooks": [HOOK | {"ca_file": "ca.pem"}]}}, ENV, base=tmp_path).north
    assert relative.webhooks[0].ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(("hook", "says"), [
    ({"url": "ftp://x/"}, "north.webhooks[0].url: must be an http:// or https:// URL, got 'ftp://x/'"),
    ({"url": "https://"}, "north.webhooks[0].url: must be an http:// or https:// URL"),
    ({"secret": "short"}, "north.webhooks[0].secret: must be at least 16 characters, got 5"),
    ({"secret": "${UNSET}"}, "north.webhooks[0].secret: environment variable UNSET is not set"),
    ({"events": ["alerts"]}, "north.webhooks[0].events: must list one or both of alert, summary, each once"),
    ({"events": []}, "north.webhooks[0].events: must list one or both of alert, summary"),
    ({"events": ["alert", "alert"]}, "north.webhooks[0].events: must list one or both of alert, summary, each once"),
    ({"events": "alert"}, "north.webhooks[0].events: must be an array"),
    ({"timeout": 0}, "north.webhooks[0].timeout: must be 0.1..300 seconds, got 0"),
    ({"max_retries": -1}, "north.webhooks[0].max_retries: must be 0..100, got -1"),
    ({"queue": 0}, "north.webhooks[0].queue: must be 1..1000000, got 0"),
    ({"retry_min": 5.0, "retry_max": 1.0}, "north.webhooks[0].retry_max: must not be below"),
    ({"url": "http://sc.example/", "ca_file": "ca.pem"}, "north.webhooks[0].ca_file: only used with an https:// url"),
    ({"token": "x"}, "north.webhooks[0].token: unknown key"),
])
def test_each_mistake_is_named_by_its_key(hook: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        north({"webhooks": [HOOK | hook]})
    assert str(info.value).startswith(says)


def test_a_missing_secret_and_an_unknown_key_of_the_section() -> None:
    with pytest.raises(ConfigError, match=r"^north\.webhooks\[0\]\.secret: required"):
        north({"webhooks": [{"url": "https://x/"}]})
    with pytest.raises(ConfigError, match=r"^north\.summaries: unknown key \(did you mean mqtt_summaries"):
        north({"summaries": False})


def test_make_northbound_takes_the_section_and_the_site() -> None:
    config = parse(BASE | {"north": {"webhooks": [HOOK]}}, ENV)
    feed = make_northbound(config, config.site.id, None)
    assert feed.site == "s"
    assert feed.enabled  # the webhook; no MQTT without a publish
    assert "T0K3N" not in repr(feed)
    assert not make_northbound(parse(BASE, ENV), "s", None).enabled
    assert make_northbound(NorthConfig(), "s", lambda *_a, **_k: None).enabled  # a NorthConfig does too
