"""The hub's control HTTP API (aiohttp.web): send a setpoint, read a command's state, list devices; and the
operator page's static files.

    GET  /                       redirects to /ui/
    GET  /ui/ (app.js, ...)      the operator page (hub/ui, shipped in the package; no token needed: its
                                 data calls carry the token the person enters)
    GET  /openapi.json           the OpenAPI 3.1 document (no token needed)
    POST /v1/setpoints           {device, actuator, value, ttl_s?, wait?, timeout_s?} -> 202 (or 200 with wait)
    GET  /v1/commands/{id}       a command's state
    GET  /v1/devices             devices with their actuators, limits, place, state and last values
    GET  /v1/alerts              alerts, newest first (?state=open|all, ?limit=N)
    GET  /v1/alerts/{id}         one alert
    POST /v1/alerts/{id}/ack     {note?} -> the alert, acknowledged (409 once it is resolved)
    GET  /v1/districts           coverage per district (hub.coverage)
    GET  /v1/releases, POST /v1/rollouts, GET /v1/rollouts[/{id}], POST /v1/rollouts/{id}/pause|resume|abort
                                 over-the-air roll-outs (hub.ota.api adds them through `more`)

Every /v1 request needs `Authorization: Bearer <token>`, one of two roles: `api.read_token` may GET,
`api.control_token` may do everything (POST /v1/setpoints too). Each command's `source` (audited) is
`api:<role>`, or `cli:<role>` when `qala set` sent it; an acknowledgement's `acked_by` is `api:<role>` too.
The alert and district endpoints answer from the hub's alerting loop (hub.alerting); an app made without one
(tests of the control part alone) answers them 404. Errors are JSON `{"error": "...", "field": ...}`:
400 malformed body or unknown key, 401 missing or wrong token, 403 a read token on a request that needs the
control role (`needed` names it), 404 unknown device, actuator, command or path, 422 a value of the wrong
type or outside the device's limits (then the refused command is returned too: it was audited as
`rejected`), 429 too many wrong tokens from the client's address (Retry-After says when to try again;
hub.control.throttle decides, the middleware here applies it). Binds 127.0.0.1 by default (`api.listen`);
HTTPS with `api.tls_cert` and `api.tls_key`. Tokens are compared in constant time and never logged.
Every answer carries `X-Content-Type-Options: nosniff` and a Content-Security-Policy that allows only this
origin's own scripts, styles and API calls (no inline scripts, no framing, no form posts elsewhere).

Imports aiohttp, hub.control.service and hub.control.throttle, hub.alerts (its errors), hub.config for its
types and ConfigError, and protocols.catalogue (the reading qualities the schema names); the alerting loop is
handed in. Reads the operator page's files (hub/ui) once, when
the app is made; knows nothing of what the page does with the API.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.alerts import AlertError
from hub.config import ConfigError
from hub.control.command import REJECTED
from hub.control.service import ControlError
from hub.control.throttle import Throttle, client_key
from protocols import catalogue

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from hub.alerting import Alerting
    from hub.config import ApiConfig
    from hub.control.service import ControlService

log = logging.getLogger(__name__)

CONTROL: web.AppKey[ControlService] = web.AppKey("control")
ALERTING: web.AppKey[Alerting | None] = web.AppKey("alerting")
TOKENS: web.AppKey[tuple[tuple[str, bytes], ...]] = web.AppKey("tokens")
"""(role, token) of each configured token."""
THROTTLE: web.AppKey[Throttle] = web.AppKey("throttle")
PROXY: web.AppKey[str | None] = web.AppKey("proxy")
ROLE: web.RequestKey[str] = web.RequestKey("role")
"""The role of the request's token: `read` or `control`."""
READ_METHODS = ("GET", "HEAD")
"""Methods the read role may use; every other method needs the control role."""
MAX_WAIT = 120.0
MAX_ALERTS = 1000
"""The most alerts GET /v1/alerts answers with (`limit`); 100 by default."""
_SETPOINT_KEYS = ("device", "actuator", "value", "ttl_s", "wait", "timeout_s")
UI_FOLDER = Path(__file__).resolve().parent.parent / "ui"
"""The operator page's files (hub/ui, package data)."""
UI_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
            "icon.svg": "image/svg+xml"}
