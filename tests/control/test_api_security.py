"""The HTTP API's security over real HTTP on 127.0.0.1 (real sockets, clients bound to a chosen source address):
wrong tokens throttled per address (delays, then 429 with Retry-After), token roles, the audited source, a
trusted reverse proxy's X-Forwarded-For, the log lines, and HTTPS with api.tls_cert/api.tls_key.

The control service is the recording rig of test_service_api (no broker). Timing is asserted only as lower
bounds that asyncio.sleep guarantees (a slowed answer never comes before its delay), never as upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from hub.config import ApiConfig, ConfigError
from hub.control import cli as control_cli
from hub.control.api import make_app, serve_api
from hub.control.throttle import Policy, Throttle
from hub.trust import tls
from tests.control.test_service_api import Rig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

CONTROL = "control-token-0123456789"
READ = "read-token-0123456789ab"
WRONG = "wrong-token-0123456789"
FAST = Policy(first_delay=0.02, max_delay=0.08)  # the default figures but short delays: 7 slowed, 0.46 s
FAST_DELAYS = [0, 0, 0, 0.02, 0.04, 0.08, 0.08, 0.08, 0.08, 0.08]
NEVER = Policy(free=10**9, limit=10**9)  # no throttling: today's behaviour before it
SETPOINT = {"device": "t1", "actuator": "fan1", "value": 80}


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


@pytest.fixture
async def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


@contextlib.asynccontextmanager
async def serving(rig: Rig, config: ApiConfig | None = None,
                  policy: Policy = FAST) -> AsyncIterator[tuple[str, Throttle]]:
    throttle = Throttle(policy)
    server = TestServer(make_app(rig.control, config or ApiConfig(control_token=CONTROL, read_token=READ),
                                 throttle), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", throttle
    finally:
        await server.close()


def client(source: str = "127.0.0.1") -> aiohttp.ClientSession:
    """A client whose connections come from `source` (any 127.x address is local on Linux)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), limit=0))


async def get(session: aiohttp.ClientSession, url: str, token: str, **headers: str) -> tuple[int, Any, Any]:
    async with session.get(url, headers=bearer(token, **headers)) as r:
        return r.status, await r.json(), r.headers


async def post(session: aiohttp.ClientSession, url: str, token: str, **headers: str) -> tuple[int, Any, Any]:
    async with session.post(url, json=SETPOINT, headers=bearer(token, **headers)) as r:
        return r.status, await r.json(), r.headers


async def timed_wrong_tokens(url: str, n: int) -> tuple[list[int], list[float], list[str | None], float]:
    statuses, times, retry = [], [], []
    async with client() as session:
        start = time.monotonic()
        for _ in range(n):
            t = time.monotonic()
            status, _, headers = await get(session, f"{url}/v1/devices", WRONG)
            times.append(time.monotonic() - t)
            statuses.append(status)
            retry.append(headers.get("Retry-After"))
        return statuses, times, retry, time.monotonic() - start


async def test_300_wrong_tokens_from_one_address_are_slowed_then_refused_with_429(rig: Rig) -> None:
    async with serving(rig, policy=NEVER) as (url, _):
        plain, _, plain_retry, plain_elapsed = await timed_wrong_tokens(url, 300)
    assert plain == [401] * 300  # what the API did before: every guess answered, none slowed
    assert plain_retry == [None] * 300

    async with serving(rig) as (url, throttle):
        statuses, times, retry, elapsed = await timed_wrong_tokens(url, 300)
    assert statuses == [401] * 10 + [429] * 290
    assert all(t >= d - 0.001 for t, d in zip(times, FAST_DELAYS, strict=False)), times[:10]
    assert elapsed >= sum(FAST_DELAYS) - 0.01, (elapsed, plain_elapsed)
    assert retry[:10] == [None] * 10
    seconds = [int(r) for r in retry[10:] if r is not None]
    assert len(seconds) == 290
    assert all(1 <= s <= 60 for s in seconds)
    assert seconds[0] == 60
    assert throttle.counts == {"wrong_token": 10, "blocked": 1, "refused": 290}


