"""`qala set`'s arguments and config: each wrong one gets a usage error (exit 2) naming it, not "unreachable".

Runs through hub.cli.main; the API is a real aiohttp server on 127.0.0.1 (the rig of test_service_api)
where one is needed. hub.toml files are the shipped example with its [api] table replaced, so they stay
valid whatever other sections the example needs.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestServer

from hub import cli
from hub.config import ApiConfig
from hub.control import cli as control_cli
from hub.control.api import make_app
from tests.control.test_service_api import Rig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

REPO = Path(__file__).resolve().parents[2]
CONTROL = "control-token-0123456789"
READ = "read-token-0123456789ab"
EXAMPLE_ENV = {"QALA_MQTT_PASSWORD": "m", "QALA_INFLUX_PASSWORD": "i"}


def hub_toml(tmp: Path, api: dict[str, Any]) -> Path:
    """The shipped example with `api` as its [api] table (scalars only: enough for these tests)."""
    doc = tomllib.loads((REPO / "hub" / "config.example.toml").read_text())
    doc["api"] = api
    lines = []
    for name, table in doc.items():
        if isinstance(table, dict) and all(not isinstance(v, (dict, list)) for v in table.values()):
            lines.append(f"[{name}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path = tmp / "hub.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QALA_API_CONTROL", "QALA_API_TOKEN", "QALA_API_READ"):
        monkeypatch.delenv(name, raising=False)
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[str]:
    rig = Rig(tmp_path)
    server = TestServer(make_app(rig.control, ApiConfig(control_token=CONTROL, read_token=READ)), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


def qala_set(*args: str) -> int:
    return cli.main(["set", "t1", "fan1", "80", "--timeout", "0.1", *args])


@pytest.mark.parametrize("url", ["127.0.0.1:8470", "localhost:8470", "ftp://127.0.0.1:8470", "http://", "",
                                 "http:// 127.0.0.1"])
def test_an_api_url_without_http_or_https_is_a_usage_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert qala_set("--api", url, "--token", CONTROL) == control_cli.USAGE
    err = capsys.readouterr().err
    assert "--api: the URL needs http:// or https://" in err
    assert "cannot reach" not in err


def test_a_closed_port_is_unreachable_not_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert qala_set("--api", "http://127.0.0.1:1", "--token", CONTROL) == control_cli.UNREACHABLE
    assert "cannot reach the hub's API at http://127.0.0.1:1" in capsys.readouterr().err


def test_no_token_names_the_control_variable(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert qala_set("--api", "http://127.0.0.1:8470") == control_cli.USAGE
    assert "(or $QALA_API_CONTROL)" in capsys.readouterr().err
    monkeypatch.setenv("QALA_API_TOKEN", CONTROL)  # the old name is not read, and the message says so
    assert qala_set("--api", "http://127.0.0.1:8470") == control_cli.USAGE
    assert "$QALA_API_TOKEN is no longer read: it is $QALA_API_CONTROL" in capsys.readouterr().err


async def test_the_control_token_from_the_environment(api: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QALA_API_CONTROL", CONTROL)
    assert await asyncio.to_thread(qala_set, "--api", api) == control_cli.TIMED_OUT  # sent; no board acks
    assert "t1.fan1 sent" in capsys.readouterr().out


async def test_a_read_token_is_refused_with_the_role_it_needs(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(qala_set, "--api", api, "--token", READ) == control_cli.USAGE
    err = capsys.readouterr().err
    assert "needs the control role" in err
    assert "(HTTP 403)" in err


async def test_a_wrong_token_is_a_usage_error(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(qala_set, "--api", api, "--token", "x" * 20) == control_cli.USAGE
    assert "wrong token (HTTP 401)" in capsys.readouterr().err


def test_config_with_a_read_only_api_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = hub_toml(tmp_path, {"read_token": READ})
    assert qala_set("--config", str(path)) == control_cli.USAGE
    assert "[api] has no control_token" in capsys.readouterr().err


def test_config_with_the_old_token_key_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = hub_toml(tmp_path, {"token": CONTROL})
    assert qala_set("--config", str(path)) == control_cli.USAGE
    assert "api.token: renamed api.control_token" in capsys.readouterr().err


@pytest.mark.parametrize(("api", "url"), [
    ({"port": 9001}, "http://127.0.0.1:9001"),
    ({"listen": "0.0.0.0", "port": 9002}, "http://127.0.0.1:9002"),
    ({"listen": "::1", "port": 9003}, "http://[::1]:9003"),
    ({"listen": "hub.example", "port": 9004, "tls_cert": "c.pem", "tls_key": "k.pem"}, "https://hub.example:9004"),
])
def test_config_gives_the_url_and_the_control_token(tmp_path: Path, api: dict[str, Any], url: str) -> None:
    path = hub_toml(tmp_path, {"control_token": CONTROL, "read_token": READ} | api)
    args = cli.build_parser().parse_args(["set", "t1", "fan1", "80", "--config", str(path)])
    assert control_cli._target(args) == (url, CONTROL)


def test_config_with_a_bad_api_url_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = hub_toml(tmp_path, {"control_token": CONTROL})
    assert qala_set("--config", str(path), "--api", "127.0.0.1:8470") == control_cli.USAGE
    assert "--api: the URL needs http:// or https://" in capsys.readouterr().err
