"""The hub's liveness for boards: a retained state `online` (with a heartbeat period) or `offline` (its will).

    qala/{site}/_hub/{hub}   {"v":1,"state":"online","ts":1795553687123,"hb":10}   retained, QoS 1
                             {"v":1,"state":"offline"}                             the last will, retained

Each hub publishes `online` when it connects and again every `hb` seconds (the heartbeat), and `offline` when
it stops; the broker publishes the will `offline` when the hub dies. A board that sees no hub `online` with a
heartbeat younger than 3 x `hb` counts the hub as lost (Sparkplug's host STATE is the model): its actuators go
to their fail-safe state after `failsafe_after`, as when the broker itself is lost. `alive()` is that rule, a
pure function of the last state and the time since it came.

Imports protocols.fields; knows nothing of sockets or clocks.
"""

from protocols.errors import ProtocolError, describe
from protocols.fields import integer, load, required, timestamp

ONLINE = "online"
OFFLINE = "offline"
# limits as literals in the functions: a module constant's name stays interned on the board while it runs


def encode_hub_state(state: str, ts: int | None = None, hb: int | None = None) -> bytes:
    """`online` (with ts, ms, and hb, the heartbeat in seconds) or `offline` (alone)."""
    if state == OFFLINE:
        return b'{"v":1,"state":"offline"}'
    if state != ONLINE:
        raise ProtocolError("state", "must be online|offline, got %s" % describe(state))
    return ('{"v":1,"state":"online","ts":%d,"hb":%d}' % (timestamp("ts", ts), integer("hb", hb, 1, 3600))).encode()


def decode_hub_state(payload: object) -> tuple[str, int]:
    """(state, heartbeat seconds; 0 for offline); ProtocolError naming the field."""
    obj = load("hub state", payload, 128, ("v", "state", "ts", "hb"))
    state = required(obj, "state")
    if state == OFFLINE:
        return OFFLINE, 0
    if state != ONLINE:
        raise ProtocolError("state", "must be online|offline, got %s" % describe(state))
    timestamp("ts", required(obj, "ts"))
    return ONLINE, integer("hb", required(obj, "hb"), 1, 3600)  # heartbeat: 1 s to 1 h


def alive(state: str, hb: int, silent_ms: int) -> bool:
    """Whether a hub whose last message was `state` (heartbeat hb s), silent_ms ago, is to be trusted alive."""
    return state == ONLINE and silent_ms <= 3000 * hb
