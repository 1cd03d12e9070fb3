"""The hub's configuration: a TOML file validated into typed, frozen dataclasses before any socket opens.

Owns the key list, the defaults and the error messages. Every problem raises ConfigError whose message
starts with the key path and states the rule (`influxdb.bucket: required when api = "v2"`), so the hub
stops at start-up with a line an operator can act on. Secrets: any string value may be written as
`${NAME}` and is then read from the environment variable NAME (a missing variable is an error naming the
key). docs/hub.md documents every key; hub/config.example.toml is a complete example that a test loads.

Imports only the standard library, protocols (the id rule, the catalogue), the rule/schedule types of
hub.control.rules and the store's layout (hub.trust.store); does no I/O except reading the file and the
environment: the store named by [trust] is loaded by the hub at start (hub.service), not here.
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

from hub.control.rules import Rule, Schedule
from hub.errors import ConfigError as ConfigError  # noqa: PLC0414 - re-exported: callers take it from here
from hub.trust.store import CA_CERT
from protocols import catalogue
from protocols.errors import ProtocolError
from protocols.topics import check_id

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
class HubConfig:
    site: SiteConfig
    mqtt: MqttConfig
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
    trust: TrustConfig = field(default_factory=lambda: TrustConfig(plain=True))
    """[trust]; a config always has one (parse() requires it), the default serves code that builds a
    HubConfig itself (tests of single parts)."""


# ---------------------------------------------------------------------------------------------- schema

_REQUIRED = object()
_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

# key -> (python type, default); int keys accept only integers, float keys integers or floats.
_Schema = dict[str, tuple[type, Any]]

_SITE: _Schema = {"id": (str, _REQUIRED), "require_birth": (bool, False)}
_MQTT: _Schema = {
    "host": (str, _REQUIRED),
    "port": (int, 1883),
    "username": (str, None),
    "password": (str, None),
    "tls": (bool, False),
    "ca_file": (str, None),
    "client_id": (str, None),
    "keepalive": (int, 30),
    "reconnect_min": (float, 0.5),
    "reconnect_max": (float, 30.0),
    "share_group": (str, None),
}
_INFLUX: _Schema = {
    "api": (str, _REQUIRED),
    "url": (str, _REQUIRED),
    "database": (str, None),
    "retention_policy": (str, ""),
    "username": (str, None),
    "password": (str, None),
    "org": (str, None),
    "bucket": (str, None),
    "token": (str, None),
    "timeout": (float, 10.0),
    "retry_min": (float, 0.5),
    "retry_max": (float, 30.0),
}
_V1_ONLY = ("database", "retention_policy", "username", "password")
_V2_ONLY = ("org", "bucket", "token")
_SPOOL: _Schema = {"path": (str, _REQUIRED), "max_bytes": (int, 1 << 30)}
_BATCH: _Schema = {"size": (int, 5000), "flush_interval": (float, 1.0)}
_METRICS: _Schema = {"interval": (float, 10.0)}
_HUB: _Schema = {"shutdown_timeout": (float, 10.0), "heartbeat": (int, 10), "confirm": (bool, True),
                 "confirm_interval": (float, 1.0), "gap_timeout": (float, 600.0)}
_API: _Schema = {
    "listen": (str, "127.0.0.1"),
    "port": (int, 8470),
    "control_token": (str, None),
    "read_token": (str, None),
    "trusted_proxy": (str, None),
    "tls_cert": (str, None),
    "tls_key": (str, None),
}
_TRUST: _Schema = {"store": (str, None), "hub": (str, "main"), "plain": (bool, False)}
_CONTROL: _Schema = {"ttl": (float, 30.0), "retries": (int, 2), "ack_timeout": (float, 5.0)}
_RULE: _Schema = {
    "name": (str, _REQUIRED),
    "device": (str, _REQUIRED),
    "sensor": (str, _REQUIRED),
    "quantity": (str, _REQUIRED),
    "above": (float, _REQUIRED),
    "below": (float, _REQUIRED),
    "hold_s": (float, 0.0),
    "target_device": (str, None),
    "actuator": (str, _REQUIRED),
    "high": (float, _REQUIRED),
    "low": (float, _REQUIRED),
}
_SCHEDULE: _Schema = {
    "name": (str, _REQUIRED),
    "device": (str, _REQUIRED),
    "actuator": (str, _REQUIRED),
    "at": (str, _REQUIRED),
    "value": (float, _REQUIRED),
    "retry_every": (float, 60.0),
    "retry_window": (float, 900.0),
}
_ARRAYS: dict[str, _Schema] = {"rules": _RULE, "schedules": _SCHEDULE}  # [[rules]], [[schedules]]
_SECTIONS: dict[str, tuple[_Schema, bool]] = {  # name -> (schema, section required)
    "site": (_SITE, True),
    "mqtt": (_MQTT, True),
    "influxdb": (_INFLUX, True),
    "spool": (_SPOOL, True),
    "batch": (_BATCH, False),
    "metrics": (_METRICS, False),
    "hub": (_HUB, False),
    "control": (_CONTROL, False),
    "trust": (_TRUST, True),
}
_OPTIONAL = {"api": _API, "modbus": {}}  # sections that switch a feature on by being present (modbus: own parser)

_MISSING_HINTS = {
    "trust": " (store = the provisioning store's folder, made by `qala provision init`, docs/security.md; or "
             "plain = true on a lab bench)",
}

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _value(path: str, value: Any, kind: type, env: Mapping[str, str]) -> Any:
    if kind is str and isinstance(value, str):
        match = _ENV.match(value)
        if match:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return env[name]
        return value
    ok = (
        (kind is bool and isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
    )
    if not ok:
        raise ConfigError(f"{path}: must be {_TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}")
    return float(value) if kind is float else value


def _section(name: str, table: Any, schema: _Schema, env: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: must be a table ([{name}]), got {type(table).__name__}")
    out: dict[str, Any] = {}
    for key in table:
        if key not in schema:
            known = ", ".join(schema)
            raise ConfigError(f"{name}.{key}: unknown key (known keys: {known})")
    for key, (kind, default) in schema.items():
        if key in table:
            out[key] = _value(f"{name}.{key}", table[key], kind, env)
        elif default is _REQUIRED:
            raise ConfigError(f"{name}.{key}: required")
        else:
            out[key] = default
    return out


def _positive(path: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{path}: must be positive, got {value!r}")


def _url(path: str, value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"{path}: must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _trust(values: dict[str, Any], base: Path | None) -> TrustConfig:
    if values["plain"]:
        if values["store"] is not None:
            raise ConfigError("trust.plain: true runs without a store: remove trust.store, or plain = true")
        return TrustConfig(plain=True)
    if values["store"] is None:
        raise ConfigError("trust.store: required: the provisioning store's folder (`qala provision init --store DIR "
                          "--site ID`, docs/security.md); plain = true instead only on a lab bench")
    if not values["store"]:
        raise ConfigError("trust.store: must not be empty")
    path = Path(values["store"])
    if not path.is_absolute() and base is not None:
        path = base / path
    return TrustConfig(store=path, hub=_id_value("trust.hub", values["hub"]))


def _mqtt_from_store(mqtt: dict[str, Any], site: str, store: Path, hub: str, given: Mapping[str, Any]) -> None:
    """The login and the CA come from the store; TLS unless the config turns it off (a lab bench)."""
    for key in ("username", "password", "ca_file"):
        if key in given:
            raise ConfigError(f"mqtt.{key}: comes from the provisioning store ([trust] store); remove it")
    if "tls" not in given:
        mqtt["tls"] = True
    if mqtt["tls"]:
        mqtt["ca_file"] = str(store / CA_CERT)
    if mqtt["client_id"] is None:
        mqtt["client_id"] = f"hub/{site}/{hub}"  # the broker ties client ids to usernames


def _check_mqtt(mqtt: dict[str, Any], site: str, trust: TrustConfig, given: Mapping[str, Any]) -> None:
    if trust.store is not None:
        _mqtt_from_store(mqtt, site, trust.store, trust.hub, given)
    if "port" not in given and mqtt["tls"]:
        mqtt["port"] = 8883
    if not 1 <= mqtt["port"] <= 65535:
        raise ConfigError(f"mqtt.port: must be 1..65535, got {mqtt['port']}")
    if mqtt["client_id"] is None:
        mqtt["client_id"] = f"qala-hub-{site}"
    if not mqtt["client_id"]:
        raise ConfigError("mqtt.client_id: must not be empty (a persistent session needs a fixed id)")
    if mqtt["password"] is not None and mqtt["username"] is None:
        raise ConfigError("mqtt.password: given without mqtt.username")
    if mqtt["ca_file"] is not None and not mqtt["tls"]:
        raise ConfigError("mqtt.ca_file: only used with tls = true")
    _positive("mqtt.keepalive", mqtt["keepalive"])
    _positive("mqtt.reconnect_min", mqtt["reconnect_min"])
    if mqtt["reconnect_max"] < mqtt["reconnect_min"]:
        raise ConfigError("mqtt.reconnect_max: must not be below mqtt.reconnect_min")
    group = mqtt["share_group"]
    if group is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", group):
        raise ConfigError(f"mqtt.share_group: 1..32 of A-Z a-z 0-9 _ -, starting with a letter or digit, got {group!r}")


def _check_influx(influx: dict[str, Any], given: Mapping[str, Any]) -> None:
    api = influx["api"]
    if api not in ("v1", "v2"):
        raise ConfigError(f'influxdb.api: must be "v1" or "v2", got {api!r}')
    influx["url"] = _url("influxdb.url", influx["url"])
    other = _V2_ONLY if api == "v1" else _V1_ONLY
    for key in other:
        if key in given:
            raise ConfigError(f'influxdb.{key}: not used when api = "{api}" (remove it)')
    required = ("database",) if api == "v1" else ("org", "bucket", "token")
    for key in required:
        if not influx[key]:
            raise ConfigError(f'influxdb.{key}: required when api = "{api}"')
    if influx["password"] is not None and influx["username"] is None:
        raise ConfigError("influxdb.password: given without influxdb.username")
    for key in ("database", "org", "bucket", "token"):
        influx[key] = influx[key] or ""
    _positive("influxdb.timeout", influx["timeout"])
    _positive("influxdb.retry_min", influx["retry_min"])
    if influx["retry_max"] < influx["retry_min"]:
        raise ConfigError("influxdb.retry_max: must not be below influxdb.retry_min")


def _check_spool(spool: dict[str, Any], base: Path | None) -> None:
    if not spool["path"]:
        raise ConfigError("spool.path: must not be empty")
    path = Path(spool["path"])
    if not path.is_absolute() and base is not None:
        path = base / path
    spool["path"] = path
    if spool["max_bytes"] < 1 << 20:
        raise ConfigError(f"spool.max_bytes: must be at least 1 MiB (1048576), got {spool['max_bytes']}")


def _check_hub(hub: dict[str, Any], mqtt: dict[str, Any], given: Mapping[str, Any]) -> None:
    """[hub]: ranges; confirmations off with a share group (`given`: the section as written)."""
    _positive("hub.shutdown_timeout", hub["shutdown_timeout"])
    _positive("hub.gap_timeout", hub["gap_timeout"])
    if not 0.1 <= hub["confirm_interval"] <= 60:
        raise ConfigError(f"hub.confirm_interval: must be 0.1..60 seconds (boards resend what stays unconfirmed "
                          f"for buffer.resend_after, 30 s by default), got {hub['confirm_interval']}")
    if mqtt["share_group"] is not None:
        if given.get("confirm") is True:
            raise ConfigError("hub.confirm: not with mqtt.share_group: each hub of a group gets part of a board's "
                              "messages, so none can confirm a run of them; set hub.confirm = false (and "
                              "buffer.confirm false on the boards)")
        hub["confirm"] = False
    if not 1 <= hub["heartbeat"] <= 3600:
        raise ConfigError(f"hub.heartbeat: must be 1..3600 seconds, got {hub['heartbeat']}")


def parse(document: Mapping[str, Any], env: Mapping[str, str] | None = None, base: Path | None = None) -> HubConfig:
    """Validate a parsed TOML document; relative spool.path, api.tls_cert and api.tls_key are taken from
    `base` (the file's folder)."""
    env = os.environ if env is None else env
    for name in document:
        if name not in _SECTIONS and name not in _OPTIONAL and name not in _ARRAYS:
            known = ", ".join([*_SECTIONS, *_OPTIONAL, *_ARRAYS])
            raise ConfigError(f"{name}: unknown section (known sections: {known})")
    values: dict[str, dict[str, Any]] = {}
    for name, (schema, required) in _SECTIONS.items():
        if name not in document and required:
            raise ConfigError(f"{name}: required section [{name}] is missing{_MISSING_HINTS.get(name, '')}")
        values[name] = _section(name, document.get(name, {}), schema, env)

    site = values["site"]
    try:
        check_id("site.id", site["id"])
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    trust = _trust(values["trust"], base)
    _check_mqtt(values["mqtt"], site["id"], trust, document["mqtt"])
    _check_influx(values["influxdb"], document["influxdb"])
    _check_spool(values["spool"], base)
    batch = values["batch"]
    if not 1 <= batch["size"] <= 100_000:
        raise ConfigError(f"batch.size: must be 1..100000, got {batch['size']}")
    _positive("batch.flush_interval", batch["flush_interval"])
    _positive("metrics.interval", values["metrics"]["interval"])
    _check_hub(values["hub"], values["mqtt"], document.get("hub", {}))
    control = _control(values["control"])
    api = _api(document["api"], env, base) if "api" in document else None
    rules = tuple(_rule(f"rules[{i}]", t, env) for i, t in enumerate(_array("rules", document.get("rules", []))))
    schedules = tuple(
        _schedule(f"schedules[{i}]", t, env) for i, t in enumerate(_array("schedules", document.get("schedules", [])))
    )
    _unique("rules", [r.name for r in rules])
    _unique("schedules", [s.name for s in schedules])
    modbus = _modbus(document["modbus"], base) if "modbus" in document else None

    return HubConfig(
        site=SiteConfig(**site),
        mqtt=MqttConfig(**values["mqtt"]),
        influxdb=InfluxConfig(**values["influxdb"]),
        spool=SpoolConfig(**values["spool"]),
        batch=BatchConfig(**batch),
        metrics=MetricsConfig(**values["metrics"]),
        shutdown_timeout=values["hub"]["shutdown_timeout"],
        heartbeat=values["hub"]["heartbeat"],
        confirm=values["hub"]["confirm"],
        confirm_interval=values["hub"]["confirm_interval"],
        gap_timeout=values["hub"]["gap_timeout"],
        control=control,
        api=api,
        rules=rules,
        schedules=schedules,
        modbus=modbus,
        trust=trust,
    )


def _modbus(table: Any, base: Path | None) -> ModbusConfig:
    """[modbus] is validated by hub.modbus.config, which raises ConfigError with the key path."""
    from hub.modbus import config as modbus_config  # noqa: PLC0415 - loaded only with a [modbus] section

    return modbus_config.parse(table, base=base)


def _id_value(path: str, value: str) -> str:
    try:
        return check_id(path, value)
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None


def _control(values: dict[str, Any]) -> ControlConfig:
    _positive("control.ttl", values["ttl"])
    _positive("control.ack_timeout", values["ack_timeout"])
    if not 0 <= values["retries"] <= 10:
        raise ConfigError(f"control.retries: must be 0..10, got {values['retries']}")
    return ControlConfig(**values)


def _api(table: Any, env: Mapping[str, str], base: Path | None) -> ApiConfig:
    if isinstance(table, dict) and "token" in table:
        raise ConfigError("api.token: renamed api.control_token (the control role); api.read_token is the "
                          "read-only role (docs/control.md)")
    values = _section("api", table, _API, env)
    if not 0 <= values["port"] <= 65535:
        raise ConfigError(f"api.port: must be 0..65535 (0: any free port), got {values['port']}")
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
        if values[key] == "":
            raise ConfigError(f"api.{key}: must not be empty")
        if values[key] is not None:
            path = Path(values[key])
            values[key] = base / path if not path.is_absolute() and base is not None else path
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


def _array(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{name}: must be an array of tables ([[{name}]]), got {type(value).__name__}")
    return value


def _unique(name: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ConfigError(f"{name}[{i}].name: {n!r} is used twice")
        seen.add(n)


def _rule(path: str, table: Any, env: Mapping[str, str]) -> Rule:
    v = _section(path, table, _RULE, env)
    for key in ("name", "device", "sensor", "actuator"):
        _id_value(f"{path}.{key}", v[key])
    v["target_device"] = _id_value(f"{path}.target_device", v["target_device"] or v["device"])
    if v["quantity"] not in catalogue.QUANTITIES:
        raise ConfigError(f"{path}.quantity: unknown quantity {v['quantity']!r} (not in the catalogue)")
    if v["below"] >= v["above"]:
        raise ConfigError(f"{path}.below: must be below {path}.above (the hysteresis band)")
    if v["hold_s"] < 0:
        raise ConfigError(f"{path}.hold_s: must not be negative")
    return Rule(v["name"], v["device"], v["sensor"], v["quantity"], v["above"], v["below"], v["hold_s"],
                v["target_device"], v["actuator"], v["high"], v["low"])


def _schedule(path: str, table: Any, env: Mapping[str, str]) -> Schedule:
    v = _section(path, table, _SCHEDULE, env)
    for key in ("name", "device", "actuator"):
        _id_value(f"{path}.{key}", v[key])
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", v["at"])
    if match is None:
        raise ConfigError(f"{path}.at: must be a local time HH:MM, got {v['at']!r}")
    at = dt.time(int(match.group(1)), int(match.group(2)))
    if not 1 <= v["retry_every"] <= 3600:
        raise ConfigError(f"{path}.retry_every: must be 1..3600 seconds, got {v['retry_every']!r}")
    if not 0 <= v["retry_window"] <= 86400:
        raise ConfigError(f"{path}.retry_window: must be 0..86400 seconds (0: no retry), got {v['retry_window']!r}")
    return Schedule(v["name"], v["device"], v["actuator"], at, v["value"], v["retry_every"], v["retry_window"])


def load(path: Path, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate a TOML config file; ConfigError names the file for syntax errors."""
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
    return parse(document, env, base=path.parent.absolute())
