"""[cluster] in hub.toml: the nodes, what it turns off ([mqtt]'s host, share groups, confirmations), and the
errors a person gets. The cluster's own tests (real RabbitMQ nodes) are in this folder's other modules."""

from __future__ import annotations

from typing import Any

import pytest

from hub.config import ConfigError, parse
from hub.ingest.amqp import hub_queue, routing_key, telemetry_queue, topic_of

BASE: dict[str, Any] = {
    "site": {"id": "ast-01"},
    "mqtt": {},
    "influxdb": {"api": "v1", "url": "http://127.0.0.1:8086", "database": "qala"},
    "spool": {"path": "/tmp/qala"},
    "trust": {"plain": True, "hub": "h2"},  # plain: these tests are about [cluster]; a store gives the login
    "cluster": {"nodes": ["127.0.0.1:5671", "node2.example:5671", "[::1]:5672"]},
}


def test_a_cluster_config_names_its_nodes_and_turns_confirmations_off() -> None:
    config = parse(BASE)
    assert config.cluster is not None
    assert config.cluster.nodes == (("127.0.0.1", 5671), ("node2.example", 5671), ("::1", 5672))
    assert (config.cluster.engine, config.cluster.prefetch, config.cluster.heartbeat) == ("rabbitmq", 2000, 10)
    assert config.mqtt.host == ""  # unused: the nodes are the cluster's
    assert config.confirm is False
    assert config.trust.hub == "h2"  # even in plain mode: hubs of a cluster need names of their own


@pytest.mark.parametrize(("change", "message"), [
    ({"cluster": {"nodes": []}}, "cluster.nodes: list 1..16 nodes"),
    ({"cluster": {"nodes": ["127.0.0.1"]}}, 'cluster.nodes[0]: must be "host:port"'),
    ({"cluster": {"nodes": ["a:5671", "b:99999"]}}, "cluster.nodes[1]: must be"),
    ({"cluster": {"nodes": ["a:1"], "engine": "nats"}}, "cluster.engine"),
    ({"cluster": {"nodes": ["a:1"], "prefetch": 0}}, "cluster.prefetch"),
    ({"cluster": {"node": ["a:1"]}}, "cluster.node: unknown key"),
    ({"mqtt": {"host": "broker"}}, "mqtt.host: not used with [cluster]"),
    ({"mqtt": {"share_group": "g"}}, "mqtt.share_group: not used with [cluster]"),
    ({"hub": {"confirm": True}}, "hub.confirm: not with [cluster]"),
])
def test_a_bad_cluster_config_names_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(BASE | change)
    assert message in str(caught.value)


def test_without_a_cluster_mqtt_host_is_required() -> None:
    doc = {k: v for k, v in BASE.items() if k != "cluster"}
    with pytest.raises(ConfigError, match=r"mqtt.host: required: .*or a \[cluster\] section"):
        parse(doc)
    assert parse(doc | {"mqtt": {"host": "broker"}}).mqtt.host == "broker"


def test_topics_and_routing_keys_swap_dots_and_slashes_as_the_mqtt_plugin_does() -> None:
    assert routing_key("qala/ast-01/aq-0001/telemetry") == "qala.ast-01.aq-0001.telemetry"
    assert topic_of("qala.ast-01.aq-0001.telemetry") == "qala/ast-01/aq-0001/telemetry"
    assert topic_of(routing_key("qala/s/a.b/ack")) == "qala/s/a.b/ack"  # a dot in a level survives the trip
    assert (telemetry_queue("ast-01"), hub_queue("ast-01", "h2")) == ("qala.ast-01.telemetry", "qala.ast-01.hub.h2")