"""The files served under /ui/ (/ui/ itself is index.html), with their media types; nothing else is."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
"""On every answer: the page runs only its own script (app.js), talks only to this origin, cannot be framed,
and its forms never submit anywhere (app.js sends them with fetch, so a token never lands in a URL)."""
UI: web.AppKey[dict[str, bytes]] = web.AppKey("ui")
MORE_PATHS: web.AppKey[dict[str, Any]] = web.AppKey("more_paths")
"""OpenAPI paths of the routes `make_app(more=...)` added; /openapi.json lists them with the others."""

_COMMAND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "device": {"type": "string"},
        "actuator": {"type": "string"},
        "value": {"type": "number"},
        "transport": {"enum": ["mqtt", "modbus"]},
        "source": {"type": "string",
                   "description": "api:<role>, cli:<role> (role: control), rule:<name>, schedule:<name>"},
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
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                                          "needed": {"enum": ["read", "control"]}},
          "required": ["error"]}


def _resp(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An alert (hub.alerts, docs/operators.md): one per (kind, device, quantity) at a time",
    "properties": {
        "id": {"type": "string", "pattern": "^a-[0-9a-f]{12}$"},
        "kind": {"type": "string", "description": "the detector: flatline, spike, leak, silent, ..."},
        "severity": {"enum": ["info", "warning", "critical"]},
        "state": {"enum": ["firing", "acknowledged", "resolved"]},
        "device": {"type": "string"},
        "quantity": {"type": ["string", "null"]},
        "district": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "evidence": {"type": "object"},
        "fired_at": {"type": "integer"},
        "updated_at": {"type": "integer"},
        "acked_at": {"type": ["integer", "null"]},
        "acked_by": {"type": ["string", "null"]},
        "note": {"type": ["string", "null"]},
        "resolved_at": {"type": ["integer", "null"]},
        "count": {"type": "integer", "description": "times it fired (updates and reopenings included)"},
    },
}
_PER_QUANTITY = {"type": "object", "properties": {"expected": {"type": "integer"}, "on_time": {"type": "integer"}}}
_DISTRICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Coverage of one district (hub.coverage, docs/operators.md)",
    "properties": {
        "district": {"type": "string", "description": '"" for devices without a district'},
        "expected": {"type": "integer"},
        "online": {"type": "integer"},
        "on_time": {"type": "integer"},
        "coverage": {"type": "number", "minimum": 0, "maximum": 1, "description": "on_time / expected"},
        "quantities": {"type": "object", "additionalProperties": _PER_QUANTITY},
        "aqi": {"type": ["number", "null"]},
        "open_alerts": {"type": "integer"},
        "consumption": {"type": "object", "properties": {
            "water_m3_h": {"type": ["number", "null"]}, "energy_kw": {"type": ["number", "null"]},
            "heat_kw": {"type": ["number", "null"]}}},
    },
}
_ERR = {"$ref": "#/components/schemas/Error"}
_CMD = {"$ref": "#/components/schemas/Command"}
_ALERT = {"$ref": "#/components/schemas/Alert"}
_UNAUTHORIZED = {"401": _resp("missing or wrong token", _ERR),
                 "429": _resp("too many wrong tokens from this address (see Retry-After)", _ERR)}
_ALERT_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Qala hub control API", "version": "1",
             "description": "Setpoints to actuators, acknowledged, limited and audited (docs/control.md). Bearer "
                            "tokens of two roles: read (GET) and control (everything). Wrong tokens are throttled "
                            "per client address: delayed answers, then 429 with Retry-After."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Command": _COMMAND_SCHEMA, "Error": _ERROR, "Alert": _ALERT_SCHEMA,
                    "District": _DISTRICT_SCHEMA},
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
                "403": _resp("a read token: setpoints need the control role", _ERR),
                "404": _resp("unknown device or actuator", _ERR),
                "422": _resp("wrong type or outside the limits (the refused command is in `command`)", _ERR),
                "429": _resp("too many wrong tokens from this address (see Retry-After)", _ERR),
            },
        }},
        "/v1/commands/{id}": {"get": {
            "summary": "A command's state",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _resp("the command", _CMD), "401": _resp("missing or wrong token", _ERR),
                          "404": _resp("unknown command id", _ERR),
                          "429": _resp("too many wrong tokens from this address (see Retry-After)", _ERR)},
        }},
        "/v1/devices": {"get": {
            "summary": "Devices: actuators and limits, district and coordinates, online, last seen, last values",
            "responses": {"200": _resp("the devices", {"type": "object", "properties": {"devices": {
                "type": "array", "items": {"type": "object", "properties": {
                    "device": {"type": "string"}, "transport": {"enum": ["mqtt", "modbus"]},
                    "state": {"type": "string"}, "actuators": {"type": "object"},
                    "district": {"type": ["string", "null"]}, "lat": {"type": ["number", "null"]},
                    "lon": {"type": ["number", "null"]}, "online": {"type": "boolean"},
                    "last_seen": {"type": ["integer", "null"]},
                    "values": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                        "value": {"type": "number"}, "ts": {"type": "integer"},
                        "quality": {"enum": list(catalogue.QUALITIES)}}}}}}}}}),
                **_UNAUTHORIZED},
        }},
        "/v1/alerts": {"get": {
            "summary": "Alerts, newest first",
            "parameters": [
                {"name": "state", "in": "query", "schema": {"enum": ["open", "all"], "default": "open"},
                 "description": "open: firing and acknowledged; all: the kept resolved ones too"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": MAX_ALERTS, "default": 100}}],
            "responses": {"200": _resp("the alerts", {"type": "object", "properties": {
                "alerts": {"type": "array", "items": _ALERT}}}),
                "400": _resp("a bad state or limit (`field` names it)", _ERR), **_UNAUTHORIZED},
        }},
        "/v1/alerts/{id}": {"get": {
            "summary": "One alert",
            "parameters": _ALERT_ID,
            "responses": {"200": _resp("the alert", _ALERT), "404": _resp("unknown alert id", _ERR),
                          **_UNAUTHORIZED},
        }},
        "/v1/alerts/{id}/ack": {"post": {
            "summary": "Acknowledge an alert: an operator has seen it (it stays open until it resolves)",
            "parameters": _ALERT_ID,
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"note": {"type": "string", "maxLength": 200}}}}}},
            "responses": {
                "200": _resp("the alert, acknowledged (an acknowledged one: unchanged)", _ALERT),
                "400": _resp("malformed body, unknown key, a note that is not a string or too long", _ERR),
                "403": _resp("a read token: acknowledging needs the control role", _ERR),
                "404": _resp("unknown alert id", _ERR),
                "409": _resp("the alert is resolved: nothing to acknowledge", _ERR),
                **_UNAUTHORIZED},
        }},
        "/v1/districts": {"get": {
            "summary": "Coverage per district: devices expected, online, on time, per quantity; AQI, consumption",
            "responses": {"200": _resp("the districts", {"type": "object", "properties": {
                "districts": {"type": "array", "items": {"$ref": "#/components/schemas/District"}},
                "generated_at": {"type": "integer"}}}), **_UNAUTHORIZED},
        }},
    },
}


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None,
           **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"} | (headers or {})
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        refused = await _authorize(request)
        if refused is not None:
            return refused
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason)


async def _authorize(request: web.Request) -> web.Response | None:
    """None when the request's token and role allow it (request[ROLE] is then set), else the refusal."""
    throttle = request.app[THROTTLE]
    address = _client_address(request, request.app[PROXY])
    key = client_key(address)
    wait = throttle.retry_after(key)
    if wait > 0:
        seconds = math.ceil(wait)
        return _error(429, f"too many wrong tokens from this address: try again in {seconds} s",
                      headers={"Retry-After": str(seconds)})
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return _error(401, "missing bearer token (Authorization: Bearer <token>)")
    role = _role(given[7:].encode("utf-8", "replace"), request.app[TOKENS])
    if role is None:
        verdict = throttle.failure(key)
        if verdict.log:
            more = f" ({verdict.suppressed} similar lines left out)" if verdict.suppressed else ""
            if verdict.blocked_for:
                log.warning("api: wrong tokens remote=%s failures=%d: blocked for %d s (429)%s", address,
                            verdict.failures, verdict.blocked_for, more)
            else:
                log.warning("api: wrong token remote=%s path=%s%s", address, request.path, more)
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
        return _error(401, "wrong token")
    throttle.success(key)
    if request.method not in READ_METHODS and role != "control":
        return _error(403, f"this token has the {role} role: {request.method} {request.path} needs the control "
                           "role (api.control_token)", needed="control", role=role)
    request[ROLE] = role
    return None


