"""The hub's liveness messages and the rule boards apply to them. Runs under both interpreters."""

from expect import refused

from protocols import liveness as lv
from protocols import topics

MICROPYTHON_HEAP = "64k"

TS = 1795553687123


def test_online_and_offline_round_trip():
    online = lv.encode_hub_state(lv.ONLINE, TS, 10)
    assert online == b'{"v":1,"state":"online","ts":1795553687123,"hb":10}'
    assert lv.decode_hub_state(online) == (lv.ONLINE, 10)
    assert lv.decode_hub_state(lv.encode_hub_state(lv.OFFLINE)) == (lv.OFFLINE, 0)
    assert topics.hub_topic("ast-01", "main") == "qala/ast-01/_hub/main"
    assert topics.hub_topic("ast-01") == "qala/ast-01/_hub/+"


def test_bad_liveness_messages_are_refused():
    refused(lv.encode_hub_state, "sleeping", TS, 10, field="state")
    refused(lv.encode_hub_state, lv.ONLINE, TS, 0, field="hb")
    refused(lv.encode_hub_state, lv.ONLINE, 5, 10, field="ts")
    refused(lv.decode_hub_state, b'{"v":1,"state":"online","ts":%d}' % TS, field="hb", contains="required")
    refused(lv.decode_hub_state, b'{"v":1,"state":"up"}', field="state")
    refused(lv.decode_hub_state, b'{"v":1,"state":"online","ts":%d,"hb":10,"x":1}' % TS, field="hub state")
    refused(lv.decode_hub_state, b"not json", field="hub state")
    refused(topics.hub_topic, "ast-01", "a/b", field="hub")


def test_a_hub_is_alive_while_online_and_heard_within_three_heartbeats():
    assert lv.alive(lv.ONLINE, 10, 0)
    assert lv.alive(lv.ONLINE, 10, 30000)
    assert not lv.alive(lv.ONLINE, 10, 30001)
    assert not lv.alive(lv.OFFLINE, 10, 0)
