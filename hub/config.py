"""The hub's configuration: a TOML file validated into typed, frozen dataclasses before any socket opens.

Owns the key list, the defaults and the error messages. Every problem raises ConfigError whose message
starts with the key path and states the rule (`influxdb.bucket: required when api = "v2"`), so the hub
stops at start-up with a line an operator can act on. Secrets: any string value may be written as
`${NAME}` and is then read from the environment variable NAME (a missing variable is an error naming the
key). docs/hub.md documents every key; hub/config.example.toml is a complete example that a test loads.

Imports only the standard library and protocols.topics (for the site-id rule); does no I/O except reading
the file and the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    from collections.abc import Mapping


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key path and the rule."""


@dataclass(frozen=True)
class SiteConfig:
    id: str
    require_birth: bool = True
    """Telemetry from a device whose birth message the hub never saw is rejected (`unknown_device`)."""


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
class HubConfig:
    site: SiteConfig
    mqtt: MqttConfig
    influxdb: InfluxConfig
    spool: SpoolConfig
    batch: BatchConfig
    metrics: MetricsConfig
    shutdown_timeout: float = 10.0
    """On SIGTERM, how long the hub keeps sending spooled batches before it exits (the rest stays spooled)."""


# ---------------------------------------------------------------------------------------------- schema

_REQUIRED = object()
_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

# key -> (python type, default); int keys accept only integers, float keys integers or floats.
_Schema = dict[str, tuple[type, Any]]

_SITE: _Schema = {"id": (str, _REQUIRED), "require_birth": (bool, True)}
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
_HUB: _Schema = {"shutdown_timeout": (float, 10.0)}
_SECTIONS: dict[str, tuple[_Schema, bool]] = {  # name -> (schema, section required)
    "site": (_SITE, True),
    "mqtt": (_MQTT, True),
    "influxdb": (_INFLUX, True),
    "spool": (_SPOOL, True),
    "batch": (_BATCH, False),
    "metrics": (_METRICS, False),
    "hub": (_HUB, False),
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


def _check_mqtt(mqtt: dict[str, Any], site: str) -> None:
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


def parse(document: Mapping[str, Any], env: Mapping[str, str] | None = None, base: Path | None = None) -> HubConfig:
    """Validate a parsed TOML document; relative spool paths are taken from `base` (the file's folder)."""
    env = os.environ if env is None else env
    for name in document:
        if name not in _SECTIONS:
            raise ConfigError(f"{name}: unknown section (known sections: {', '.join(_SECTIONS)})")
    values: dict[str, dict[str, Any]] = {}
    for name, (schema, required) in _SECTIONS.items():
        if name not in document and required:
            raise ConfigError(f"{name}: required section [{name}] is missing")
        values[name] = _section(name, document.get(name, {}), schema, env)

    site = values["site"]
    try:
        check_id("site.id", site["id"])
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    _check_mqtt(values["mqtt"], site["id"])
    _check_influx(values["influxdb"], document["influxdb"])
    _check_spool(values["spool"], base)
    batch = values["batch"]
    if not 1 <= batch["size"] <= 100_000:
        raise ConfigError(f"batch.size: must be 1..100000, got {batch['size']}")
    _positive("batch.flush_interval", batch["flush_interval"])
    _positive("metrics.interval", values["metrics"]["interval"])
    _positive("hub.shutdown_timeout", values["hub"]["shutdown_timeout"])

    return HubConfig(
        site=SiteConfig(**site),
        mqtt=MqttConfig(**values["mqtt"]),
        influxdb=InfluxConfig(**values["influxdb"]),
        spool=SpoolConfig(**values["spool"]),
        batch=BatchConfig(**batch),
        metrics=MetricsConfig(**values["metrics"]),
        shutdown_timeout=values["hub"]["shutdown_timeout"],
    )


def load(path: Path, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate a TOML config file; ConfigError names the file for syntax errors."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(document, env, base=path.parent.absolute())
