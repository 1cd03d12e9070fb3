"""Every `qala` subcommand, every argument that takes a value, fed what a person might type wrongly (issue 18).

The product's promise: every input from outside gets an error naming what was wrong and what to do, and a
traceback shown to a user is a bug. This sweep holds every command to it, in-process and in a few seconds.

How it works:
- The commands and their arguments are read from `qala ... --help` (argparse's public output, never its
  private `_actions`), walking the subcommands down to the leaves. `test_the_sweep_knows_every_command_and_
  argument` fails when a command or an argument appears that SWEEP has no entry for, so the sweep stays
  complete: a new option needs its mistakes listed here, or a reason why it has none (a flag, free text).
- SWEEP holds, per command, a valid call (fillers: a provisioned store made with `qala provision init` and
  `qala provision board`, a hub.toml, a board config, made in tmp_path) and, per argument, its mistakes:
  empty text, a non-number where a number goes, 0, negative, `nan`, `inf`, `1e999`, numbers past the top, a
  path that does not exist, a folder where a file goes and the other way round, a path under a file, files
  with garbage (bad TOML, bad JSON, JSON that is no object, bytes that are not UTF-8), a HOST:PORT with a bad
  port or an unbracketed IPv6 address, an unknown choice, a bad id. Each mistake replaces the argument in the
  valid call; each (command, argument, value) is its own test id. Options are typed `--option=value`, so
  values that start with `-` reach the option rather than being read as options themselves.
- Each must: exit 2 (argparse's code and every command's documented code for bad input), write nothing to
  stdout, end stderr with one line that starts `qala` and names the argument (the option, the positional's
  name, or the path typed; a few name the key in the file instead and say so with names=False) and holds the
  rule (`says`); stderr is that one line, or argparse's usage above it. No traceback, and no Python talk
  (`[Errno 2]`, `'utf-8' codec can't decode`, `invalid int value`, `NoneType`) in that line. A provisioning
  store in the call is left byte for byte as it was.
- Nothing starts: the places where a command begins its real work (hub.service.serve, the demo's run, the
  fleet's boards, mpy-cross, mpremote, the birth watch, the HTTP request of `qala set`, the Modbus connect)
  raise Started, so a mistake that slips past the checks fails its test instead of running a server; a timer
  stops any case after TIMEOUT seconds. `test_every_valid_call_gets_to_its_start` shows that the fillers are
  valid: each valid call reaches its start (or finishes, for commands that only write files), so every
  refusal below is the mistyped argument's.

What it does not cover:
- Combinations of arguments (a mistake in one argument at a time), missing required arguments, unknown
  subcommands and options, argparse's own mutual exclusion messages (tests/demo/test_fleet.py has some),
  positionals that start with `-`, and environment variables ($QALA_API_CONTROL, $QALA_MQTT_PASSWORD).
- What only the start or the far end can find: a serial port that exists but does not answer, a broker or a
  hub API that is not there, a taken port (tests/hub/test_config.py), mpremote's own port shortcuts (`a0`,
  `id:...`: `qala fw deploy --port` is checked only for being empty), a full disk, permissions (the tests run
  as a user who may write to tmp_path), and a host name that looks right but does not resolve.
- The contents of valid-looking files key by key: hub.toml's keys are swept by tests/hub/test_config*.py, a
  board config's by tests/firmware/test_config.py, profiles' by tests/modbus/test_profile.py; here only one
  file that parses but is refused per file argument.
- Free text that any value fits: passwords (an open Wi-Fi network and a broker without a login take an empty
  one) and MQTT user names. A Wi-Fi SSID longer than 32 bytes is still accepted (the firmware's config rule).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

from hub import cli

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = 20.0  # seconds for one case; they take milliseconds (a store's keys: a fraction of a second)
PYTHON_TALK = ("Traceback", "[Errno", "codec can't", "invalid literal", "invalid int value", "invalid float value",
               "NoneType", "has no attribute", "not iterable", "could not convert", "object is not")

# --------------------------------------------------------------------------- the commands, from their help


def help_text(words: tuple[str, ...]) -> str:
    """`qala WORDS --help` as a person sees it on a wide terminal (no wrapped entries)."""
    out = io.StringIO()
    with mock.patch.dict(os.environ, {"COLUMNS": "400"}), contextlib.redirect_stdout(out), \
            pytest.raises(SystemExit) as done:
        cli.main([*words, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def parse_help(text: str) -> tuple[list[str], dict[str, str | None]]:
    """(subcommands, {argument: its METAVAR, None for a flag}) from one help text. Entries sit two spaces in
    (`  --out FILE   help`, `  device   help`), a subcommand four (under its `COMMAND` entry), help that
    does not fit beside an entry further in; `-h, --help` is left out."""
    commands: list[str] = []
    arguments: dict[str, str | None] = {}
    section = ""
    group = None  # the positional entry the subcommands are listed under
    for line in text.splitlines():
        if re.fullmatch(r"[A-Za-z][\w ]*:", line):
            section = line
            continue
        if not section:
            continue  # usage and description
        if match := re.match(r"    (\S+)", line):
            commands.append(match[1])
            arguments.pop(group or "", None)
            continue
        if not (match := re.match(r"  (\S.*?)(?:\s{2,}|$)", line)):
            continue  # a help text's own line
        entry = match[1]
        if not entry.startswith("-"):
            group = entry.split()[0]
            arguments[group] = group
            continue
        forms = [form.split(" ", 1) for form in entry.split(", ")]
        name = next((form[0] for form in forms if form[0].startswith("--")), forms[0][0])  # --tls of --tls, --no-tls
        if name != "--help":
            arguments[name] = forms[0][1] if len(forms[0]) > 1 else None
    return commands, arguments


def discover() -> dict[tuple[str, ...], dict[str, str | None]]:
    """Every leaf command (and the top level, for its own options) with its arguments."""
    found: dict[tuple[str, ...], dict[str, str | None]] = {}
    todo: list[tuple[str, ...]] = [()]
    while todo:
        words = todo.pop()
        commands, arguments = parse_help(help_text(words))
        if arguments or not commands:
            found[words] = arguments
        todo += [(*words, command) for command in commands]
    return found


# --------------------------------------------------------------------------- what people mistype


@dataclass(frozen=True)
class Bad:
    """One mistyped value. {name} in value, says and plus is a file of `places`."""

    value: str
    says: str  # what the last line of stderr holds besides the argument's name: the rule, what to do
    without: tuple[str, ...] = ()  # arguments of the valid call left out for this one
    plus: tuple[str, ...] = ()  # arguments added for this one
    names: bool = True  # False: the message names a key in the file the argument gave instead


@dataclass(frozen=True)
class Command:
    valid: dict[str, str | None]  # a call that is right: argument -> value (None for a flag); positionals in order
    sweep: dict[str, list[Bad] | str]  # every argument: its mistakes, or why it has none
    starts: bool = True  # a valid call starts something (Started); False: it finishes with 0


FLAG = "a flag: no value to mistype"
FREE = "free text: every value, the empty one too, is valid"
EMPTY = Bad("", "must not be empty")


def whole(lo: int, hi: int | None = None) -> list[Bad]:
    rule = f"must be at least {lo}" if hi is None else f"must be {lo}..{hi}"
    out = [Bad("", "expected a whole number, got ''"), Bad("x", "expected a whole number, got 'x'"),
           Bad("1.5", "expected a whole number, got '1.5'"), Bad(str(lo - 1), f"{rule}, got {lo - 1}"),
           Bad("1e999", "expected a whole number, got '1e999'")]
    if lo > 0:
        out.append(Bad("-1", f"{rule}, got -1"))
    if hi is not None:
        out.append(Bad(str(hi + 1), f"{rule}, got {hi + 1}"))
    return out


def seconds(most: float) -> list[Bad]:
    return [Bad("", "expected a number, got ''"), Bad("x", "expected a number, got 'x'"),
            Bad("0", "must be a positive number, got 0"), Bad("-1", "must be a positive number, got -1"),
            Bad("nan", "must be a positive number, got nan"), Bad("inf", "must be a positive number, got inf"),
            Bad("1e999", "must be a positive number, got 1e999"),
            Bad(f"{most * 100:g}", f"must be at most {most:g} seconds, got {most * 100:g}")]


def ids() -> list[Bad]:
    """A site, device, hub or actuator id (1-32 of A-Z a-z 0-9 _ -)."""
    return [Bad("", "must not be empty"), Bad("air 01", "character ' ' not allowed (use A-Z a-z 0-9 _ -)"),
            Bad("x" * 33, "longer than 32 characters"), Bad("air/01", "character '/' not allowed")]


def broker() -> list[Bad]:
    return [Bad(":1883", "give HOST or HOST:PORT"), Bad("h:x", "the port must be a number 1..65535"),
            Bad("h:0", "1..65535, got 0"), Bad("h:99999", "1..65535, got 99999"),
            Bad("[::1:1883", "an IPv6 address goes in brackets before the port"),
            Bad("h h:1883", "has characters no host name or address has: ' '"),
            Bad("192.168.1.2,1883", "has characters no host name or address has: ','")]


def json_file() -> list[Bad]:
    return [EMPTY, Bad("{missing}", "No such file or directory"), Bad("{dir}", "Is a directory"),
            Bad("{bad_json}", "not valid JSON"), Bad("{hub_toml}", "not valid JSON"),
            Bad("{json_list}", "must hold a JSON object"),
            Bad("{binary}", "not a JSON file: it holds bytes that are not UTF-8 text"),
            Bad("{under_file}", "Not a directory")]


def out_file() -> list[Bad]:
    return [EMPTY, Bad("{dir}", "a folder is there; give a file name"),
            Bad("{missing_parent}", "does not exist; create it or give another --out"),
            Bad("{under_file}", "a file is in the way of the folder")]


def store(folder: str = "{dir}/site.json: missing (the store is incomplete)") -> list[Bad]:
    """--store: `folder` is what an empty folder gets (the commands that change a store say it their way)."""
    return [EMPTY, Bad("{missing}", "--store: {missing}: not a provisioning store"),
            Bad("{file}", "--store: {file}: not a provisioning store"), Bad("{dir}", f"--store: {folder}")]


CHANGED = "{dir}: not a provisioning store (no site.json; `qala provision init` makes one)"


def sensor() -> list[Bad]:
    return [Bad("", "expected NAME:DRIVER:QUANTITIES:INTERVAL"), Bad("air1", "expected NAME:DRIVER:QUANTITIES"),
            Bad("a:sim:temperature:x", "INTERVAL must be a number of seconds, got 'x'"),
            Bad("a:sim:temperature:1e999", "INTERVAL must be a number of seconds, got '1e999'"),
            Bad("a:sim:temperature:nan", "INTERVAL must be a number of seconds, got 'nan'"),
            Bad("a:sim:temperature:0", "sensors.a.interval: must be a positive number, got 0"),
            Bad("a:nosuch:temperature:10", "no driver 'nosuch' in this firmware"),
            Bad("a:sim:nosuch:10", "unknown quantity 'nosuch'")]


def toml_config() -> list[Bad]:
    return [EMPTY, Bad("{missing}", "cannot read: No such file or directory"),
            Bad("{dir}", "cannot read: Is a directory"),
            Bad("{bad_toml}", "not valid TOML"), Bad("{bad_json}", "not valid TOML"),
            Bad("{binary}", "not a TOML file: it holds bytes that are not UTF-8 text"),
            Bad("{under_file}", "cannot read: Not a directory"),
            Bad("{empty_file}", "configuration error: {empty_file}: site: required section [site] is missing",
                names=False)]


BOARD = {  # qala provision board|rotate
    "--from": json_file(),
    "--broker": [EMPTY, *broker()],
    "--port": whole(1, 65535),
    "--server-hostname": [Bad("", "mqtt.server_hostname: must be a non-empty string"),
                          Bad("broker lan", "has characters no host name or address has: ' '")],
    "--wifi-ssid": [Bad("", "wifi.ssid: must be a non-empty string, got ''")],
    "--wifi-password": FREE,
    "--sensor": sensor(),
    "--max-ttl": whole(1, 86400),
    "--no-wifi": FLAG,
    "--out": out_file(),
    "--store": store(CHANGED),
}

def degrees(bound: int) -> list[Bad]:
    """--lat (90) and --lon (180)."""
    rule = f"must be -{bound}..{bound} degrees"
    return [Bad("", "expected a number of degrees, got ''"), Bad("x", "expected a number of degrees, got 'x'"),
            Bad("nan", f"{rule}, got nan"), Bad("inf", f"{rule}, got inf"), Bad("1e999", f"{rule}, got 1e999"),
            Bad(str(bound + 1), f"{rule}, got {bound + 1}"), Bad(f"-{bound}.5", f"{rule}, got -{bound}.5")]


PLACE = {"--district": ids(), "--lat": degrees(90), "--lon": degrees(180)}

SWEEP: dict[tuple[str, ...], Command] = {
    (): Command({}, {"--verbose": FLAG}),
    ("version",): Command({}, {}, starts=False),
    ("demo",): Command({"--boards": "2", "--duration": "5", "--run-dir": "{dir}"}, {
        "--boards": [*whole(1), Bad("21", "at most 20; for load, qala sim fleet --light")],
        "--duration": seconds(366 * 24 * 3600),
        "--keep-running": FLAG,
        "--run-dir": [EMPTY, Bad("{file}", "{file} is a file, not a folder; give another --run-dir"),
                      Bad("{under_file}", "{file} is a file, not a folder")],
    }),
    ("cluster",): Command({"--hubs": "2", "--boards": "2", "--duration": "30", "--run-dir": "{dir}"}, {
        "--hubs": whole(1, 8),
        "--boards": whole(1, 20),
        "--duration": [*seconds(86400), Bad("5", "--duration 5: at least 20 s (the cluster takes about 20 s")],
        "--interval": [*seconds(60), Bad("0.05", "--interval 0.05: at least 0.1 s")],
        "--drill": FLAG,
        "--run-dir": [EMPTY, Bad("{file}", "{file} is a file, not a folder; give another"),
                      Bad("{under_file}", "{file} is a file, not a folder")],
    }),
    ("sim", "fleet"): Command({"--boards": "2", "--rate": "1", "--broker": "127.0.0.1:1883", "--plain": None}, {
        "--boards": [*whole(1), Bad("21", "too heavy for one machine (about 160k heap and a process each); "
                                          "use --light above 20 boards")],
        "--rate": [Bad("", "expected a number, got ''"), Bad("x", "expected a number, got 'x'"),
                   Bad("0", "must be a positive number, got 0"), Bad("-1", "must be a positive number"),
                   Bad("nan", "must be a positive number"), Bad("inf", "must be a positive number"),
                   Bad("1e999", "must be a positive number"), Bad("100", "a board's config refuses it")],
        "--broker": [Bad("", "expected HOST:PORT"), Bad("h", "expected HOST:PORT"), Bad("h:x", "must be a number"),
                     Bad("h:0", "the port must be 1..65535, got 0"), Bad("h:99999", "must be 1..65535, got 99999"),
                     Bad("::1", "an IPv6 address goes in brackets, e.g. [::1]:1883"),
                     Bad("fe80::1:1883", "an IPv6 address goes in brackets")],
        "--site": ids(),
        "--store": [Bad(b.value, b.says, without=("--plain",)) for b in store()],
        "--plain": FLAG,
        "--provision": FLAG,
        "--duration": seconds(366 * 24 * 3600),
        "--light": FLAG,
        "--fault": [Bad("smoke:b:0:1", "--fault smoke:b:0:1: unknown kind 'smoke'"),
                    Bad("spike:b", "expected KIND:DEVICE:START_S:END_S[:QUANTITY[:SIZE]]"),
                    Bad("spike:b:5:1", "needs 0 <= START_S < END_S"),
                    Bad("spike:b:x:1", "START_S, END_S and SIZE are numbers"),
                    Bad("spike:b:0:1", "only light boards (--light) show faults on demand")],
    }),
    ("hub", "run"): Command({"--config": "{hub_toml}"}, {"--config": toml_config()}),
    ("modbus", "probe"): Command({"--tcp": "127.0.0.1:1502", "--profile": "sdm120"}, {
        "--tcp": [Bad("", "give HOST or HOST:PORT"), Bad("h:x", "the port must be a number 1..65535"),
                  Bad("h:0", "the port must be 1..65535, got 0"), Bad("h:99999", "must be 1..65535, got 99999"),
                  Bad("[::1:502", "an IPv6 address goes in brackets"), Bad("h h", "has characters")],
        "--rtu": [Bad(b.value, b.says, without=("--tcp",)) for b in (
            EMPTY, Bad("{missing}", "no such serial port (is the adapter plugged in?"),
            Bad("{dir}", "not a serial port (a folder)"), Bad("{file}", "not a serial port (a file)"))],
        "--baudrate": whole(300, 1_000_000),
        "--parity": [Bad("", "invalid choice: ''"), Bad("X", "invalid choice: 'X' (choose from")],
        "--stopbits": [Bad("", "expected a whole number"), Bad("x", "expected a whole number"),
                       Bad("3", "must be 1..2, got 3"), Bad("0", "must be 1..2, got 0")],
        "--unit": [Bad("", "a unit id is a number"), Bad("x", "a unit id is a number"),
                   Bad("256", "a unit id is 1..247 on RTU, 0..255 over TCP"), Bad("-1", "a unit id is 1..247"),
                   Bad("0", "an RTU device answers only as 1..247", without=("--tcp",), plus=("--rtu=/dev/null",))],
        "--timeout": seconds(60),
        "--profile": [EMPTY, Bad("nosuch", "no built-in profile of that name (have: "),
                      Bad("{missing}.toml", "cannot read: No such file or directory"),
                      Bad("{bad_toml}", "not valid TOML"), Bad("{binary}", "not a TOML file"),
                      Bad("{empty_toml}", "profile: required")],
        "--register": [Bad(b.value, b.says, without=("--profile",)) for b in (
            Bad("", "expected ADDR:QUANTITY[:TYPE]"), Bad("1", "expected ADDR:QUANTITY[:TYPE]"),
            Bad("zz:voltage", "the address 'zz' is not a number"), Bad("-1:voltage", "address must be 0..65535"),
            Bad("70000:voltage", "address must be 0..65535"), Bad("0:nosuch", "unknown quantity 'nosuch'"),
            Bad("0:voltage:f99", "type must be one of"))],
        "--table": [Bad("", "invalid choice: ''", without=("--profile",), plus=("--register=0:voltage",)),
                    Bad("coils", "invalid choice: 'coils'", without=("--profile",), plus=("--register=0:voltage",))],
    }),
    ("fw", "build"): Command({"--out": "{tmp}/bundle"}, {
        "--out": [EMPTY, Bad("{file}", "a file is in the way of the folder"),
                  Bad("{under_file}", "a file is in the way of the folder")],
    }),
    ("fw", "config"): Command(
        {"device": "t1", "--site": "lab", "--broker": "127.0.0.1:1883", "--no-tls": None, "--no-wifi": None,
         "--out": "{tmp}/board.json"}, {
            "device": ids(),
            "--from": json_file(),
            "--site": ids(),
            "--wifi-ssid": [Bad("", "wifi.ssid: must be a non-empty string, got ''")],
            "--wifi-password": FREE,
            "--broker": [Bad("", "give HOST or HOST:PORT"), *broker()],
            "--mqtt-user": FREE,
            "--mqtt-password": FREE,
            "--tls": FLAG,
            "--ca": [Bad(b.value, b.says, without=("--no-tls",)) for b in (
                EMPTY, Bad("{missing}", "No such file or directory"), Bad("{dir}", "Is a directory"),
                Bad("{file}", "not a PEM certificate file"), Bad("{binary}", "not a PEM certificate file"),
                Bad("{broker_cert}", "is not a CA certificate (give the site CA"))],
            "--server-hostname": [Bad(b.value, b.says, without=("--no-tls",), plus=("--ca={ca}",)) for b in (
                Bad("", "mqtt.server_hostname: must be a non-empty string"),
                Bad("broker lan", "has characters no host name or address has: ' '"),
                Bad("x" * 300, "a host name has 1..253 characters, this one 300"))],
            "--sensor": sensor(),
            "--store": [Bad(b.value, b.says, without=("--site", "--broker", "--no-tls"))
                        for b in store()],
            "--no-wifi": FLAG,
            "--out": out_file(),
        }, starts=False),
    ("fw", "deploy"): Command({"--port": "/dev/null", "--config": "{board_json}", "--no-wifi": None,
                               "--no-wait": None}, {
        "--port": [EMPTY],
        "--config": [*json_file(),
                     Bad("{empty_object}", "board config: site: required key missing (edit it in the --config file)")],
        "--bundle": [EMPTY, Bad("{missing}", "--bundle: {missing} is not a bundle (manifest.json: No such file"),
                     Bad("{dir}", "--bundle: {dir} is not a bundle"), Bad("{file}", "is not a bundle"),
                     Bad("{bad_bundle}", "manifest.json is not valid JSON")],
        "--broker": [EMPTY, *broker()],
        "--store": store(),
        "--mqtt-user": FREE,
        "--mqtt-password": FREE,
        "--timeout": seconds(366 * 24 * 3600),
        "--no-wait": FLAG,
        "--no-wifi": FLAG,
        "--resume": FLAG,
        "--mpremote": [EMPTY, Bad("{missing}", "not a program that can run"), Bad("{dir}", "not a program"),
                       Bad("{file}", "not a program that can run; give mpremote's path")],
    }),
    ("fw", "release"): Command({"--version": "0.2.0", "--out": "{tmp}/release"}, {
        "--version": [EMPTY, Bad("a b", "must be 1-32 of A-Z a-z 0-9 . _ + -"), Bad("x" * 33, "must be 1-32 of"),
                      Bad("../up", "starting with a letter or digit")],
        "--out": [EMPTY, Bad("{file}", "a file is in the way; give a folder"),
                  Bad("{store}", "the folder is not empty"), Bad("{under_file}", "cannot create it: Not a directory")],
        "--config": [*json_file(), Bad("{empty_object}", "board config: site: required key missing")],
    }),
    ("fw", "rollout"): Command({"VERSION": "0.2.0", "--to": "all", "--api": "http://127.0.0.1:8470",
                                "--token-file": "{token}"}, {
        "VERSION": [Bad("", "must be 1 to 32 characters"), Bad("a b", "character ' ' not allowed")],
        "ID": [Bad("r1", "unexpected 'r1' (start: qala fw rollout VERSION --to SELECTOR")],
        "--to": [EMPTY, Bad("site:x", "selector term 'site:x': unknown"), Bad("district:", "needs a value"),
                 Bad("district:a b", "character ' ' not allowed")],
        "--waves": [Bad("", "must be percentages separated by commas"), Bad("x", "must be percentages"),
                    Bad("50,10,100", "must grow and end at 100"), Bad("1,50", "must grow and end at 100"),
                    Bad("nan,100", "must grow"), Bad("0,100", "each in (0, 100]")],
        "--max-failures": [Bad("", "expected a share 0..1"), Bad("x", "expected a share 0..1"),
                           Bad("2", "must be a share 0..1"), Bad("-1", "must be a share 0..1"),
                           Bad("nan", "must be a share 0..1"), Bad("1e999", "must be a share 0..1")],
        "--trial": whole(10, 86400),
        "--tries": whole(1, 20),
        "--board-timeout": whole(60, 7 * 86400),
        "--follow": FLAG,
        "--poll": seconds(60),
        "--config": [*toml_config(), Bad("{hub_toml_no_api}", "[api] has no control_token")],
        "--api": [Bad("", "the URL needs http:// or https:// and a host"), Bad("x", "the URL needs http:// or https://"),
                  Bad("ftp://h", "the URL needs http:// or https://"), Bad("http://h:x", "the port must be a number"),
                  Bad("http://h:99999", "the port must be a number 1..65535"), Bad("http://h:0", "1..65535")],
        "--token-file": [EMPTY, Bad("{missing}", "No such file or directory"), Bad("{dir}", "Is a directory"),
                         Bad("{file}", "must hold the API token on one line"), Bad("{binary}", "not a text file")],
    }),
    ("fw", "package-json"): Command({"--out": "{tmp}/package.json"}, {"--out": out_file()}, starts=False),
    ("provision", "init"): Command({"--site": "lab", "--store": "{tmp}/new-store"}, {
        "--site": ids(),
        "--broker-host": [Bad("", "not a DNS name or IP address"), Bad("broker lan", "not a DNS name or IP address"),
                          Bad("a..b", "not a DNS name or IP address"), Bad("-b", "not a DNS name")],
        "--port": whole(1, 65535),
        "--store": [EMPTY, Bad("{store}", "exists and is not an empty folder (a store is made only once)"),
                    Bad("{file}", "exists and is not an empty folder"),
                    Bad("{missing_parent}", "the folder {missing} does not exist"),
                    Bad("{under_file}", "the folder {file} does not exist")],
    }, starts=False),
    ("provision", "board"): Command({"device": "b2", "--store": "{store}", "--no-wifi": None,
                                     "--out": "{tmp}/board.json", "--district": "esil", "--lat": "51.13",
                                     "--lon": "71.43"}, {
        "device": [*ids(), Bad("b1", "DEVICE 'b1': already provisioned (generation 1)")], **BOARD, **PLACE,
    }, starts=False),
    ("provision", "place"): Command({"device": "b1", "--store": "{store}", "--district": "esil", "--lat": "51.13",
                                     "--lon": "71.43"}, {
        "device": [*ids(), Bad("b9", "DEVICE 'b9': not provisioned in")], "--store": store(CHANGED), **PLACE,
    }, starts=False),
    ("provision", "rotate"): Command({"device": "b1", "--store": "{store}", "--no-wifi": None,
                                      "--out": "{tmp}/board.json"}, {
        "device": [*ids(), Bad("b9", "DEVICE 'b9': not provisioned in")], **BOARD,
    }, starts=False),
    ("provision", "revoke"): Command({"device": "b1", "--store": "{store}"}, {
        "device": [*ids(), Bad("b9", "DEVICE 'b9': not provisioned in")], "--store": store(CHANGED),
    }, starts=False),
    ("provision", "hub"): Command({"name": "hub-2", "--store": "{store}"}, {
        "name": [*ids(), Bad("main", "NAME 'main': the hub identity exists; --rotate gives it a new password")],
        "--rotate": FLAG, "--store": store(CHANGED),
    }, starts=False),
    ("provision", "integrator"): Command({"name": "sc", "--store": "{store}"}, {
        "name": [*ids(), Bad("main", "NAME 'main': no such integrator identity to rotate (have: none)",
                             plus=("--rotate",)),
                 Bad("main", "NAME 'main': no such integrator identity (have: none)", plus=("--revoke",))],
        "--rotate": FLAG, "--revoke": FLAG, "--store": store(CHANGED),
    }, starts=False),
    ("provision", "list"): Command({"--store": "{store}"}, {"--store": store()}, starts=False),
    ("provision", "rabbitmq"): Command({"--store": "{store}", "--out": "{tmp}/definitions.json"},
                                       {"--store": store(), "--out": out_file()}, starts=False),
    ("set",): Command({"device": "air-01", "actuator": "fan1", "value": "80", "--config": "{hub_toml}"}, {
        "device": ids(),
        "actuator": ids(),
        "value": [Bad("", "value: must be a finite number"), Bad("x", "must be a finite number, e.g. 80 or 0.5"),
                  Bad("nan", "must be a finite number"), Bad("inf", "must be a finite number"),
                  Bad("1e999", "must be a finite number")],
        "--config": [*toml_config(), Bad("{hub_toml_no_api}", "has no [api] section: the hub serves no API")],
        "--api": [Bad("", "the URL needs http:// or https:// and a host"), Bad("x", "the URL needs http:// or https://"),
                  Bad("ftp://h", "the URL needs http:// or https://"), Bad("http://h:x", "the port must be a number"),
                  Bad("http://h:99999", "the port must be a number 1..65535"), Bad("http://h:0", "1..65535")],
        "--token": [EMPTY],
        "--timeout": seconds(120),
        "--ttl": seconds(3600),
    }),
}


# --------------------------------------------------------------------------- running one call


class Started(BaseException):  # BaseException: no `except Exception` in a command hides it
    """A command began its real work (a server, a build, a request) instead of refusing its input."""


STARTS = ("hub.service.serve", "simulators.city.Demo.run", "simulators.cluster.ClusterSite.start_services",
          "simulators.fleet.run_light",
          "simulators.fleet.find_micropython", "hub.tools.bundle.compile_module", "hub.tools.fw.run_mpremote",
          "hub.tools.fw.wait_for_birth", "urllib.request.urlopen", "hub.modbus.bus.PymodbusTransport.connect")


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for where in STARTS:
        def start(*_args: Any, _where: str = where, **_kwargs: Any) -> None:
            raise Started(_where)
        monkeypatch.setattr(where, start)
    monkeypatch.setattr("simulators.city.missing_tools", list)  # the tools: not this machine's business here
    monkeypatch.setattr("simulators.cluster.missing_tools", list)
    monkeypatch.setattr("hub.tools.bundle.find_mpy_cross", lambda: "mpy-cross")
    monkeypatch.delenv("QALA_API_CONTROL", raising=False)

    def too_long(_signum: int, _frame: object) -> None:
        raise Started(f"nothing within {TIMEOUT:g} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store (site lab, board b1) and a plain board config, made once with the project's own commands."""
    root = tmp_path_factory.mktemp("sweep")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["provision", "init", "--site", "lab", "--store", str(root / "store")]) == 0
        assert cli.main(["provision", "board", "b1", "--store", str(root / "store"), "--no-wifi",
                         "--out", str(root / "b1.json")]) == 0
        assert cli.main(["fw", "config", "t9", "--site", "lab", "--broker", "127.0.0.1:1883", "--no-tls",
                         "--no-wifi", "--out", str(root / "board.json")]) == 0
    return root