def _role(given: bytes, tokens: tuple[tuple[str, bytes], ...]) -> str | None:
    """The role whose token is `given`, each compared in constant time (all of them, whatever matched)."""
    found = None
    for role, token in tokens:
        if hmac.compare_digest(given, token):
            found = role
    return found


def _client_address(request: web.Request, proxy: str | None) -> str | None:
    """The peer's address; for the trusted proxy's requests, the client it appends to X-Forwarded-For."""
    peer = request.remote
    if proxy is None or peer is None or _ip(peer) != proxy:
        return peer
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", ())).rsplit(",", 1)[-1].strip()
    return forwarded if _ip(forwarded) is not None else peer


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


async def _to_ui(_request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/ui/"})


async def _ui_file(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or "index.html"
    body = request.app[UI].get(name)
    if body is None:
        return _error(404, f"no such file of the operator page: /ui/{name} (see /ui/)")
    return web.Response(body=body, content_type=UI_FILES[name], charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


def load_ui(folder: Path = UI_FOLDER) -> dict[str, bytes]:
    """The operator page's files by name; ConfigError when the installed package lacks one."""
    files = {}
    for name in UI_FILES:
        try:
            files[name] = (folder / name).read_bytes()
        except OSError as exc:
            raise ConfigError(f"api: the operator page's file {folder / name} cannot be read "
                              f"({exc.strerror or exc}): reinstall qala (the package ships hub/ui)") from None
    return files


async def _openapi(request: web.Request) -> web.Response:
    more = request.app[MORE_PATHS]
    return web.json_response(OPENAPI | {"paths": OPENAPI["paths"] | more} if more else OPENAPI)


def _json_object(raw: bytes, known: tuple[str, ...]) -> dict[str, Any] | web.Response:
    """A request body that must be a JSON object of `known` keys, or the 400 response that refuses it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeError):
        return _error(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    for key in body:
        if key not in known:
            return _error(400, f"unknown key {key!r} (known: {', '.join(known)})", key)
    return body


def _check_body(raw: bytes) -> dict[str, Any] | web.Response:
    """The setpoint request's body, or the error response that refuses it."""
    body = _json_object(raw, _SETPOINT_KEYS)
    if isinstance(body, web.Response):
        return body
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
    client = request.headers.get("X-Qala-Source", "api")
    source = f"{client if client in ('api', 'cli') else 'api'}:{request[ROLE]}"
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
    """Devices with actuators (the control service), every device the hub has heard from and every configured
    Modbus device, each with its place, state and last values. Provisioned boards never heard from are left
    out here (a site may have thousands); GET /v1/districts counts them as expected."""
    listed = request.app[CONTROL].devices()
    alerting = request.app[ALERTING]
    if alerting is None:
        return web.json_response({"devices": listed})
    views = alerting.devices()
    blank: dict[str, Any] = {"district": None, "lat": None, "lon": None, "online": False, "last_seen": None,
                             "values": {}}
    out: dict[str, dict[str, Any]] = {}
    for entry in listed:
        name = str(entry["device"])
        out[name] = {**(views.get(name) or blank), **entry}
    for name, view in views.items():
        if name not in out and (view["last_seen"] is not None or view["transport"] == "modbus"):
            out[name] = {**view, "state": "online" if view["online"] else "offline", "actuators": {}}
    return web.json_response({"devices": [out[name] for name in sorted(out)]})


def _alerting(request: web.Request) -> Alerting:
    alerting = request.app[ALERTING]
    if alerting is None:
        raise web.HTTPNotFound(reason="this hub keeps no alerts")
    return alerting


async def _alerts(request: web.Request) -> web.Response:
    alerting = _alerting(request)
    state = request.query.get("state", "open")
    if state not in ("open", "all"):
        return _error(400, f"must be open or all, got {state!r}", "state")
    raw = request.query.get("limit", "100")
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_ALERTS:
        return _error(400, f"must be a whole number 1..{MAX_ALERTS}, got {raw!r}", "limit")
    alerts = alerting.book.alerts(include_resolved=state == "all", limit=limit)
    return web.json_response({"alerts": [a.as_dict() for a in alerts]})


async def _alert(request: web.Request) -> web.Response:
    alert = _alerting(request).book.get(request.match_info["id"])
    if alert is None:
        return _error(404, "unknown alert id", "id")
    return web.json_response(alert.as_dict())


async def _ack(request: web.Request) -> web.Response:
    alerting = _alerting(request)
    raw = await request.read()
    note = None
    if raw.strip():
        body = _json_object(raw, ("note",))
        if isinstance(body, web.Response):
            return body
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            return _error(400, "must be a string", "note")
    try:
        alert, _changed = alerting.ack(request.match_info["id"], f"api:{request[ROLE]}", note)
    except AlertError as exc:
        field = "note" if exc.status == 400 else "id"
        return _error(exc.status, str(exc).removeprefix("note: "), field)
    return web.json_response(alert.as_dict())


async def _districts(request: web.Request) -> web.Response:
    alerting = _alerting(request)
    districts = alerting.districts()
    return web.json_response({"districts": districts, "generated_at": alerting.clock_ms()})


def make_app(control: ControlService, config: ApiConfig, throttle: Throttle | None = None,
             alerting: Alerting | None = None, more: Callable[[web.Application], None] | None = None,
             ) -> web.Application:
    """The API's application: tokens and trusted proxy from `config`; `throttle` (a fresh one by default);
    `alerting`: the hub's alerts and districts (None: their endpoints answer 404); `more(app)` adds the
    routes of other parts (the roll-outs: hub.ota.api.add_routes), under the same tokens and roles."""
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[CONTROL] = control
    app[ALERTING] = alerting
    app[TOKENS] = tuple((role, token.encode()) for role, token in config.tokens())
    app[THROTTLE] = Throttle() if throttle is None else throttle
    app[PROXY] = config.trusted_proxy
    app[UI] = load_ui()
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _to_ui)
    app.router.add_get("/ui", _to_ui)
    app.router.add_get("/ui/", _ui_file)
    app.router.add_get("/ui/{name}", _ui_file)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_post("/v1/setpoints", _setpoint)
    app.router.add_get("/v1/commands/{id}", _command)
    app.router.add_get("/v1/devices", _devices)
    app.router.add_get("/v1/alerts", _alerts)
    app.router.add_get("/v1/alerts/{id}", _alert)
    app.router.add_post("/v1/alerts/{id}/ack", _ack)
    app.router.add_get("/v1/districts", _districts)
    app[MORE_PATHS] = {}
    if more is not None:
        more(app)
    return app


async def serve_api(config: ApiConfig, control: ControlService, alerting: Alerting | None = None,
                    more: Callable[[web.Application], None] | None = None,
                    ) -> tuple[int, Coroutine[Any, Any, None]]:
    """Start listening; (bound port, a coroutine that serves until cancelled and then cleans up).

    ConfigError naming api.tls_cert when the certificate or its key cannot be loaded, and api.listen/api.port
    when the address cannot be listened on (a port taken)."""
    context = tls_context(config)
    runner = web.AppRunner(make_app(control, config, alerting=alerting, more=more), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.listen, config.port, ssl_context=context)
    try:
        await site.start()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        await runner.cleanup()
        raise ConfigError(f"api.listen/api.port: cannot listen on {config.listen}:{config.port}: "
                          f"{exc.strerror or exc} (another program on that port? choose another api.port)") from None
    except BaseException:
        await runner.cleanup()
        raise
    port = int(runner.addresses[0][1]) if runner.addresses else config.port
    log.info("api: listening host=%s port=%d tls=%s roles=%s", config.listen, port, context is not None,
             ",".join(role for role, _ in config.tokens()))

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    return port, forever()


def tls_context(config: ApiConfig) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 or later) when api.tls_cert and api.tls_key are set, else None."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"api.tls_cert: cannot load {config.tls_cert} with api.tls_key {config.tls_key}: "
                          f"{exc}") from None
    return context
