"""The roll-out endpoints of the hub's HTTP API (`add_routes`, handed to hub.control.api.make_app as `more`).

    GET  /v1/releases                 the releases the hub serves (and the folders it refused, with why)
    POST /v1/rollouts                 {version, to, waves?, max_failures?, trial?, tries?, board_timeout?}
                                      -> 201, the roll-out started (its first wave offered)
    GET  /v1/rollouts                 every roll-out, newest first, without its boards
    GET  /v1/rollouts/{id}            one roll-out with every board's state and its events (?boards=failed:
                                      only the failed boards; ?boards=none: none)
    POST /v1/rollouts/{id}/pause      -> the roll-out (409 unless running)
    POST /v1/rollouts/{id}/resume     -> the roll-out (409 unless paused)
    POST /v1/rollouts/{id}/abort      -> the roll-out (409 once aborted)

Authorization and roles are hub.control.api's (its middleware runs first): GETs take either token, POSTs the
control role (403 for a read token). Errors are JSON `{"error": ..., "field": ...}`: 400 a body that is not
a JSON object, an unknown or missing key; 422 a value of the wrong type or out of range, a selector that
matches nothing or is unknown, a config release for other boards; 404 an unknown version or roll-out id;
409 boards already in a running roll-out, or an action the roll-out's state does not allow. Each action's
audit row names `api:<role>` (or `cli:<role>` from `qala fw rollout`) as its source.

A Python entry for tests and scripts: `start_rollout(port, token, version, to, **options)` and
`read_rollout(port, token, rid)` speak this API with the standard library (docs/ota.md).

Imports aiohttp, hub.control.api (the error shape, the role key) and hub.ota.service; knows nothing of MQTT.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.control import api
from hub.ota import rollout as ro
from hub.ota.service import OtaError

if TYPE_CHECKING:
    from hub.ota.service import OtaService

OTA: web.AppKey[OtaService | None] = web.AppKey("ota")
KEYS = ("version", "to", "waves", "max_failures", "trial", "tries", "board_timeout")
_INTS = {"trial": (10, 86400), "tries": (1, 20), "board_timeout": (60, 7 * 86400)}


BOARDS = ("all", "failed", "none")
"""GET /v1/rollouts/{id}?boards=...: every board (default), only the failed ones, or none (a large roll-out
followed every few seconds)."""


_E = {"$ref": "#/components/schemas/Error"}
_ROLLOUT = {"type": "object", "description": "A roll-out (docs/ota.md): id, version, kind, selector, state, "
            "reason, wave, waves, wave_sizes, counts; GET /v1/rollouts/{id} adds boards and events"}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _answers(ok: str, *errors: tuple[str, str], status: str = "200") -> dict[str, Any]:
    out = {status: {"description": ok, "content": {"application/json": {"schema": _ROLLOUT}}}}
    for code, what in (("401", "missing or wrong token"), *errors):
        out[code] = {"description": what, "content": {"application/json": {"schema": _E}}}
    return out


PATHS: dict[str, Any] = {
    "/v1/releases": {"get": {"summary": "The releases the hub serves", "responses": {"200": {
        "description": "the releases", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/v1/rollouts": {
        "get": {"summary": "Every roll-out, newest first", "responses": _answers("the roll-outs")},
        "post": {
            "summary": "Start a staged roll-out of a release to the boards a selector names",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "required": ["version", "to"],
                "properties": {
                    "version": {"type": "string"}, "to": {"type": "string", "description": "a selector: all, "
                                                          "district:NAME, prefix:TEXT, version:V, devices:A,B"},
                    "waves": {"type": "array", "items": {"type": "number"}}, "max_failures": {"type": "number"},
                    "trial": {"type": "integer"}, "tries": {"type": "integer"}, "board_timeout": {"type": "integer"},
                }}}}},
            "responses": _answers("the roll-out, its first wave offered", ("400", "malformed body"),
                                  ("403", "a read token"), ("404", "no such release"),
                                  ("409", "boards in another running roll-out"),
                                  ("422", "a value of the wrong type or range, a selector that matches nothing"),
                                  status="201"),
        },
    },
    "/v1/rollouts/{id}": {"get": {"summary": "A roll-out with every board's state and its events", "parameters": [
        *_ID, {"name": "boards", "in": "query", "schema": {"enum": list(BOARDS), "default": "all"},
               "description": "all boards, only the failed ones, or none"}],
                                  "responses": _answers("the roll-out", ("404", "unknown roll-out id"))}},
    **{f"/v1/rollouts/{{id}}/{action}": {"post": {
        "summary": f"{action.capitalize()} a roll-out", "parameters": _ID,
        "responses": _answers("the roll-out", ("403", "a read token"), ("404", "unknown roll-out id"),
                              ("409", "its state does not allow it"))}} for action in ("pause", "resume", "abort")},
}
"""The OpenAPI paths of these endpoints (/openapi.json lists them)."""


def add_routes(app: web.Application, ota: OtaService | None) -> None:
    app[OTA] = ota
    app[api.MORE_PATHS].update(PATHS)
    app.router.add_get("/v1/releases", _releases)
    app.router.add_post("/v1/rollouts", _start)
    app.router.add_get("/v1/rollouts", _list)
    app.router.add_get("/v1/rollouts/{id}", _one)
    app.router.add_post("/v1/rollouts/{id}/{action}", _act)


def _ota(request: web.Request) -> OtaService:
    ota = request.app[OTA]
    if ota is None:
        raise web.HTTPNotFound(reason="this hub runs no roll-outs")
    return ota


def _by(request: web.Request) -> str:
    client = request.headers.get("X-Qala-Source", "api")
    return f"{client if client in ('api', 'cli') else 'api'}:{request[api.ROLE]}"


def _problem(exc: OtaError) -> web.Response:
    return api._error(exc.status, exc.message, exc.field)  # noqa: SLF001 - the API's one error shape


async def _releases(request: web.Request) -> web.Response:
    ota = _ota(request)
    ota.reload_releases()
    releases = [r.summary() for r in sorted(ota.releases.values(), key=lambda r: (r.built, r.version), reverse=True)]
    return web.json_response({"releases": releases, "folder": str(ota.folder)})


def check_start(body: dict[str, Any]) -> dict[str, Any] | web.Response:
    """The POST /v1/rollouts body's options checked, or the 400/422 response naming the key."""
    for key in ("version", "to"):
        if key not in body:
            return api._error(400, "required", key)  # noqa: SLF001
        if not isinstance(body[key], str) or not body[key]:
            return api._error(422, "must be a non-empty string", key)  # noqa: SLF001
    return _options(body)