# Plain mode on purpose: no broker or database is reached (every start is stopped before it connects), and a
# store would only slow the sweep down; the secure defaults have their own tests (tests/trust, test_config).
HUB_TOML = """[site]
id = "lab"
[mqtt]
host = "127.0.0.1"
port = 1
tls = false
[trust]
plain = true
[influxdb]
api = "v1"
url = "http://127.0.0.1:1"
database = "qala"
[spool]
path = "spool"
"""


@pytest.fixture
def places(tmp_path: Path, templates: Path) -> dict[str, str]:
    """The files the values name: right ones for the valid calls, wrong ones for the mistakes."""
    files = {"file": "notes.txt", "bad_json": "bad.json", "json_list": "list.json", "binary": "binary.bin",
             "bad_toml": "bad.toml", "empty_file": "empty", "empty_toml": "empty.toml",
             "empty_object": "object.json", "hub_toml": "hub.toml", "hub_toml_no_api": "no-api.toml",
             "token": "token.txt"}
    texts = {"file": "just some notes\n", "bad_json": "{not json", "json_list": "[1, 2]", "bad_toml": "[site\n",
             "empty_file": "", "empty_toml": "", "empty_object": "{}",
             "hub_toml": HUB_TOML + '[api]\ncontrol_token = "control-token-0123456789"\n',
             "hub_toml_no_api": HUB_TOML, "token": "control-token-0123456789\n"}
    out = {name: str(tmp_path / file) for name, file in files.items()}
    for name, content in texts.items():
        (tmp_path / files[name]).write_text(content)
    (tmp_path / files["binary"]).write_bytes(b"\xff\xfe\x00 not text")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "not-a-bundle").mkdir()
    (tmp_path / "not-a-bundle" / "manifest.json").write_text("{oops")
    shutil.copytree(templates / "store", tmp_path / "store")
    shutil.copy(templates / "board.json", tmp_path / "board.json.in")
    return out | {
        "tmp": str(tmp_path), "dir": str(tmp_path / "a-folder"), "missing": str(tmp_path / "nothing-here"),
        "missing_parent": str(tmp_path / "nothing-here" / "x.json"),
        "under_file": str(tmp_path / files["file"] / "x.json"), "store": str(tmp_path / "store"),
        "ca": str(tmp_path / "store" / "tls" / "ca.pem"),
        "broker_cert": str(tmp_path / "store" / "tls" / "broker.pem"),
        "board_json": str(tmp_path / "board.json.in"), "bad_bundle": str(tmp_path / "not-a-bundle"),
    }


