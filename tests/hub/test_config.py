"""Config validation: every kind of bad key stops the hub with a message naming the key path."""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import pytest

from hub import cli
from hub.config import ConfigError, load, parse

REPO = Path(__file__).resolve().parents[2]
ENV = {"QALA_MQTT_PASSWORD": "mqtt-secret", "QALA_INFLUX_PASSWORD": "influx-secret",
       "QALA_API_CONTROL": "api-control-0123456789", "QALA_API_READ": "api-read-0123456789",
       "QALA_NORTH_SECRET": "north-secret-0123456789"}

V1: dict[str, Any] = {
    "site": {"id": "ast-01"},
    "mqtt": {"host": "127.0.0.1"},
    "influxdb": {"api": "v1", "url": "http://127.0.0.1:8086", "database": "qala"},
    "spool": {"path": "/tmp/qala"},
    "trust": {"plain": True},  # these tests are about other sections; [trust] has tests/hub/test_config_trust.py
}
V2: dict[str, Any] = V1 | {
    "influxdb": {"api": "v2", "url": "http://127.0.0.1:8086/", "org": "o", "bucket": "b", "token": "t"},
}


def with_(doc: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    table = out.setdefault(section, {})
    for key, value in values.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return out


def error(doc: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(doc, env or {})
    return str(info.value)


def test_the_shipped_example_loads() -> None:
    config = load(REPO / "hub" / "config.example.toml", env=ENV)
    assert config.site.id == "ast-01"
    assert config.trust.store == Path("/var/lib/qala/store")
    assert (config.mqtt.tls, config.mqtt.port, config.mqtt.client_id) == (True, 8883, "hub/ast-01/main")
    assert config.mqtt.ca_file == "/var/lib/qala/store/tls/ca.pem"
    assert config.mqtt.username is None  # from the store, when the hub starts
    assert config.influxdb.api == "v1"
    assert config.influxdb.password == "influx-secret"
    assert config.spool.path == Path("/var/lib/qala/hub")
    assert config.api is not None
    assert config.api.tokens() == (("control", "api-control-0123456789"), ("read", "api-read-0123456789"))
    assert [r.name for r in config.rules] == ["co2-fan"]
    assert config.north.mqtt
    [webhook] = config.north.webhooks
    assert (webhook.origin, webhook.secret, webhook.events) == ("https://situation-centre.example",
                                                                "north-secret-0123456789", ("alert", "summary"))
    assert [s.name for s in config.schedules] == ["fan-night"]


def test_minimal_configs_get_defaults() -> None:
    v1 = parse(V1, {})
    assert v1.mqtt.port == 1883
    assert v1.mqtt.client_id == "qala-hub-ast-01"
    assert v1.batch.size == 5000
    assert v1.influxdb.retention_policy == ""
    v2 = parse(V2, {})
    assert v2.influxdb.url == "http://127.0.0.1:8086"
    assert (v2.influxdb.org, v2.influxdb.bucket, v2.influxdb.token) == ("o", "b", "t")


def test_secrets_are_not_in_the_repr() -> None:
    config = parse(with_(V2, "mqtt", username="u", password="hunter2"), {})
    assert "hunter2" not in repr(config)
    assert "'t'" not in repr(config.influxdb)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**V1, "extra": {}}, "extra: unknown section"),
        (with_(V1, "mqtt", hots="x"), "mqtt.hots: unknown key"),
        (with_(V1, "site", id=None), "site.id: required"),
        ({k: v for k, v in V1.items() if k != "spool"}, "spool: required section [spool] is missing"),
        (with_(V1, "mqtt", port="1883"), "mqtt.port: must be an integer, got str"),
        (with_(V1, "mqtt", port=True), "mqtt.port: must be an integer, got bool"),
        (with_(V1, "mqtt", port=70000), "mqtt.port: must be 1..65535"),
        (with_(V1, "mqtt", tls="yes"), "mqtt.tls: must be true or false"),
        (with_(V1, "mqtt", client_id=""), "mqtt.client_id: must not be empty"),
        (with_(V1, "mqtt", password="p"), "mqtt.password: given without mqtt.username"),
        (with_(V1, "mqtt", ca_file="/ca.pem"), "mqtt.ca_file: only used with tls = true"),
        (with_(V1, "mqtt", reconnect_min=5.0, reconnect_max=1.0), "mqtt.reconnect_max: must not be below"),
        (with_(V1, "site", id="bad site"), "site.id: character ' ' not allowed"),
        (with_(V1, "mqtt", share_group="a/b"), "mqtt.share_group: 1..32 of A-Z a-z 0-9 _ -"),
        (with_(V1, "influxdb", api="v3"), "influxdb.api: must be one of v1, v2, got 'v3'"),
        (with_(V1, "influxdb", url="localhost:8086"), "influxdb.url: must be an http:// or https:// URL"),
        (with_(V1, "influxdb", database=None), 'influxdb.database: required when api = "v1"'),
        (with_(V1, "influxdb", bucket="b"), 'influxdb.bucket: not used when api = "v1"'),
        (with_(V2, "influxdb", bucket=None), 'influxdb.bucket: required when api = "v2"'),
        (with_(V2, "influxdb", token=None), 'influxdb.token: required when api = "v2"'),
        (with_(V2, "influxdb", database="d"), 'influxdb.database: not used when api = "v2"'),
        (with_(V1, "influxdb", timeout=0), "influxdb.timeout: must be positive"),
        (with_(V1, "influxdb", timeout="10"), "influxdb.timeout: must be a number, got str"),
        (with_(V1, "spool", max_bytes=1000), "spool.max_bytes: must be at least 1048576 bytes"),
        (with_(V1, "spool", max_bytes=1.5e9), "spool.max_bytes: must be an integer, got float"),
        (with_(V1, "batch", size=0), "batch.size: must be 1..100000"),
        (with_(V1, "batch", flush_interval=-1), "batch.flush_interval: must be positive"),
        (with_(V1, "metrics", interval=0), "metrics.interval: must be positive"),
        ({**V1, "mqtt": "127.0.0.1"}, "mqtt: must be a table"),
    ],
)
def test_bad_config_names_the_key(doc: dict[str, Any], message: str) -> None:
    assert message in error(doc)
    assert error(doc).startswith(message.split(":", maxsplit=1)[0])


