"""The hub's configuration: a TOML file validated into typed, frozen dataclasses before any socket opens.

Owns the key list (DOCUMENT: every section declared through hub.sections, [modbus] taken from
hub.modbus.config), the defaults and the rules between keys. Every problem raises ConfigError whose message
starts with the key path and states the rule (`influxdb.bucket: required when api = "v2"`); `load` puts the
file's path in front, so the hub stops at start-up with a line an operator can act on. Secrets: any string
value, in any section, may be written as `${NAME}` and is then read from the environment variable NAME (a
missing variable is an error naming the key). docs/hub.md documents every key; hub/config.example.toml is a
complete example that a test loads.

Imports only the standard library, hub.sections, hub.modbus.config ([modbus]), hub.detect.config
([detect]), hub.ota.config ([ota]), the detectors' kinds (hub.detect.events), protocols (the catalogue), the
rule/schedule types of hub.control.rules and the store's layout (hub.trust.store); does no I/O except
reading the file, the environment and the Modbus profiles named: the store named by [trust] is loaded by
the hub at start (hub.service), not here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hub import sections
from hub.control.rules import Rule, Schedule
from hub.detect import config as detect_config
from hub.detect.config import DetectConfig
from hub.detect.events import KINDS
from hub.errors import ConfigError as ConfigError  # noqa: PLC0414 - re-exported: callers take it from here
from hub.modbus import config as modbus_config
from hub.ota import config as ota_config
from hub.ota.config import OtaConfig
from hub.sections import Array, Key, Table
from hub.trust.store import CA_CERT
from protocols import catalogue

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hub.modbus.config import ModbusConfig


@dataclass(frozen=True)
class SiteConfig:
    id: str
    require_birth: bool = False
    """Reject telemetry of a device whose birth message the hub never saw (`unknown_device`). Off by default:
    such telemetry is stored and counted, because a hub whose registry was lost can receive a board's queued
    telemetry before the broker re-sends its retained birth, and a reading must not be lost for that."""


@dataclass(frozen=True)
class MqttConfig:
    host: str
    client_id: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    keepalive: int = 30
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    share_group: str | None = None
    """Telemetry through the MQTT shared subscription `$share/<group>/...`: hubs of one group split it."""


@dataclass(frozen=True)
class ClusterConfig:
    """[cluster]: the hub takes the site from a RabbitMQ cluster over AMQP 0-9-1 (hub.ingest.amqp, docs/scale.md)
    instead of one MQTT broker. The login, TLS and CA file are [mqtt]'s (from the store: the hub's broker user)."""

    nodes: tuple[tuple[str, int], ...]
    """The nodes' AMQP listeners (AMQPS with TLS), tried in turn: the first that answers carries the hub."""
    engine: str = "rabbitmq"
    vhost: str = "/"
    prefetch: int = 2000
    """Messages delivered to this hub and not yet acknowledged (spooled), at most."""
    heartbeat: int = 10
    """AMQP heartbeat, seconds: a hung hub's connection (its unacknowledged messages, its Modbus leases) is
    released by the broker after about three times this (measured, docs/scale.md); a closed one at once."""


@dataclass(frozen=True)
class InfluxConfig:
    api: Literal["v1", "v2"]
    url: str
    # v1
    database: str = ""
    retention_policy: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # v2
    org: str = ""
    bucket: str = ""
    token: str = field(default="", repr=False)
    # both
    timeout: float = 10.0
    retry_min: float = 0.5
    retry_max: float = 30.0


@dataclass(frozen=True)
class SpoolConfig:
    path: Path
    max_bytes: int = 1 << 30


@dataclass(frozen=True)
class BatchConfig:
    size: int = 5000
    flush_interval: float = 1.0


@dataclass(frozen=True)
class MetricsConfig:
    interval: float = 10.0