async def test_a_flood_of_wrong_tokens_does_not_slow_the_right_token_from_another_address(rig: Rig) -> None:
    async with serving(rig, policy=Policy()) as (url, throttle), client() as attacker, \
            client("127.0.0.2") as operator:
        flood = asyncio.gather(*(get(attacker, f"{url}/v1/devices", WRONG) for _ in range(300)))
        await asyncio.sleep(0.1)  # the flood is in: the slowed answers take up to 4 s (the default figures)
        status, body, _ = await get(operator, f"{url}/v1/devices", CONTROL)
        assert status == 200
        assert body["devices"][0]["device"] == "t1"
        status, cmd, _ = await post(operator, f"{url}/v1/setpoints", CONTROL)
        assert status == 202
        assert not flood.done()  # answered while the attacker's slowed answers were still pending
        answers = await flood
        assert sorted(s for s, _, _ in answers) == [401] * 10 + [429] * 290
        refused = [(b, h) for s, b, h in answers if s == 429]
        assert all("too many wrong tokens" in b["error"] for b, _ in refused)
        assert {int(h["Retry-After"]) for _, h in refused} <= set(range(1, 61))
        # the attacker's address is blocked even for the right token: a right guess looks like a wrong one
        status, _, headers = await get(attacker, f"{url}/v1/devices", CONTROL)
        assert status == 429
        assert "Retry-After" in headers
        assert (await get(operator, f"{url}/v1/devices", READ))[0] == 200
    assert throttle.counts["wrong_token"] == 10
    assert [c.source for c in rig.control.commands.values()] == ["api:control"]
    assert cmd["source"] == "api:control"


async def test_a_right_token_forgets_the_wrong_ones_of_its_address(rig: Rig) -> None:
    async with serving(rig) as (url, _), client() as session:
        for _ in range(9):
            assert (await get(session, f"{url}/v1/devices", WRONG))[0] == 401
        assert (await post(session, f"{url}/v1/setpoints", READ))[0] == 403  # a right token, wrong role
        assert [(await get(session, f"{url}/v1/devices", WRONG))[0] for _ in range(11)] == [401] * 10 + [429]


async def test_missing_tokens_are_refused_but_not_counted_as_guesses(rig: Rig) -> None:
    async with serving(rig) as (url, throttle), client() as session:
        for headers in ({}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer"}) * 10:
            async with session.get(f"{url}/v1/devices", headers=headers) as r:
                assert r.status == 401
                assert "missing bearer token" in (await r.json())["error"]
    assert throttle.counts["wrong_token"] == 0


async def test_roles_read_may_get_control_may_set_and_the_source_is_audited(rig: Rig) -> None:
    async with serving(rig) as (url, _), client() as session:
        status, body, _ = await post(session, f"{url}/v1/setpoints", READ)
        assert status == 403
        assert body["needed"] == "control"
        assert body["role"] == "read"
        assert "needs the control role" in body["error"]
        assert rig.sent == []
        async with session.delete(f"{url}/v1/devices", headers=bearer(READ)) as r:
            assert r.status == 403  # every method but GET and HEAD needs the control role

        status, api_cmd, _ = await post(session, f"{url}/v1/setpoints", CONTROL)
        assert (status, api_cmd["source"]) == (202, "api:control")
        status, cli_cmd, _ = await post(session, f"{url}/v1/setpoints", CONTROL, **{"X-Qala-Source": "cli"})
        assert (status, cli_cmd["source"]) == (202, "cli:control")
        status, odd, _ = await post(session, f"{url}/v1/setpoints", CONTROL, **{"X-Qala-Source": "rule:x"})
        assert odd["source"] == "api:control"  # a client cannot claim to be a rule
        assert len(rig.sent) == 3

        for token in (READ, CONTROL):
            status, seen, _ = await get(session, f"{url}/v1/commands/{api_cmd['id']}", token)
            assert (status, seen["id"]) == (200, api_cmd["id"])
            assert (await get(session, f"{url}/v1/devices", token))[0] == 200
    rig.ack(api_cmd["id"])
    rig.ack(cli_cmd["id"])
    audited = {r.value for r in rig.stored if r.field == "source"}
    assert audited == {"api:control", "cli:control"}


async def test_a_read_only_api_refuses_every_setpoint(rig: Rig) -> None:
    async with serving(rig, ApiConfig(read_token=READ)) as (url, _), client() as session:
        assert (await get(session, f"{url}/v1/devices", READ))[0] == 200
        assert (await post(session, f"{url}/v1/setpoints", READ))[0] == 403
        assert (await post(session, f"{url}/v1/setpoints", CONTROL))[0] == 401  # not a token of this API
    assert rig.sent == []


async def test_behind_the_trusted_proxy_the_forwarded_client_is_throttled(rig: Rig) -> None:
    config = ApiConfig(control_token=CONTROL, trusted_proxy="127.0.0.1")
    async with serving(rig, config) as (url, _), client() as proxy:
        attacker = {"X-Forwarded-For": "198.51.100.7"}
        assert [(await get(proxy, f"{url}/v1/devices", WRONG, **attacker))[0] for _ in range(11)] == \
            [401] * 10 + [429]
        # the proxy appends the address it saw: entries the client sent before it do not change the key
        spoofed = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
        assert (await get(proxy, f"{url}/v1/devices", CONTROL, **spoofed))[0] == 429
        assert (await get(proxy, f"{url}/v1/devices", CONTROL, **{"X-Forwarded-For": "198.51.100.8"}))[0] == 200
        assert (await get(proxy, f"{url}/v1/devices", CONTROL))[0] == 200  # the proxy's own requests
        assert (await get(proxy, f"{url}/v1/devices", CONTROL, **{"X-Forwarded-For": "junk"}))[0] == 200


async def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(rig: Rig) -> None:
    async with serving(rig) as (url, _), client() as session:
        statuses = [(await get(session, f"{url}/v1/devices", WRONG, **{"X-Forwarded-For": f"10.0.0.{i}"}))[0]
                    for i in range(11)]
    assert statuses == [401] * 10 + [429]


async def test_warnings_name_the_address_never_the_token_and_are_few(rig: Rig,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hub.control.api")
    async with serving(rig) as (url, _), client() as session:
        for _ in range(30):
            await get(session, f"{url}/v1/devices", WRONG)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0] == "api: wrong token remote=127.0.0.1 path=/v1/devices"
    assert lines[1] == "api: wrong tokens remote=127.0.0.1 failures=10: blocked for 60 s (429)"
    assert WRONG not in caplog.text
    assert "Bearer" not in caplog.text


# ------------------------------------------------------------------------------------------------- TLS


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    ca_pem, ca_key = tls.make_ca("qala test api CA")
    cert_pem, key_pem = tls.make_server_cert(ca_pem, ca_key, ["localhost"], ["127.0.0.1"])
    other_ca, _ = tls.make_ca("another CA")
    out = {"ca": ca_pem, "other_ca": other_ca, "cert": cert_pem, "key": key_pem}
    paths = {name: tmp_path / f"{name}.pem" for name in out}
    for name, data in out.items():
        paths[name].write_bytes(data)
    return paths


@contextlib.asynccontextmanager
async def serving_tls(rig: Rig, certs: dict[str, Path]) -> AsyncIterator[int]:
    config = ApiConfig(control_token=CONTROL, read_token=READ, port=0, tls_cert=certs["cert"], tls_key=certs["key"])
    port, forever = await serve_api(config, rig.control)
    task = asyncio.create_task(forever)
    try:
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_https_with_tls_cert_and_key(rig: Rig, certs: dict[str, Path]) -> None:
    async with serving_tls(rig, certs) as port, client() as session:
        trusting = ssl.create_default_context(cafile=certs["ca"])
        async with session.get(f"https://127.0.0.1:{port}/v1/devices", headers=bearer(READ), ssl=trusting) as r:
            assert r.status == 200
            assert (await r.json())["devices"][0]["device"] == "t1"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://127.0.0.1:{port}/v1/devices", headers=bearer(READ),
                              ssl=ssl.create_default_context(cafile=certs["other_ca"]))
        with pytest.raises(aiohttp.ClientError):  # plain HTTP to the TLS port gets no answer
            await session.get(f"http://127.0.0.1:{port}/v1/devices", headers=bearer(READ))


