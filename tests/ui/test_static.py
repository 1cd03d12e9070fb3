"""The operator page's files as the API serves them, without a browser or a broker (aiohttp's test client):
the redirect, the headers on every answer (page files, JSON, errors), HEAD, what is not served, and that a
missing file of the installed package is a clear error, not a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.config import ApiConfig, ConfigError, ControlConfig
from hub.control.api import SECURITY_HEADERS, UI_FILES, UI_FOLDER, load_ui, make_app
from hub.control.service import ControlService
from hub.registry import Registry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TOKEN = "static-test-token-0123456789"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    control = ControlService("lab", ControlConfig(), Registry(tmp_path / "registry.json"),
                             publish=lambda t, p: None, emit=lambda r: None)
    async with TestClient(TestServer(make_app(control, ApiConfig(control_token=TOKEN)))) as c:
        yield c


async def test_the_page_files_need_no_token_and_carry_the_headers(client: TestClient[Any, Any]) -> None:
    for path in ("/", "/ui"):
        r = await client.get(path, allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (302, "/ui/")
    for path, name in [("/ui/", "index.html"), *((f"/ui/{n}", n) for n in UI_FILES)]:
        r = await client.get(path)
        assert r.status == 200, path
        assert r.content_type == UI_FILES[name]
        assert await r.read() == (UI_FOLDER / name).read_bytes()
        for header, value in SECURITY_HEADERS.items():
            assert r.headers[header] == value
        r = await client.head(path)
        assert r.status == 200


@pytest.mark.parametrize("path", ["/ui/nothing.js", "/ui/../api.py", "/ui/%2e%2e/control/api.py", "/ui/sub/app.js"])
async def test_nothing_else_is_served(client: TestClient[Any, Any], path: str) -> None:
    r = await client.get(path)
    assert r.status == 404
    assert "error" in await r.json()
    assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_api_answers_carry_the_headers_too(client: TestClient[Any, Any]) -> None:
    r = await client.get("/v1/devices")
    assert r.status == 401
    assert r.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    r = await client.get("/v1/devices", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"operator page's file .*index.html cannot be read .*reinstall qala"):
        load_ui(tmp_path)