@dataclass(frozen=True)
class ApiConfig:
    """The control HTTP API; present only when the config has an [api] section (at least one token)."""

    control_token: str | None = field(default=None, repr=False)
    """Bearer token of the `control` role: setpoints, and every GET."""
    read_token: str | None = field(default=None, repr=False)
    """Bearer token of the `read` role: GET requests only."""
    listen: str = "127.0.0.1"
    port: int = 8470
    trusted_proxy: str | None = None
    """The reverse proxy's address: its requests are throttled by the client address it appends to
    X-Forwarded-For (the last entry), not by its own."""
    tls_cert: Path | None = None
    """PEM certificate chain; with tls_key the API speaks HTTPS itself."""
    tls_key: Path | None = None

    def tokens(self) -> tuple[tuple[str, str], ...]:
        """(role, token) of each configured token."""
        roles = (("control", self.control_token), ("read", self.read_token))
        return tuple((role, token) for role, token in roles if token is not None)


@dataclass(frozen=True)
class TrustConfig:
    """[trust]: the provisioning store the hub trusts (docs/security.md), or plain mode on a lab bench."""

    store: Path | None = None
    """The store folder (`qala provision init`): the hub's MQTT login, the site CA, the provisioned device
    ids (telemetry of any other id is dropped) and each board's command key (commands are signed, acks
    verified). None only with plain = true."""
    hub: str = "main"
    """The hub identity in the store whose MQTT login the hub uses (`qala provision hub NAME`)."""
    plain: bool = False
    """A lab bench without a store: every device id is stored, MQTT boards cannot be commanded (no keys)."""


@dataclass(frozen=True)
class ControlConfig:
    ttl: float = 30.0
    """Seconds a command stays valid: the board refuses it after that (cmd `exp`)."""
    retries: int = 2
    """Resends (same command id) after the first attempt before a command times out."""
    ack_timeout: float = 5.0
    """Seconds to wait for an ack before a resend or the time-out."""


@dataclass(frozen=True)
class AlertAction:
    """[[alerts.actions]]: when an alert of `kind` fires (for `device`, or a device of `district`; any device
    when neither is given), set `actuator` of `target_device` (the alert's device when None) to `value`,
    through the control service (its limits and audit; source `alert:<id>`)."""

    kind: str
    actuator: str
    value: float
    device: str | None = None
    district: str | None = None
    target_device: str | None = None

    def matches(self, kind: str, device: str, district: str | None) -> bool:
        return (kind == self.kind and (self.device is None or device == self.device)
                and (self.district is None or district == self.district))


@dataclass(frozen=True)
class AlertsConfig:
    """[alerts]: the alert book (hub.alerts), district coverage (hub.coverage) and automatic actions."""

    per_device_hour: int = 10
    """New alerts per device in any hour; more are dropped, counted and summed up in one log line."""
    reopen_s: float = 300.0
    """A key firing again within this many seconds of its alert resolving reopens that alert (flap damping)."""
    keep_resolved: int = 1000
    """Resolved alerts kept (API, state file) besides the open ones."""
    summary_interval: float = 60.0
    """Seconds between district coverage rounds: `qala_coverage` points and northbound summaries."""
    on_time_factor: float = 3.0
    """A device reports on time while its last telemetry is younger than this many times its interval."""
    actions: tuple[AlertAction, ...] = ()
    """Automatic actions; none by default."""


@dataclass(frozen=True)
class WebhookConfig:
    """One `[[north.webhooks]]`: where the northbound feed POSTs, signed with `secret` (hub.north)."""

    url: str = field(repr=False)
    """May carry a token in its path or query: never logged or shown; `origin` is."""
    secret: str = field(repr=False)
    """The HMAC-SHA256 key of X-Qala-Signature (its UTF-8 bytes), shared with the receiver."""
    origin: str = ""
    """scheme://host[:port] of url, what logs name."""
    events: tuple[str, ...] = ("alert", "summary")
    timeout: float = 10.0
    max_retries: int = 8
    retry_min: float = 1.0
    retry_max: float = 300.0
    queue: int = 1000
    ca_file: Path | None = None


