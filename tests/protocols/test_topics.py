"""Topic tree: build, parse, validate ids. Runs under CPython and MicroPython."""

from expect import refused

from protocols import topics

MICROPYTHON_HEAP = "64k"


def test_build_and_parse_round_trip():
    for kind in topics.KINDS:
        topic = topics.build("ast-01", "aq_0001", kind)
        assert topic == "qala/ast-01/aq_0001/" + kind
        assert topics.parse(topic) == ("ast-01", "aq_0001", kind)


def test_parse_accepts_bytes():
    assert topics.parse(b"qala/s1/d1/ack") == ("s1", "d1", "ack")


def test_subscription_filter():
    assert topics.subscription("s1", "telemetry") == "qala/s1/+/telemetry"


def test_foreign_topics_refused():
    refused(topics.parse, "homeassistant/sensor/x/state", field="topic", contains="not a Qala topic")
    refused(topics.parse, "qala/s1/d1", field="topic", contains="expected qala/{site}/{device}/{kind}")
    refused(topics.parse, "qala/s1/d1/telemetry/extra", field="topic")
    refused(topics.parse, "qala/s1/d1/config", field="topic.kind", contains="must be one of")
    refused(topics.parse, "", field="topic")
    refused(topics.parse, 42, field="topic", contains="must be a string")
    refused(topics.parse, b"qala/s1/\xff/ack", field="topic", contains="UTF-8")


def test_bad_ids_refused():
    refused(topics.parse, "qala//d1/ack", field="topic.site", contains="empty")
    refused(topics.parse, "qala/s1/d+1/ack", field="topic.device", contains="'+'")
    refused(topics.parse, "qala/s1/#/ack", field="topic.device")
    refused(topics.parse, "qala/s 1/d1/ack", field="topic.site")
    refused(topics.parse, "qala/s1/-d1/ack", field="topic.device", contains="start with")
    refused(topics.build, "s1", "x" * 33, "ack", field="device", contains="longer than 32")
    refused(topics.build, "s1", "d1", "nope", field="kind")
    refused(topics.subscription, "s/1", "telemetry", field="site")
    assert topics.check_id("device", "x" * 32) == "x" * 32
