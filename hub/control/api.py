"""The hub's control HTTP API (aiohttp.web): send a setpoint, read a command's state, list devices.

    GET  /openapi.json           the OpenAPI 3.1 document (no token needed)
    POST /v1/setpoints           {device, actuator, value, ttl_s?, wait?, timeout_s?} -> 202 (or 200 with wait)
    GET  /v1/commands/{id}       a command's state
    GET  /v1/devices             devices with their actuators, limits and last values

Every /v1 request needs `Authorization: Bearer <api.token>`. Errors are JSON `{"error": "...", "field": ...}`:
400 malformed body or unknown key, 401 missing or wrong token, 404 unknown device, actuator, command or path,
422 a value of the wrong type or outside the device's limits (then the refused command is returned too: it
was audited as `rejected`). Binds 127.0.0.1 by default (`api.listen`).

Imports aiohttp and hub.control.service; nothing else of the hub.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.control.command import REJECTED
from hub.control.service import ControlError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from hub.config import ApiConfig
    from hub.control.service import ControlService

log = logging.getLogger(__name__)

CONTROL: web.AppKey[ControlService] = web.AppKey("control")
TOKEN: web.AppKey[str] = web.AppKey("token")
MAX_WAIT = 120.0
_SETPOINT_KEYS = ("device", "actuator", "value", "ttl_s", "wait", "timeout_s")

_COMMAND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "device": {"type": "string"},
        "actuator": {"type": "string"},
        "value": {"type": "number"},
        "transport": {"enum": ["mqtt", "modbus"]},
        "source": {"type": "string", "description": "api, cli, rule:<name>, schedule:<name>"},
        "state": {"enum": ["pending", "sent", "applied", "rejected", "timed_out"]},
        "attempts": {"type": "integer"},
        "created_ms": {"type": "integer"},
        "expires_ms": {"type": "integer"},
        "done_ms": {"type": ["integer", "null"]},
        "applied": {"type": ["number", "null"], "description": "the value the device reports it applied"},
        "reason": {"type": ["string", "null"], "description": "why it was rejected or timed out"},
        "latency_ms": {"type": ["integer", "null"]},
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
          "required": ["error"]}


def _resp(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = {"$ref": "#/components/schemas/Error"}
_CMD = {"$ref": "#/components/schemas/Command"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Qala hub control API", "version": "1",
             "description": "Setpoints to actuators, acknowledged, limited and audited (docs/control.md)."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Command": _COMMAND_SCHEMA, "Error": _ERROR},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/setpoints": {"post": {
            "summary": "Send a setpoint to a device's actuator",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "required": ["device", "actuator", "value"],
                "properties": {
                    "device": {"type": "string"}, "actuator": {"type": "string"}, "value": {"type": "number"},
                    "ttl_s": {"type": "number", "description": "seconds before the command expires"},
                    "wait": {"type": "boolean", "description": "answer only once the command is final"},
                    "timeout_s": {"type": "number", "description": "longest wait (default: until final)"},
                }}}}},
            "responses": {
                "200": _resp("the final command (wait = true)", _CMD),
                "202": _resp("the command, sent", _CMD),
                "400": _resp("malformed body or unknown key", _ERR),
                "401": _resp("missing or wrong token", _ERR),
                "404": _resp("unknown device or actuator", _ERR),
                "422": _resp("wrong type or outside the limits (the refused command is in `command`)", _ERR),
            },
        }},
        "/v1/commands/{id}": {"get": {
            "summary": "A command's state",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _resp("the command", _CMD), "401": _resp("missing or wrong token", _ERR),
                          "404": _resp("unknown command id", _ERR)},
        }},
        "/v1/devices": {"get": {
            "summary": "Devices with their actuators, limits and last values",
            "responses": {"200": _resp("the devices", {"type": "object", "properties": {"devices": {
                "type": "array", "items": {"type": "object"}}}}), "401": _resp("missing or wrong token", _ERR)},
        }},
    },
}


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            return _error(401, "missing bearer token (Authorization: Bearer <api.token>)")
        if not hmac.compare_digest(given[7:].encode(), request.app[TOKEN].encode()):
            log.warning("api: wrong token remote=%s path=%s", request.remote, request.path)
            return _error(401, "wrong token")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason)


async def _openapi(_request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


def _check_body(raw: bytes) -> dict[str, Any] | web.Response:  # noqa: PLR0911 - a return per refusal
    """The setpoint request's body, or the error response that refuses it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeError):
        return _error(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    for key in body:
        if key not in _SETPOINT_KEYS:
            return _error(400, f"unknown key {key!r} (known: {', '.join(_SETPOINT_KEYS)})", key)
    for key in ("device", "actuator", "value"):
        if key not in body:
            return _error(400, "required", key)
    wait = body.get("wait", False)
    if not isinstance(wait, bool):
        return _error(422, "must be true or false", "wait")
    timeout = body.get("timeout_s", MAX_WAIT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_WAIT:
        return _error(422, f"must be a number of seconds in (0, {MAX_WAIT:g}]", "timeout_s")
    return body


async def _setpoint(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    body = _check_body(await request.read())
    if isinstance(body, web.Response):
        return body
    source = request.headers.get("X-Qala-Source", "api")
    if source not in ("api", "cli"):
        source = "api"
    try:
        cmd = control.submit(body["device"], body["actuator"], body["value"], ttl_s=body.get("ttl_s"),
                             source=source)
    except ControlError as exc:
        return _error(exc.status, exc.message, exc.field)
    if cmd.state == REJECTED:
        return _error(422, cmd.reason or "rejected", "value", command=cmd.as_dict())
    if body.get("wait", False):
        await control.wait(cmd.id, body.get("timeout_s", MAX_WAIT))
        return web.json_response(cmd.as_dict(), status=200)
    return web.json_response(cmd.as_dict(), status=202)


async def _command(request: web.Request) -> web.Response:
    cmd = request.app[CONTROL].commands.get(request.match_info["id"])
    if cmd is None:
        return _error(404, "unknown command id", "id")
    return web.json_response(cmd.as_dict())


async def _devices(request: web.Request) -> web.Response:
    return web.json_response({"devices": request.app[CONTROL].devices()})


def make_app(control: ControlService, token: str) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[CONTROL] = control
    app[TOKEN] = token
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_post("/v1/setpoints", _setpoint)
    app.router.add_get("/v1/commands/{id}", _command)
    app.router.add_get("/v1/devices", _devices)
    return app


async def serve_api(config: ApiConfig, control: ControlService) -> tuple[int, Coroutine[Any, Any, None]]:
    """Start listening; (bound port, a coroutine that serves until cancelled and then cleans up)."""
    runner = web.AppRunner(make_app(control, config.token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.listen, config.port)
    await site.start()
    port = int(runner.addresses[0][1]) if runner.addresses else config.port
    log.info("api: listening host=%s port=%d", config.listen, port)

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    return port, forever()