@dataclass(frozen=True)
class NorthConfig:
    """[north]: the northbound feed for a situation centre (hub.north, docs/integrators.md)."""

    mqtt: bool = True
    """Publish on `qala/{site}/_north/...` through the hub's own MQTT connection."""
    mqtt_summaries: bool = True
    """With mqtt: the district summaries too, not only the alerts."""
    webhooks: tuple[WebhookConfig, ...] = ()


@dataclass(frozen=True)
class HubConfig:
    site: SiteConfig
    mqtt: MqttConfig
    """The hub's broker login and TLS; with [cluster] its host is unused (""): the nodes are the cluster's."""
    influxdb: InfluxConfig
    spool: SpoolConfig
    batch: BatchConfig
    metrics: MetricsConfig
    shutdown_timeout: float = 10.0
    """On SIGTERM, how long the hub keeps sending spooled batches before it exits (the rest stays spooled)."""
    heartbeat: int = 10
    """Seconds between the hub's retained `online` messages (protocols/liveness.py); boards count a hub silent
    for 3 of them as lost."""
    confirm: bool = True
    """Confirm to each board what is spooled (protocols/confirm.py), at most once a second per board. Off (and
    refused) with mqtt.share_group: a hub of a group sees only part of a board's messages."""
    confirm_interval: float = 1.0
    """Seconds between confirmation rounds: each board gets at most one confirmation (per boot) a round."""
    gap_timeout: float = 600.0
    """Seconds a hole in a board's messages holds its confirmations back before it is given up."""
    control: ControlConfig = field(default_factory=ControlConfig)
    api: ApiConfig | None = None
    rules: tuple[Rule, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    modbus: ModbusConfig | None = None
    """The [modbus] section (hub.modbus.config): buses and devices the hub polls; None without one."""
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    trust: TrustConfig = field(default_factory=lambda: TrustConfig(plain=True))
    """[trust]; a config always has one (parse() requires it), the default serves code that builds a
    HubConfig itself (tests of single parts)."""
    detect: DetectConfig = field(default_factory=DetectConfig)
    """[detect]: the detectors in the stream (hub.detect, docs/detect.md); on by default."""
    north: NorthConfig = field(default_factory=NorthConfig)
    """[north]: the northbound feed (alerts and district summaries over MQTT and webhooks)."""
    ota: OtaConfig = field(default_factory=OtaConfig)
    """[ota]: releases and roll-out defaults (hub.ota, docs/ota.md)."""
    cluster: ClusterConfig | None = None
    """[cluster]: the site's broker is a RabbitMQ cluster, this hub one of its competing consumers."""


# ---------------------------------------------------------------------------------------------- layout
# Every section is declared here, once, through hub.sections; parse() checks the whole file against DOCUMENT,
# then builds the dataclasses and checks the rules between keys.

SITE = Table({"id": Key(str, id=True), "require_birth": Key(bool, default=False)}, missing="required")
TRUST = Table(
    {"store": Key(str, None), "hub": Key(str, "main", id=True), "plain": Key(bool, default=False)},
    missing="required",
    note="store = the provisioning store's folder, made by `qala provision init`, docs/security.md; or "
         "plain = true on a lab bench",
)
MQTT = Table({
    "host": Key(str, None, note="the broker's name; not with [cluster], whose nodes are listed there"),
    "port": Key(int, None, 1, 65535),
    "username": Key(str, None, empty=True),
    "password": Key(str, None, empty=True),
    "tls": Key(bool, None),  # None: true with a store, else false
    "ca_file": Key(str, None),
    "client_id": Key(str, None, note="a persistent session needs a fixed id"),
    "keepalive": Key(int, 30, positive=True, unit="seconds"),
    "reconnect_min": Key(float, 0.5, positive=True),
    "reconnect_max": Key(float, 30.0, positive=True),
    "share_group": Key(str, None),
})
CLUSTER = Table(
    {
        "engine": Key(str, "rabbitmq", choices=("rabbitmq",)),
        "nodes": Key(list, note='the nodes\' AMQP listeners, e.g. ["10.0.0.11:5671", "10.0.0.12:5671"]'),
        "vhost": Key(str, "/"),
        "prefetch": Key(int, 2000, 1, 65535, note="messages delivered and not yet spooled, at most"),
        "heartbeat": Key(int, 10, 1, 600, unit="seconds"),
    },
    missing="none",
)
INFLUXDB = Table(
    {
        "api": Key(str, choices=("v1", "v2")),
        "url": Key(str),
        "timeout": Key(float, 10.0, positive=True),
        "retry_min": Key(float, 0.5, positive=True),
        "retry_max": Key(float, 30.0, positive=True),
    },
    missing="required",
    by="api",
    variants={
        "v1": {"database": Key(str), "retention_policy": Key(str, "", empty=True),
               "username": Key(str, None, empty=True), "password": Key(str, None, empty=True)},
        "v2": {"org": Key(str), "bucket": Key(str), "token": Key(str)},
    },
)
SPOOL = Table({"path": Key(str), "max_bytes": Key(int, 1 << 30, lo=1 << 20, unit="bytes")},
              missing="required")
BATCH = Table({"size": Key(int, 5000, 1, 100_000), "flush_interval": Key(float, 1.0, positive=True)})
METRICS = Table({"interval": Key(float, 10.0, positive=True)})
HUB = Table({
    "shutdown_timeout": Key(float, 10.0, positive=True),
    "heartbeat": Key(int, 10, 1, 3600, unit="seconds"),
    "confirm": Key(bool, None),  # None: true, or false with mqtt.share_group
    "confirm_interval": Key(float, 1.0, 0.1, 60, unit="seconds",
                            note="boards resend what stays unconfirmed for buffer.resend_after, 30 s by default"),
    "gap_timeout": Key(float, 600.0, positive=True),
})
CONTROL = Table({
    "ttl": Key(float, 30.0, positive=True),
    "retries": Key(int, 2, 0, 10),
    "ack_timeout": Key(float, 5.0, positive=True),
})
API = Table(
    {
        "listen": Key(str, "127.0.0.1", empty=True),
        "port": Key(int, 8470, 0, 65535, note="0: any free port"),
        "control_token": Key(str, None),
        "read_token": Key(str, None),
        "trusted_proxy": Key(str, None),
        "tls_cert": Key(str, None),
        "tls_key": Key(str, None),
    },
    missing="none",
    retired={"token": "renamed api.control_token (the control role); api.read_token is the read-only role "
                      "(docs/control.md)"},
)
RULE = Table({
    "name": Key(str, id=True),
    "device": Key(str, id=True),
    "sensor": Key(str, id=True),
    "quantity": Key(str),
    "above": Key(float),
    "below": Key(float),
    "hold_s": Key(float, 0.0, lo=0, unit="seconds"),
    "target_device": Key(str, None, id=True),
    "actuator": Key(str, id=True),
    "high": Key(float),
    "low": Key(float),
})
SCHEDULE = Table({
    "name": Key(str, id=True),
    "device": Key(str, id=True),
    "actuator": Key(str, id=True),
    "at": Key(str, note="a local time HH:MM"),
    "value": Key(float),
    "retry_every": Key(float, 60.0, 1, 3600, unit="seconds"),
    "retry_window": Key(float, 900.0, 0, 86400, unit="seconds", note="0: no retry"),
})
ALERT_ACTION = Table({
    "kind": Key(str, choices=KINDS),
    "device": Key(str, None, id=True, note="only alerts of this device (default: any)"),
    "district": Key(str, None, id=True, note="only alerts of devices of this district (default: any)"),
    "target_device": Key(str, None, id=True, note="the device whose actuator is set (default: the alert's)"),
    "actuator": Key(str, id=True),
    "value": Key(float),
})
ALERTS = Table({
    "per_device_hour": Key(int, 10, 1, 1000, note="new alerts per device in any hour"),
    "reopen_s": Key(float, 300.0, 0, 86400, unit="seconds"),
    "keep_resolved": Key(int, 1000, 10, 100_000),
    "summary_interval": Key(float, 60.0, 1, 3600, unit="seconds"),
    "on_time_factor": Key(float, 3.0, 1, 100, note="times a device's interval"),
    "actions": Array(ALERT_ACTION),
})
NORTH_EVENTS = ("alert", "summary")
WEBHOOK = Table({
    "url": Key(str, note="where the feed POSTs: an http:// or https:// URL"),
    "secret": Key(str, note="at least 16 characters, shared with the receiver; write ${NAME} to read it from the "
                            "environment"),
    "events": Key(list, list(NORTH_EVENTS), note="a list of alert, summary"),
    "timeout": Key(float, 10.0, 0.1, 300, unit="seconds"),
    "max_retries": Key(int, 8, 0, 100, note="resends after the first attempt before a document is given up"),
    "retry_min": Key(float, 1.0, 0.01, 3600, unit="seconds"),
    "retry_max": Key(float, 300.0, 0.01, 86400, unit="seconds"),
    "queue": Key(int, 1000, 1, 1_000_000, note="documents waiting per webhook; past it the oldest summary goes"),
    "ca_file": Key(str, None, note="a PEM CA for a receiver whose certificate no public CA signs"),
})
NORTH = Table({
    "mqtt": Key(bool, default=True),
    "mqtt_summaries": Key(bool, default=True),
    "webhooks": Array(WEBHOOK),
})
DOCUMENT = Table({
    "site": SITE,
    "mqtt": MQTT,
    "influxdb": INFLUXDB,
    "spool": SPOOL,
    "batch": BATCH,
    "metrics": METRICS,
    "hub": HUB,
    "control": CONTROL,
    "trust": TRUST,
    "api": API,
    "rules": Array(RULE),
    "schedules": Array(SCHEDULE),
    "alerts": ALERTS,
    "modbus": modbus_config.SECTION,
    "detect": detect_config.SECTION,
    "north": NORTH,
    "ota": ota_config.SECTION,
    "cluster": CLUSTER,
})
"""The whole of hub.toml; hub/config.example.toml shows every section, docs/hub.md every key."""


def _url(path: str, value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"{path}: must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _path(value: str, base: Path | None) -> Path:
    path = Path(value)
    return base / path if not path.is_absolute() and base is not None else path


def _trust(values: dict[str, Any], base: Path | None) -> TrustConfig:
    if values["plain"]:
        if values["store"] is not None:
            raise ConfigError("trust.plain: true runs without a store: remove trust.store, or plain = true")
        return TrustConfig(plain=True, hub=values["hub"])  # the hub's name still tells hubs of a cluster apart
    if values["store"] is None:
        raise ConfigError("trust.store: required: the provisioning store's folder (`qala provision init --store DIR "
                          "--site ID`, docs/security.md); plain = true instead only on a lab bench")
    return TrustConfig(store=_path(values["store"], base), hub=values["hub"])


def _mqtt_from_store(mqtt: dict[str, Any], site: str, store: Path, hub: str, given: Mapping[str, Any]) -> None:
    """The login and the CA come from the store; TLS unless the config turns it off (a lab bench)."""
    for key in ("username", "password", "ca_file"):
        if key in given:
            raise ConfigError(f"mqtt.{key}: comes from the provisioning store ([trust] store); remove it")
    if mqtt["tls"] is None:
        mqtt["tls"] = True
    if mqtt["tls"]:
        mqtt["ca_file"] = str(store / CA_CERT)
    if mqtt["client_id"] is None:
        mqtt["client_id"] = f"hub/{site}/{hub}"  # the broker ties client ids to usernames


def _mqtt_host(mqtt: dict[str, Any], *, cluster: bool) -> None:
    """mqtt.host: required without [cluster], refused with it (set to "": unused)."""
    if not cluster:
        if mqtt["host"] is None:
            raise ConfigError("mqtt.host: required: the broker's name (its certificate must carry it), or a "
                              "[cluster] section listing the nodes of a RabbitMQ cluster")
        return
    if mqtt["host"] is not None:
        raise ConfigError("mqtt.host: not used with [cluster]: the hub connects to cluster.nodes; remove it")
    if mqtt["share_group"] is not None:
        raise ConfigError("mqtt.share_group: not used with [cluster]: hubs of a cluster share its telemetry queue "
                          "by themselves; remove it")
    mqtt["host"] = ""


def _mqtt(mqtt: dict[str, Any], site: str, trust: TrustConfig, given: Mapping[str, Any], *,
          cluster: bool = False) -> MqttConfig:
    _mqtt_host(mqtt, cluster=cluster)
    if trust.store is not None:
        _mqtt_from_store(mqtt, site, trust.store, trust.hub, given)
    mqtt["tls"] = bool(mqtt["tls"])
    if mqtt["port"] is None:
        mqtt["port"] = 8883 if mqtt["tls"] else 1883
    if mqtt["client_id"] is None:
        mqtt["client_id"] = f"qala-hub-{site}"
    if mqtt["password"] is not None and mqtt["username"] is None:
        raise ConfigError("mqtt.password: given without mqtt.username")
    if mqtt["ca_file"] is not None and not mqtt["tls"]:
        raise ConfigError("mqtt.ca_file: only used with tls = true")
    if mqtt["reconnect_max"] < mqtt["reconnect_min"]:
        raise ConfigError("mqtt.reconnect_max: must not be below mqtt.reconnect_min")
    group = mqtt["share_group"]
    if group is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", group):
        raise ConfigError(f"mqtt.share_group: 1..32 of A-Z a-z 0-9 _ -, starting with a letter or digit, got {group!r}")
    return MqttConfig(**mqtt)


def _influx(influx: dict[str, Any]) -> InfluxConfig:
    influx["url"] = _url("influxdb.url", influx["url"])
    if influx.get("password") is not None and influx.get("username") is None:
        raise ConfigError("influxdb.password: given without influxdb.username")
    if influx["retry_max"] < influx["retry_min"]:
        raise ConfigError("influxdb.retry_max: must not be below influxdb.retry_min")
    return InfluxConfig(**influx)


def _cluster(values: dict[str, Any] | None) -> ClusterConfig | None:
    if values is None:
        return None
    nodes = values["nodes"]
    if not nodes or len(nodes) > 16:
        raise ConfigError(f'cluster.nodes: list 1..16 nodes as "host:port" (their AMQP listeners), got {nodes!r}')
    parsed = []
    for i, node in enumerate(nodes):
        found = re.fullmatch(r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})", node) if isinstance(node, str) \
            else None
        if found is None or not 1 <= int(found.group(2)) <= 65535:
            raise ConfigError(f'cluster.nodes[{i}]: must be "host:port" (port 1..65535), got {node!r}')
        parsed.append((found.group(1).strip("[]"), int(found.group(2))))
    return ClusterConfig(**(values | {"nodes": tuple(parsed)}))


def _hub(hub: dict[str, Any], share_group: str | None, cluster: ClusterConfig | None = None) -> dict[str, Any]:
    """[hub]: confirmations are off with a share group or a cluster, and refused there when asked for."""
    if cluster is not None:
        if hub["confirm"] is True:
            raise ConfigError("hub.confirm: not with [cluster]: hubs compete for a board's messages, so none sees a "
                              "run of them; the cluster's PUBACK (a majority of its nodes stored the message) is the "
                              "board's confirmation. Remove hub.confirm (and set buffer.confirm false on the boards)")
        return hub | {"confirm": False}
    if share_group is None:
        return hub | {"confirm": hub["confirm"] is not False}
    if hub["confirm"] is True:
        raise ConfigError("hub.confirm: not with mqtt.share_group: each hub of a group gets part of a board's "
                          "messages, so none can confirm a run of them; set hub.confirm = false (and "
                          "buffer.confirm false on the boards)")
    return hub | {"confirm": False}


def parse(document: Mapping[str, Any], env: Mapping[str, str] | None = None, base: Path | None = None) -> HubConfig:
    """Validate a parsed TOML document; relative spool.path, api.tls_cert, api.tls_key and Modbus profile
    paths are taken from `base` (the file's folder)."""
    values = sections.check(DOCUMENT, document, env=os.environ if env is None else env)
    site = values["site"]
    trust = _trust(values["trust"], base)
    cluster = _cluster(values["cluster"])
    mqtt = _mqtt(values["mqtt"], site["id"], trust, document.get("mqtt", {}), cluster=cluster is not None)
    spool = values["spool"] | {"path": _path(values["spool"]["path"], base)}
    rules = tuple(_rule(f"rules[{i}]", v) for i, v in enumerate(values["rules"]))
    schedules = tuple(_schedule(f"schedules[{i}]", v) for i, v in enumerate(values["schedules"]))
    _unique("rules", [r.name for r in rules])
    _unique("schedules", [s.name for s in schedules])
    modbus = values["modbus"]
    return HubConfig(
        site=SiteConfig(**site),
        mqtt=mqtt,
        influxdb=_influx(values["influxdb"]),
        spool=SpoolConfig(**spool),
        batch=BatchConfig(**values["batch"]),
        metrics=MetricsConfig(**values["metrics"]),
        **_hub(values["hub"], mqtt.share_group, cluster),
        control=ControlConfig(**values["control"]),
        api=None if values["api"] is None else _api(values["api"], base),
        rules=rules,
        schedules=schedules,
        modbus=None if modbus is None else modbus_config.build(modbus, base),
        alerts=_alerts(values["alerts"]),
        trust=trust,
        detect=detect_config.build(values["detect"]),
        north=_north(values["north"], base),
        ota=ota_config.build(values["ota"], base),
        cluster=cluster,
    )


def _alerts(values: dict[str, Any]) -> AlertsConfig:
    actions = tuple(AlertAction(**action) for action in values.pop("actions"))
    for i, action in enumerate(actions):
        if action.target_device is None and action.device is None and action.district is None:
            continue  # the alert's own device, whichever it is: allowed (every device of that kind)
        if action.target_device is not None and action.device is None and action.district is None:
            raise ConfigError(f"alerts.actions[{i}].target_device: with a target, say which alerts move it "
                              f"(alerts.actions[{i}].device or .district); otherwise any device's alert would")
    return AlertsConfig(**values, actions=actions)


def _north(values: dict[str, Any], base: Path | None) -> NorthConfig:
    hooks = []
    for i, hook in enumerate(values["webhooks"]):
        path = f"north.webhooks[{i}]"
        url = hook["url"]
        if not re.match(r"^https?://[^/\s?#]+[^\s]*$", url):
            raise ConfigError(f"{path}.url: must be an http:// or https:// URL, got {url!r}")
        if len(hook["secret"]) < 16:
            raise ConfigError(f"{path}.secret: must be at least 16 characters, got {len(hook['secret'])} "
                              f"(a random one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        events = hook["events"]
        if not events or any(e not in NORTH_EVENTS for e in events) or len(set(events)) != len(events):
            raise ConfigError(f"{path}.events: must list one or both of {', '.join(NORTH_EVENTS)}, each once, "
                              f"got {events!r}")
        if hook["retry_max"] < hook["retry_min"]:
            raise ConfigError(f"{path}.retry_max: must not be below {path}.retry_min")
        if hook["ca_file"] is not None and not url.startswith("https://"):
            raise ConfigError(f"{path}.ca_file: only used with an https:// url")
        origin = re.match(r"^https?://(?:[^@/]*@)?[^/?#]+", url)
        assert origin is not None, "the url's shape is checked above"
        hooks.append(WebhookConfig(
            url=url, secret=hook["secret"], origin=re.sub(r"//[^@/]*@", "//", origin.group(0)),
            events=tuple(events), timeout=hook["timeout"], max_retries=hook["max_retries"],
            retry_min=hook["retry_min"], retry_max=hook["retry_max"], queue=hook["queue"],
            ca_file=None if hook["ca_file"] is None else _path(hook["ca_file"], base)))
    return NorthConfig(mqtt=values["mqtt"], mqtt_summaries=values["mqtt_summaries"], webhooks=tuple(hooks))


def _api(values: dict[str, Any], base: Path | None) -> ApiConfig:
    _check_api_tokens(values)
    if values["trusted_proxy"] is not None:
        try:
            values["trusted_proxy"] = str(ipaddress.ip_address(values["trusted_proxy"]))
        except ValueError:
            raise ConfigError(f"api.trusted_proxy: must be an IP address (the reverse proxy's), "
                              f"got {values['trusted_proxy']!r}") from None
    for key, other in (("tls_cert", "tls_key"), ("tls_key", "tls_cert")):
        if values[key] is not None and values[other] is None:
            raise ConfigError(f"api.{other}: required with api.{key}")
        if values[key] is not None:
            values[key] = _path(values[key], base)
    return ApiConfig(**values)


def _check_api_tokens(values: dict[str, Any]) -> None:
    if values["control_token"] is None and values["read_token"] is None:
        raise ConfigError("api.control_token: required (or api.read_token for a read-only API, or both)")
    for key in ("control_token", "read_token"):
        token = values[key]
        if token is None:
            continue
        if len(token) < 16:
            raise ConfigError(f"api.{key}: must be at least 16 characters, got {len(token)}")
        if not re.fullmatch(r"[\x21-\x7e]+", token):
            raise ConfigError(f"api.{key}: must be printable ASCII without spaces (it is sent in a header)")
    if values["control_token"] == values["read_token"]:
        raise ConfigError("api.read_token: must differ from api.control_token (one token per role)")


def _unique(name: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ConfigError(f"{name}[{i}].name: {n!r} is used twice")
        seen.add(n)


def _rule(path: str, v: dict[str, Any]) -> Rule:
    if v["quantity"] not in catalogue.QUANTITIES:
        raise ConfigError(f"{path}.quantity: unknown quantity {v['quantity']!r} (not in the catalogue)")
    if v["below"] >= v["above"]:
        raise ConfigError(f"{path}.below: must be below {path}.above (the hysteresis band)")
    return Rule(v["name"], v["device"], v["sensor"], v["quantity"], v["above"], v["below"], v["hold_s"],
                v["target_device"] or v["device"], v["actuator"], v["high"], v["low"])


def _schedule(path: str, v: dict[str, Any]) -> Schedule:
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", v["at"])
    if match is None:
        raise ConfigError(f"{path}.at: must be a local time HH:MM, got {v['at']!r}")
    at = dt.time(int(match.group(1)), int(match.group(2)))
    return Schedule(v["name"], v["device"], v["actuator"], at, v["value"], v["retry_every"], v["retry_window"])


def load(path: Path, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate a TOML config file; every ConfigError starts with the file's path."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeError:
        raise ConfigError(f"{path}: not a TOML file: it holds bytes that are not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(document, env, base=path.parent.absolute())
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