def test_confirmation_settings() -> None:
    assert (parse(V1, {}).confirm_interval, parse(V1, {}).gap_timeout) == (1.0, 600.0)
    assert parse(with_(V1, "hub", confirm_interval=5), {}).confirm_interval == 5.0
    with pytest.raises(ConfigError, match=r"hub\.confirm_interval: must be 0\.1\.\.60 seconds"):
        parse(with_(V1, "hub", confirm_interval=120), {})
    with pytest.raises(ConfigError, match=r"hub\.gap_timeout"):
        parse(with_(V1, "hub", gap_timeout=0), {})
    with pytest.raises(ConfigError, match=r"hub\.confirm: must be"):
        parse(with_(V1, "hub", confirm="yes"), {})
    with pytest.raises(ConfigError, match=r"hub\.heartbeat: must be 1\.\.3600 seconds, got 0"):
        parse(with_(V1, "hub", heartbeat=0), {})
    with pytest.raises(ConfigError, match=r"hub\.heartbeat: must be"):
        parse(with_(V1, "hub", heartbeat="10s"), {})


def test_share_group() -> None:
    assert parse(V1, {}).mqtt.share_group is None
    assert parse(V1, {}).confirm is True
    grouped = parse(with_(V1, "mqtt", share_group="hubs-1"), {})
    assert grouped.mqtt.share_group == "hubs-1"
    assert grouped.confirm is False  # a hub of a group sees only part of each board's messages
    with pytest.raises(ConfigError, match=r"hub\.confirm: not with mqtt\.share_group"):
        parse(with_(with_(V1, "mqtt", share_group="hubs-1"), "hub", confirm=True), {})


def test_environment_variables_for_secrets() -> None:
    doc = with_(V2, "influxdb", token="${QALA_TOKEN}")
    assert parse(doc, {"QALA_TOKEN": "s3cret"}).influxdb.token == "s3cret"
    assert error(doc, {}) == "influxdb.token: environment variable QALA_TOKEN is not set"
    literal = with_(V2, "influxdb", token="a${B}c")  # only a whole-value ${NAME} is a reference
    assert parse(literal, {}).influxdb.token == "a${B}c"


def test_relative_spool_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[site]\nid="s"\n[mqtt]\nhost="h"\n[influxdb]\napi="v1"\nurl="http://h"\ndatabase="d"\n'
                    '[spool]\npath="state"\n[trust]\nstore="store"\n')
    assert load(path).trust.store == tmp_path / "store"
    assert load(path).spool.path == tmp_path / "state"


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[site\n")
    with pytest.raises(ConfigError, match=r"hub\.toml: not valid TOML"):
        load(path)


def test_cli_stops_with_the_message_before_opening_any_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[site]\nid="s"\n[mqtt]\nhost="h"\nport="x"\n')
    assert cli.main(["hub", "run", "--config", str(path)]) == 2
    assert f"configuration error: {path}: mqtt.port: must be an integer" in capsys.readouterr().err


PLAIN_HUB = """[site]
id = "lab"
[mqtt]
host = "127.0.0.1"
port = 1
tls = false
[trust]
plain = true  # no broker is reached here: the start stops before
[influxdb]
api = "v1"
url = "http://127.0.0.1:1"
database = "qala"
"""


def test_a_spool_path_the_hub_cannot_create_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("in the way")
    path = tmp_path / "hub.toml"
    path.write_text(PLAIN_HUB + f'[spool]\npath = "{tmp_path / "afile" / "state"}"\n')
    assert cli.main(["hub", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    state = tmp_path / "afile" / "state"
    assert f"configuration error: {path}: spool.path: cannot create {state}: Not a directory" in err
    assert "Traceback" not in err


def test_an_api_port_taken_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "hub.toml"
        path.write_text(PLAIN_HUB + f'[spool]\npath = "{tmp_path / "state"}"\n'
                        f'[api]\nport = {port}\nread_token = "read-token-0123456789"\n')
        assert cli.main(["hub", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"configuration error: {path}: api.listen/api.port: cannot listen on 127.0.0.1:{port}" in err
    assert "choose another api.port" in err
    assert "Traceback" not in err