def set_args(api: str, token: str | None = CONTROL, timeout: float = 0.1) -> argparse.Namespace:
    return argparse.Namespace(device="t1", actuator="fan1", value="80", config=None, api=api, token=token,
                              timeout=timeout, ttl=None)


async def test_qala_set_over_https_verifies_with_ssl_cert_file(rig: Rig, certs: dict[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    async with serving_tls(rig, certs) as port:
        monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca"]))
        code = await asyncio.to_thread(control_cli.run_set, set_args(f"https://127.0.0.1:{port}"))
        assert code == control_cli.TIMED_OUT  # sent, and no board to ack within 0.1 s
        assert "t1.fan1 sent" in capsys.readouterr().out
        monkeypatch.setenv("SSL_CERT_FILE", str(certs["other_ca"]))
        code = await asyncio.to_thread(control_cli.run_set, set_args(f"https://127.0.0.1:{port}"))
        assert code == control_cli.UNREACHABLE
        assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    assert [c.source for c in rig.control.commands.values()] == ["cli:control"]


@pytest.mark.parametrize(("cert", "key"), [("missing", "key"), ("cert", "missing"), ("key", "cert"),
                                           ("other_ca", "key")])
async def test_a_tls_cert_or_key_that_does_not_load_is_a_config_error(rig: Rig, certs: dict[str, Path],
                                                                     cert: str, key: str) -> None:
    paths = certs | {"missing": certs["ca"].parent / "missing.pem"}
    config = ApiConfig(control_token=CONTROL, port=0, tls_cert=paths[cert], tls_key=paths[key])
    with pytest.raises(ConfigError, match=r"^api\.tls_cert: cannot load .* with api\.tls_key"):
        await serve_api(config, rig.control)