def _options(body: dict[str, Any]) -> dict[str, Any] | web.Response:
    options: dict[str, Any] = {}
    waves = body.get("waves")
    if waves is not None:
        if not isinstance(waves, list) or not all(_number(w) for w in waves):
            return api._error(422, "must be a list of percentages, e.g. [1, 10, 50, 100]", "waves")  # noqa: SLF001
        options["waves"] = [float(w) for w in waves]
    share = body.get("max_failures")
    if share is not None:
        if not _number(share) or not 0 <= share <= 1:
            return api._error(422, "must be a share in 0..1 (0.1: halt above 10 %)", "max_failures")  # noqa: SLF001
        options["max_failures"] = float(share)
    for key, (lo, hi) in _INTS.items():
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return api._error(422, f"must be a whole number {lo}..{hi}", key)  # noqa: SLF001
        options[key] = value
    return options


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


async def _start(request: web.Request) -> web.Response:
    ota = _ota(request)
    body = api._json_object(await request.read(), KEYS)  # noqa: SLF001 - the API's one body check
    if isinstance(body, web.Response):
        return body
    options = check_start(body)
    if isinstance(options, web.Response):
        return options
    try:
        rollout = ota.start(body["version"], body["to"], by=_by(request), **options)
    except OtaError as exc:
        return _problem(exc)
    return web.json_response(rollout.detail(), status=201)


async def _list(request: web.Request) -> web.Response:
    ota = _ota(request)
    rollouts = sorted(ota.rollouts.values(), key=lambda r: r.created, reverse=True)
    return web.json_response({"rollouts": [r.summary() for r in rollouts]})


async def _one(request: web.Request) -> web.Response:
    which = request.query.get("boards", "all")
    if which not in BOARDS:
        return api._error(400, f"must be one of {', '.join(BOARDS)}, got {which!r}", "boards")  # noqa: SLF001
    try:
        rollout = _ota(request).get(request.match_info["id"])
    except OtaError as exc:
        return _problem(exc)
    doc = rollout.detail()
    if which != "all":
        doc["boards"] = {d: b for d, b in doc["boards"].items() if which == "failed" and b["state"] in ro.FAILED}
    return web.json_response(doc)


async def _act(request: web.Request) -> web.Response:
    ota = _ota(request)
    action = request.match_info["action"]
    step = {"pause": ota.pause, "resume": ota.resume, "abort": ota.abort}.get(action)
    if step is None:
        return api._error(404, f"no such action {action!r} (pause, resume, abort)", "action")  # noqa: SLF001
    if (await request.read()).strip() not in (b"", b"{}"):
        return api._error(400, "no body expected (or {})")  # noqa: SLF001
    try:
        rollout = step(request.match_info["id"], _by(request))
    except OtaError as exc:
        return _problem(exc)
    return web.json_response(rollout.detail())


# ------------------------------------------------------------------------------ a Python entry (tests, scripts)


def call(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None, *,
         source: str = "api", timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one API call to `base` (http://host:port); OSError when the hub does not answer."""
    request = urllib.request.Request(  # noqa: S310 - the operator's own hub URL
        base.rstrip("/") + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Qala-Source": source})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {"error": raw.decode("utf-8", "replace")[:200] or exc.reason}
        return exc.code, doc if isinstance(doc, dict) else {"error": str(doc)}


def start_rollout(port: int, token: str, version: str, to: str, host: str = "127.0.0.1",
                  **options: Any) -> dict[str, Any]:
    """Start a roll-out on the hub at host:port (the control token); the roll-out, or RuntimeError with the
    API's error. Options: waves, max_failures, trial, tries, board_timeout."""
    status, doc = call(f"http://{host}:{port}", token, "POST", "/v1/rollouts", {"version": version, "to": to,
                                                                              **options})
    if status != 201:
        raise RuntimeError(f"POST /v1/rollouts: {status} {doc.get('error')} (field {doc.get('field')})")
    return doc


def read_rollout(port: int, token: str, rid: str, host: str = "127.0.0.1") -> dict[str, Any]:
    """A roll-out with every board's state (GET /v1/rollouts/{id}); RuntimeError with the API's error."""
    status, doc = call(f"http://{host}:{port}", token, "GET", f"/v1/rollouts/{rid}")
    if status != 200:
        raise RuntimeError(f"GET /v1/rollouts/{rid}: {status} {doc.get('error')}")
    return doc
