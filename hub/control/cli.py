"""`qala set DEVICE ACTUATOR VALUE`: a setpoint through the running hub's HTTP API, waiting for the outcome.

The CLI is a client of the hub's API, so there is one control service (one place for limits, retries and
the audit). The address and token come from `--config hub.toml` ([api] listen, port, control_token; https
when tls_cert is set) or from `--api URL` (http:// or https://) and `--token` / $QALA_API_CONTROL: setpoints
need the control role. An https URL is verified against the system's CAs, or the file $SSL_CERT_FILE names
(e.g. the site CA). Prints the outcome on one line; exit codes:

    0 applied   1 rejected (by the hub's limit check or by the device)   2 usage error (arguments, config,
    unknown device or actuator, wrong token)   3 timed out (no ack in time)   4 the hub's API is unreachable

Standard library only (urllib): a CLI call should not need an event loop.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    import argparse

APPLIED, REJECTED, USAGE, TIMED_OUT, UNREACHABLE = 0, 1, 2, 3, 4


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"qala set: {message}\n")
    return code


def _target(args: argparse.Namespace) -> tuple[str, str] | str:
    """(base URL, token) or an error message."""
    if args.config:
        from hub import config as hub_config  # noqa: PLC0415

        try:
            cfg = hub_config.load(Path(args.config))
        except hub_config.ConfigError as exc:
            return f"configuration error: {exc}"
        if cfg.api is None:
            return f"{args.config} has no [api] section: the hub serves no API"
        token = args.token or cfg.api.control_token
        if token is None:
            return f"{args.config}: [api] has no control_token (setpoints need the control role; give --token)"
        host = "127.0.0.1" if cfg.api.listen in ("0.0.0.0", "::", "") else cfg.api.listen  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if cfg.api.tls_cert is None else "https"
        url = f"{scheme}://{host}:{cfg.api.port}" if args.api is None else args.api
        return _url_problem(url) or (url, token)
    token = args.token or os.environ.get("QALA_API_CONTROL")
    if args.api is None or not token:
        old = " ($QALA_API_TOKEN is no longer read: it is $QALA_API_CONTROL)" if "QALA_API_TOKEN" in os.environ else ""
        return f"give --config HUB_TOML, or --api URL with --token (or $QALA_API_CONTROL){old}"
    return _url_problem(args.api) or (args.api, token)


def _url_problem(url: str) -> str | None:
    """Why the API's URL is unusable, or None."""
    if not re.match(r"^https?://[^/\s]+", url):
        return f"--api: the URL needs http:// or https:// and a host (e.g. http://127.0.0.1:8470), got {url!r}"
    try:
        port = urllib.parse.urlsplit(url).port
    except ValueError:
        port = 0
    if port == 0:
        return f"--api: the port must be a number 1..65535, got {url!r}"
    return None


def _arguments_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with DEVICE, ACTUATOR and VALUE (checked before the hub is asked), or None."""
    try:
        check_id("device", args.device)
        check_id("actuator", args.actuator)
    except ProtocolError as exc:
        return str(exc)
    try:
        value = float(args.value)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return f"value: must be a finite number, e.g. 80 or 0.5, got {args.value!r}"
    return None


def run_set(args: argparse.Namespace) -> int:
    problem = _arguments_problem(args)
    if problem is not None:
        return _fail(USAGE, problem)
    value = float(args.value)
    target = _target(args)
    if isinstance(target, str):
        return _fail(USAGE, target)
    base, token = target
    body: dict[str, Any] = {"device": args.device, "actuator": args.actuator, "value": value, "wait": True,
                            "timeout_s": min(max(args.timeout, 0.1), 120.0)}
    if args.ttl is not None:
        body["ttl_s"] = args.ttl
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own hub
        base.rstrip("/") + "/v1/setpoints", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Qala-Source": "cli"},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout + 10) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            answer = {"error": exc.reason}
        if "command" in answer:
            answer = answer["command"]
        else:
            field = answer.get("field")
            return _fail(USAGE, f"{field + ': ' if field else ''}{answer.get('error')} (HTTP {exc.code})")
    except (OSError, ValueError) as exc:
        return _fail(UNREACHABLE, f"cannot reach the hub's API at {base}: {exc}")
    state = answer.get("state")
    line = f"{answer.get('device')}.{answer.get('actuator')} {state} id={answer.get('id')}"
    if state == "applied":
        sys.stdout.write(f"{line} value={answer.get('applied'):g} latency_ms={answer.get('latency_ms')}\n")
        return APPLIED
    if answer.get("reason"):
        line += f" reason={answer['reason']}"
    sys.stdout.write(line + "\n")
    return REJECTED if state == "rejected" else TIMED_OUT
