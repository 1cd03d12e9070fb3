"""The broker's policy for a RabbitMQ cluster (issue 15): a site's users, permissions and topic permissions as
RabbitMQ definitions, the JSON `rabbitmqctl import_definitions` and `definitions.local.path` take.

Pure functions, no I/O: `qala provision rabbitmq` (hub.trust.provision) and simulators/rabbitmq.py write what
they return. The rules are hub.trust.broker's, translated; later issues add topics there, not here.

- `password_hash(password, salt=None)`: RabbitMQ's `rabbit_password_hashing_sha256` format,
  base64(4-byte salt + sha256(salt + utf-8 password)); `check_password` verifies one.
- `routing_pattern(topic_filter)`: an MQTT topic filter as a regular expression over AMQP routing keys and
  binding keys. The MQTT plugin publishes to `amq.topic` with `/` turned into `.` (`qala/s/d/telemetry` is
  `qala.s.d.telemetry`) and binds subscriptions with `+` as `*` and `#` as `#`; topic permissions are
  matched against those strings, so a `+` level matches any one level, `*` included, but not `#` (more levels).
- `topic_regex(rules, access)`: the write or read topic permission of a list of broker.py rules, anchored.
- `board_client_id(site, device)`: the MQTT client id the firmware connects with (firmware/mqtt.py
  `client_for`, `qala-<site>-<device>`; a test keeps them equal); hubs and integrators connect with their
  username as client id (hub/config.py does for hubs, as mosquitto's use_username_as_clientid forces).
- `session_queues(client_id)`: the queues the 3.10 MQTT plugin declares for a client's subscriptions,
  `mqtt-subscription-<client id>qos0` and `...qos1`.
- `user_entry`, `permission_entry`, `topic_permission_entry`: the three kinds of entries for one identity.
- `definitions(site, hubs, boards, integrators)`: the whole document from {name: password} maps;
  `store_definitions(store)` the same from a loaded TrustStore; `definitions_bytes(doc)` its file content.

Who may do what on vhost "/" (configure / write / read are regular expressions over queue and exchange
names; topic permissions over routing keys on `amq.topic`):
- a board: only its own session queues, and publish to `amq.topic`; topics as broker.board_rules: write its
  own telemetry, status, ack and otaack, read its own cmd, conf, ota and `qala.<site>._hub.*`;
- a hub: every queue and exchange whose name starts with `qala.` (HUB_RESOURCES: one site per vhost), its
  own session queues and `amq.topic`; topics `qala.<site>` and below, both ways (broker.hub_rules);
- an integrator: its own session queues, bind to `amq.topic` but not publish to it; topics: read the
  northbound feed only.
Every user gets a topic permission on `amq.topic`: a user without one would be allowed every routing key.
No tags (aio-pika and the MQTT plugin need none; the management plugin is not used), no guest.

RabbitMQ does not tie a client id to a user: a board that connects with another's client id closes that
client's connection (the plugin keeps one connection per client id in the cluster), but it cannot read the
other's session queue or publish on its topics.

Imports the standard library, hub.trust.broker (the rules and usernames) and, for types, hub.trust.store;
knows nothing of files, processes or the cluster's nodes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from hub.trust import broker

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from hub.trust.store import TrustStore

__all__ = [  # public (hub.PUBLIC)
    "ALGORITHM",
    "EXCHANGE",
    "NEVER",
    "VHOST",
    "board_client_id",
    "check_password",
    "definitions",
    "definitions_bytes",
    "password_hash",
    "routing_pattern",
    "session_queues",
    "store_definitions",
    "topic_regex",
]

ALGORITHM = "rabbit_password_hashing_sha256"
EXCHANGE = "amq.topic"
"""The exchange the MQTT plugin publishes to and binds subscriptions on (its default, mqtt.exchange)."""
VHOST = "/"
NEVER = "(?!)"
"""A regular expression that matches no name and no routing key (PCRE and Python alike)."""
HUB_RESOURCES = r"qala\..*"
"""The queues and exchanges a hub may declare, bind, publish to and consume from, besides amq.topic."""
_SALT_BYTES = 4
_RABBIT_VERSION = "3.10.8"


# --------------------------------------------------------------------------------------------- hashes


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + utf-8 password)), a random 4-byte
    salt unless one is given (tests)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    if len(salt) != _SALT_BYTES:
        raise ValueError(f"salt: must be {_SALT_BYTES} bytes, got {len(salt)}")
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def check_password(password: str, hashed: str) -> bool:
    """Whether `hashed` (password_hash's format) is the hash of `password`."""
    raw = base64.b64decode(hashed)
    return hmac.compare_digest(password_hash(password, raw[:_SALT_BYTES]), hashed)


# ------------------------------------------------------------------------------------------- patterns


def routing_pattern(topic_filter: str) -> str:
    """An MQTT topic filter as an unanchored regular expression over routing and binding keys: levels joined
    by `\\.`, each literal escaped, `+` one level (`[^.#]+`: the binding key `*` too, `#` not) and a final
    `#` any number of further levels or none (MQTT's `a/#` matches `a`)."""
    levels = topic_filter.split("/")
    if "#" in levels[:-1] or any(("#" in lv or "+" in lv) and lv not in ("#", "+") for lv in levels):
        raise ValueError(f"topic filter {topic_filter!r}: '+' and '#' must fill a level, '#' only the last")
    tail = ""
    if levels[-1] == "#":
        levels, tail = levels[:-1], r"(?:\..*)?"
    return r"\.".join("[^.#]+" if lv == "+" else re.escape(lv) for lv in levels) + tail


def topic_regex(rules: Iterable[broker.Rule], access: str) -> str:
    """The anchored topic permission ("write" or "read") that allows exactly the rules giving that access
    (readwrite gives both); NEVER if none does."""
    if access not in ("read", "write"):
        raise ValueError(f"access: must be read or write, got {access!r}")
    patterns = [routing_pattern(topic) for given, topic in rules if given in (access, "readwrite")]
    return _anchored(patterns)


def _anchored(patterns: list[str]) -> str:
    if not patterns:
        return NEVER
    return f"^(?:{'|'.join(patterns)})$"


def board_client_id(site: str, device: str) -> str:
    """The MQTT client id a board connects with (firmware/mqtt.py, client_for): `qala-<site>-<device>`."""
    return f"qala-{site}-{device}"


def session_queues(client_id: str) -> str:
    """Unanchored: the 3.10 MQTT plugin's queues for one client's subscriptions, mqtt-subscription-<id>qos0|1."""
    return f"mqtt-subscription-{re.escape(client_id)}qos[01]"


# ------------------------------------------------------------------------------------------- entries


def user_entry(user: str, password: str, salt: bytes | None = None) -> dict[str, Any]:
    """One `users` entry: the name, the hash, the algorithm, no tags."""
    return {"name": user, "password_hash": password_hash(password, salt), "hashing_algorithm": ALGORITHM,
            "tags": []}


def permission_entry(user: str, configure: list[str], write: list[str], read: list[str]) -> dict[str, Any]:
    """One `permissions` entry on VHOST, each list of unanchored patterns anchored into one regex."""
    return {"user": user, "vhost": VHOST, "configure": _anchored(configure), "write": _anchored(write),
            "read": _anchored(read)}


def topic_permission_entry(user: str, rules: list[broker.Rule]) -> dict[str, Any]:
    """One `topic_permissions` entry on EXCHANGE from broker.py rules."""
    return {"user": user, "vhost": VHOST, "exchange": EXCHANGE, "write": topic_regex(rules, "write"),
            "read": topic_regex(rules, "read")}


def _identity(doc: dict[str, Any], user: str, password: str, rules: list[broker.Rule], *, own: list[str],
              publish: bool, salt: bytes | None) -> None:
    exchange = re.escape(EXCHANGE)
    doc["users"].append(user_entry(user, password, salt))
    doc["permissions"].append(permission_entry(user, own, [*own, exchange] if publish else own, [*own, exchange]))
    doc["topic_permissions"].append(topic_permission_entry(user, rules))


def definitions(
    site: str,
    hubs: Mapping[str, str],
    boards: Mapping[str, str],
    integrators: Mapping[str, str] | None = None,
    *,
    salt: bytes | None = None,
) -> dict[str, Any]:
    """The definitions of a site: hubs, boards and integrators as {name or device id: password}, users named
    as broker.py names them; vhost "/" only. salt fixes every hash's salt (tests); random by default."""
    doc: dict[str, Any] = {"rabbit_version": _RABBIT_VERSION, "rabbitmq_version": _RABBIT_VERSION,
                           "users": [], "vhosts": [{"name": VHOST}], "permissions": [], "topic_permissions": [],
                           "parameters": [], "global_parameters": [], "policies": [], "queues": [],
                           "exchanges": [], "bindings": []}
    for name, password in sorted(hubs.items()):
        user = broker.hub_user(site, name)
        _identity(doc, user, password, broker.hub_rules(site), own=[HUB_RESOURCES, session_queues(user)],
                  publish=True, salt=salt)
    for device, password in sorted(boards.items()):
        _identity(doc, broker.board_user(site, device), password, broker.board_rules(site, device),
                  own=[session_queues(board_client_id(site, device))], publish=True, salt=salt)
    for name, password in sorted((integrators or {}).items()):
        user = broker.integrator_user(site, name)
        _identity(doc, user, password, broker.integrator_rules(site), own=[session_queues(user)], publish=False,
                  salt=salt)
    return doc


def store_definitions(store: TrustStore, *, salt: bytes | None = None) -> dict[str, Any]:
    """definitions() of a loaded store: every hub, board and integrator it holds."""
    boards = {}
    for device in store.devices():
        identity = store.board(device)
        assert identity is not None, "devices() lists it"
        boards[device] = identity.password
    return definitions(store.site, {name: store.hub(name)[1] for name in store.hubs()}, boards,
                       {name: store.integrator(name)[1] for name in store.integrators()}, salt=salt)


def definitions_bytes(doc: Mapping[str, Any]) -> bytes:
    """The file content: indented JSON, a final newline."""
    return (json.dumps(doc, indent=2) + "\n").encode()