def fill(text: str, places: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: places.get(m[1], m[0]), text)


def argv(words: tuple[str, ...], argument: str | None, bad: Bad | None, places: dict[str, str]) -> list[str]:
    """The valid call of `words` with `argument` set to the mistyped value (as --option=value)."""
    command = SWEEP[words]
    values = dict(command.valid)
    if bad is not None and argument is not None:
        for name in bad.without:
            values.pop(name)
        values[argument] = bad.value
    options: list[str] = []
    positionals: list[str] = []
    for name, value in values.items():
        if not name.startswith("-"):
            positionals.append(fill(value or "", places))
        elif value is None:
            options.append(name)
        else:
            options.append(f"{name}={fill(value, places)}")
    extra = [fill(text, places) for text in (bad.plus if bad is not None else ())]
    return [*words, *options, *extra, *positionals]


def run(call: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str, str]:
    try:
        code: int | str | None = cli.main(call)
    except SystemExit as exc:  # argparse's own error exit
        code = exc.code
    except Started as exc:
        code = f"started {exc}"
    out, err = capsys.readouterr()
    return code, out, err


def files_of(folder: str) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file() and p.name != ".lock"}


# --------------------------------------------------------------------------- the tests


def test_the_sweep_knows_every_command_and_argument() -> None:
    found = {words: set(arguments) for words, arguments in discover().items()}
    assert found == {words: set(command.sweep) for words, command in SWEEP.items()}
    for words, command in SWEEP.items():  # the fillers are arguments the command has (a flag may be a --no- form)
        assert {name for name, value in command.valid.items() if value is not None} <= set(command.sweep), words


