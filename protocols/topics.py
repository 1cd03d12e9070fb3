"""MQTT topic tree: build, parse and validate `qala/{site}/{device}/{kind}`, and the hubs' `qala/{site}/_hub/{hub}`.

Site and device ids are 1 to 32 characters from `A-Z a-z 0-9 _ -`, starting with a letter or digit, so they
are safe as MQTT topic levels (no `/`, `+`, `#`), as InfluxDB tag values and as file names.
"""

from protocols.errors import ProtocolError, describe

ROOT = "qala"
TELEMETRY = "telemetry"
STATUS = "status"
CMD = "cmd"
ACK = "ack"
CONF = "conf"
# and "ota" (hub -> board: update offers and chunks), "otaack" (board -> hub: chunk requests, update reports):
# protocols/ota.py names them (OTA, OTAACK); not here, where every board would intern two names more
KINDS = (TELEMETRY, STATUS, CMD, ACK, CONF, "ota", "otaack")
ID_MAX_LEN = 32
# hubs announce themselves under `_hub` (protocols/liveness.py): no device id starts with `_`


def _id_char_ok(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "_-"


def check_id(field: str, value: object) -> str:
    """Return `value` if it is a valid site or device id, else raise ProtocolError naming `field`."""
    if not isinstance(value, str):
        raise ProtocolError(field, "must be a string, got %s" % describe(value))
    if not value:
        raise ProtocolError(field, "must not be empty")
    if len(value) > ID_MAX_LEN:
        raise ProtocolError(field, "longer than %d characters: %s" % (ID_MAX_LEN, describe(value)))
    for c in value:
        if not _id_char_ok(c):
            raise ProtocolError(field, "character %s not allowed (use A-Z a-z 0-9 _ -)" % describe(c))
    if value[0] in "_-":
        raise ProtocolError(field, "must start with a letter or digit: %s" % describe(value))
    return value


def build(site: str, device: str, kind: str) -> str:
    """The topic for one device's message kind, e.g. `qala/ast-01/aq-0001/telemetry`."""
    check_id("site", site)
    check_id("device", device)
    if kind not in KINDS:
        raise ProtocolError("kind", "must be one of %s, got %s" % ("|".join(KINDS), describe(kind)))
    return "%s/%s/%s/%s" % (ROOT, site, device, kind)


def hub_topic(site: str, hub: str = "+") -> str:
    """A hub's liveness topic `qala/{site}/_hub/{hub}`; without a hub, the filter of every hub of the site,
    `qala/{site}/_hub/+` (what boards subscribe to). One function for both: the board loads this module."""
    check_id("site", site)
    if hub != "+":
        check_id("hub", hub)
    return "%s/%s/_hub/%s" % (ROOT, site, hub)


def subscription(site: str, kind: str) -> str:
    """The wildcard filter for one kind of message from every device of a site."""
    check_id("site", site)
    if kind not in KINDS:
        raise ProtocolError("kind", "must be one of %s, got %s" % ("|".join(KINDS), describe(kind)))
    return "%s/%s/+/%s" % (ROOT, site, kind)


def parse(topic: object) -> tuple[str, str, str]:
    """Split a Qala topic into (site, device, kind); a foreign or malformed topic raises ProtocolError."""
    if isinstance(topic, (bytes, bytearray, memoryview)):
        try:
            topic = bytes(topic).decode("utf-8")
        except UnicodeError:
            raise ProtocolError("topic", "not valid UTF-8") from None
    if not isinstance(topic, str):
        raise ProtocolError("topic", "must be a string, got %s" % describe(topic))
    parts = topic.split("/")
    if len(parts) != 4:
        raise ProtocolError("topic", "expected qala/{site}/{device}/{kind}, got %s" % describe(topic))
    if parts[0] != ROOT:
        raise ProtocolError("topic", "not a Qala topic (must start with %s/): %s" % (ROOT, describe(topic)))
    site = check_id("topic.site", parts[1])
    device = check_id("topic.device", parts[2])
    kind = parts[3]
    if kind not in KINDS:
        raise ProtocolError("topic.kind", "must be one of %s, got %s" % ("|".join(KINDS), describe(kind)))
    return site, device, kind