def test_parse_help_reads_entries_subcommands_and_metavars() -> None:
    commands, arguments = parse_help(help_text(("fw", "config")))
    assert commands == []
    assert arguments["device"] == "device"
    assert arguments["--out"] == "FILE"
    assert arguments["--tls"] is None  # --tls, --no-tls: a flag
    assert "--help" not in arguments
    assert parse_help(help_text(("fw",)))[0] == ["build", "config", "deploy", "release", "rollout", "package-json"]


@pytest.mark.parametrize("words", [words for words in SWEEP if words], ids=" ".join)
def test_every_valid_call_gets_to_its_start(words: tuple[str, ...], places: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(argv(words, None, None, places), capsys)
    if SWEEP[words].starts:
        assert isinstance(code, str), (code, err)
        assert code.startswith("started"), (code, err)
    else:
        assert code == 0, err


CASES = [(words, argument, bad) for words, command in SWEEP.items()
         for argument, bads in command.sweep.items() if not isinstance(bads, str) for bad in bads]


@pytest.mark.parametrize(("words", "argument", "bad"), CASES,
                         ids=[f"{' '.join(w)} {a}={b.value[:40]!r}" for w, a, b in CASES])
def test_a_mistyped_argument_gets_one_clear_line(words: tuple[str, ...], argument: str, bad: Bad,
                                                 places: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    call = argv(words, argument, bad, places)
    before = files_of(places["store"])
    code, out, err = run(call, capsys)
    lines = err.splitlines()
    assert code == 2, (call, code, err)
    assert out == "", out
    assert lines, "nothing on stderr"
    last = lines[-1]
    assert last.startswith("qala"), err
    assert len(lines) == 1 or (lines[0].startswith("usage: ") and ": error: argument " in last), err
    assert not [talk for talk in PYTHON_TALK if talk in err], err
    assert fill(bad.says, places) in last, last
    typed = fill(bad.value, places)
    if bad.names:
        named = argument in last if argument.startswith("-") else argument.lower() in last.lower()
        assert named or (typed and typed in last), last
    assert files_of(places["store"]) == before, "a refused command changed the store"
