"""Board tooling behind `qala fw`: bundles with a manifest, board configs, deploys with mpremote, mip's package.json.

- `build_bundle(out)`: hub.tools.bundle's .mpy build plus `manifest.json` (firmware version, sha256 per file)
  and `manifest`, the same files as a slot manifest (protocols/ota.py's format: size and sha256 per file, the
  oldest MicroPython that loads the .mpy files), which makes the bundle installable into a board's A/B slot.
- `make_config(...)`: a board config from command-line values (or a starting file), validated by
  firmware/config.py itself, the code the board runs, imported here under CPython.
- `board_layout`, `deploy_commands`, `run_mpremote`, `wait_for_birth`: what goes where on a board (the bundle
  in slot `/a/`, the A/B loader as `/loader.mpy`, run by `/main.py`: docs/ota.md), the mpremote command lines
  that copy it, reset the update state in `/ota/` and reset the board, and the wait for its birth message on
  the broker (hub/fw_cli.py strings them together as `qala fw deploy`).
- `install_unix(folder, bundle_folder, config)`: the same layout in a folder, for the unix port (tests,
  simulators): `micropython -X heapsize=... FOLDER/main.py FOLDER/board.json` runs it.
- `package_json()`: mip's package.json for installing the firmware from this repository's sources.

Errors are FwError, whose message names the argument or config key at fault. Imports paho-mqtt only when
`wait_for_birth` runs, and the firmware modules (plain Python) only to validate configs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from hub.address import host_port, host_problem
from hub.tools import bundle
from hub.tools.executables import find_executable
from protocols import ota
from protocols.errors import ProtocolError

MANIFEST = "manifest.json"
SLOT_MANIFEST = "manifest"  # a slot's manifest (protocols/ota.py); copied last: a slot with one is complete
SLOT = "a"  # where deploy puts the bundle; the loader (firmware/loader.py) runs it as /main.py
LOADER = "loader.mpy"  # the A/B loader (firmware/loader.py), /loader.mpy on a board, run by /main.py:
SLOT_MAIN = "slotmain.py"  # firmware/slotmain.py, `import loader`
OTA_DIR = "ota"  # the update state on a board (firmware/ota.py), emptied by every deploy
OTA_STATE = ("boot.json", "offer.json", "last.json", "last.wait", "board.new.json")
# the .mpy format mpy-cross emits -> the oldest MicroPython that loads it (MicroPython docs: ".mpy files")
_MPY_SINCE = {"6.1": (1, 20), "6.2": (1, 22), "6.3": (1, 23)}
BOARD_CONFIG = "board.json"
BOARD_CA = "ca.pem"  # the site CA on the board, next to /board.json (`mqtt.ca` is relative to the config's folder)
PACKAGE_JSON = "package.json"
RUNTIME_PACKAGES = bundle.PACKAGES
ENTRY_SCRIPTS = ("boot.py", "main.py")

# config key (prefix) -> the `qala fw config` argument that sets it, for error messages
_ARGUMENT_OF = (
    ("config: unknown key", "--from FILE"),
    ("site", "--site"),
    ("device", "DEVICE"),
    ("wifi.ssid", "--wifi-ssid"),
    ("wifi.password", "--wifi-password"),
    ("wifi", "--wifi-ssid"),
    ("mqtt.host", "--broker"),
    ("mqtt.port", "--broker"),
    ("mqtt.user", "--mqtt-user"),
    ("mqtt.password", "--mqtt-password"),
    ("mqtt.tls", "--tls"),
    ("mqtt.ca", "--ca"),
    ("mqtt.server_hostname", "--server-hostname"),
    ("mqtt", "--broker"),
    ("sensors", "--sensor"),
    ("commands.max_ttl", "--max-ttl"),
    ("commands", "qala provision board|rotate"),
)


class FwError(RuntimeError):
    """A build, config or deploy step failed; the message says which argument, key or tool."""


class InputError(FwError):
    """What was given is wrong (an argument, a config file or key): the command exits 2, not 1."""


def firmware_version(root: Path = bundle.REPO_ROOT) -> str:
    """firmware.VERSION, read from the source (an old editable install may see firmware/ as a namespace)."""
    for node in ast.parse((root / "firmware" / "__init__.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "VERSION" for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise FwError("firmware/__init__.py defines no VERSION")


def _board_config_module() -> Any:
    """firmware/config.py, the board's own validator (plain Python: it runs under CPython unchanged)."""
    return importlib.import_module("firmware.config")


def _drivers() -> dict[str, str]:
    drivers: dict[str, str] = importlib.import_module("firmware.sensors").DRIVERS
    return drivers


# --- build -------------------------------------------------------------------------------------------------


def build_bundle(out: Path, *, root: Path = bundle.REPO_ROOT) -> dict[str, Any]:
    """Compile firmware/ and protocols/ (of `root`) into `out`, write `out/manifest.json` and the slot manifest
    `out/manifest`; returns the manifest.json content."""
    try:
        files = bundle.build(out, root=root)
    except bundle.BundleError as exc:
        raise FwError(str(exc)) from None
    version = firmware_version(root)
    manifest = {"firmware": version, "files": dict(sorted(files.items()))}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    (out / SLOT_MANIFEST).write_bytes(slot_manifest(out, version, files))
    return manifest


def micropython_minimum() -> tuple[int, int]:
    """The oldest MicroPython that loads what this mpy-cross emits (`mpy-cross --version`: "emitting mpy v6.3")."""
    done = subprocess.run([bundle.find_mpy_cross(), "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    found = re.search(r"mpy v(\d+\.\d+)", done.stdout)
    if found is None or found.group(1) not in _MPY_SINCE:
        raise FwError(f"mpy-cross --version: cannot tell which MicroPython loads its output ({done.stdout.strip()!r})")
    return _MPY_SINCE[found.group(1)]


def slot_manifest(folder: Path, version: str, files: dict[str, str], kind: str = "fw") -> bytes:
    """The slot manifest text (protocols/ota.py) of `files` ({relative path: sha256}) under `folder`."""
    entries = [(rel, (folder / rel).stat().st_size, digest) for rel, digest in sorted(files.items())]
    try:
        return ota.encode_manifest(kind, version, micropython_minimum(), entries)
    except ProtocolError as exc:
        raise FwError(f"bundle {folder}: {exc}") from None


def check_slot(folder: Path) -> list[str]:
    """The files of a bundle's slot manifest (`qala fw build` or `qala fw release`), in its order, each one's size
    and hash checked; FwError naming the first that differs."""
    path = folder / SLOT_MANIFEST
    try:
        parsed = ota.parse_manifest(path.read_bytes())
    except OSError as exc:
        raise FwError(f"{folder} has no slot manifest ({SLOT_MANIFEST}: {exc.strerror or exc}); rebuild it: "
                      f"`qala fw build --out {folder}`") from None
    except ProtocolError as exc:
        raise FwError(f"{path}: not a slot manifest: {exc}; rebuild the bundle") from None
    if parsed["kind"] != "fw":
        raise FwError(f"{path}: a {parsed['kind']} bundle, not firmware: a board config goes with --config")
    for rel, size, digest in parsed["files"]:
        file = folder / rel
        if not file.is_file() or file.stat().st_size != size or hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            raise FwError(f"bundle {folder}: {rel} is missing or differs from {SLOT_MANIFEST}; rebuild it")
    rels = [rel for rel, _, _ in parsed["files"]]
    if f"firmware/{LOADER}" not in rels or f"firmware/{SLOT_MAIN}" not in rels:
        raise FwError(f"bundle {folder}: no firmware/{LOADER} (the A/B loader); rebuild it with this version")
    return rels


def check_bundle(folder: Path) -> dict[str, Any]:
    """The manifest of a built bundle, every file's hash checked; FwError naming the first mismatch."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except OSError as exc:
        raise FwError(f"{folder} is not a bundle ({MANIFEST}: {exc.strerror or exc}); run `qala fw build --out "
                      f"{folder}`") from None
    except ValueError:
        raise FwError(f"{folder} is not a bundle ({MANIFEST} is not valid JSON); run `qala fw build --out "
                      f"{folder}`") from None
    for rel, digest in manifest["files"].items():
        path = folder / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise FwError(f"bundle {folder}: {rel} is missing or differs from {MANIFEST}; rebuild it")
    return manifest


# --- config ------------------------------------------------------------------------------------------------


def parse_broker(text: str) -> tuple[str, int | None]:
    """`HOST[:PORT]` -> (host, port or None); FwError naming --broker."""
    try:
        return host_port(text, "192.168.10.2:1883")
    except ValueError as exc:
        raise InputError(f"--broker {text!r}: {exc}") from None


def parse_sensor(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME:DRIVER:QUANTITIES:INTERVAL` (quantities comma-separated) -> (name, sensor config)."""
    parts = text.split(":")
    if len(parts) != 4 or not all(parts):
        raise InputError(f"--sensor {text!r}: expected NAME:DRIVER:QUANTITIES:INTERVAL, e.g. air1:pms5003:pm25,pm10:10")
    name, driver, quantities, interval = parts
    try:
        seconds = float(interval)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise InputError(f"--sensor {text!r}: INTERVAL must be a number of seconds, got {interval!r}")
    value: float | int = int(seconds) if seconds.is_integer() else seconds
    return name, {"driver": driver, "interval": value, "quantities": quantities.split(",")}


def _argument_for(message: str, given: frozenset[str] | None, file_option: str) -> str:
    """Where to fix the key `message` starts with: the argument that sets it, or the file it came from.

    `given`: the arguments that set values in the config (None: no file, every value is an argument's)."""
    for prefix, argument in _ARGUMENT_OF:
        if message.startswith(prefix):
            if given is None or argument in given:
                return f" (set by {argument})"
            if argument.startswith("--") and file_option == "--from":
                return f" (edit it in the --from file, or set it with {argument})"
            break
    return f" (edit it in the {file_option} file)"


def _check_drivers(cfg: dict[str, Any], given: frozenset[str] | None, file_option: str) -> None:
    drivers = _drivers()
    for name, sensor in cfg["sensors"].items():
        if sensor["driver"] not in drivers:
            message = f"sensors.{name}.driver: no driver {sensor['driver']!r} in this firmware"
            raise InputError(f"board config: {message} (have: {', '.join(sorted(drivers))})"
                             f"{_argument_for(message, given, file_option)}")


def validate_config(raw: dict[str, Any], *, need_wifi: bool, given: frozenset[str] | None = None,
                    file_option: str = "--from") -> dict[str, Any]:
    """firmware.config.validate plus the driver check start.py makes; InputError naming the key and where to
    fix it: the argument that set it (`given`: the arguments that set values; None: all came from arguments)
    or the file they came from (`file_option`: --from for `qala fw config`, --config for `qala fw deploy`)."""
    config = _board_config_module()
    try:
        cfg: dict[str, Any] = config.validate(json.loads(json.dumps(raw)), need_wifi)
    except config.ConfigError as exc:
        raise InputError(f"board config: {exc}{_argument_for(str(exc), given, file_option)}") from None
    _check_drivers(cfg, given, file_option)
    return cfg


def make_config(
    device: str,
    *,
    base: dict[str, Any] | None = None,
    site: str | None = None,
    wifi_ssid: str | None = None,
    wifi_password: str | None = None,
    broker: str | None = None,
    mqtt_user: str | None = None,
    mqtt_password: str | None = None,
    tls: bool | None = None,
    ca: str | None = None,
    server_hostname: str | None = None,
    sensors: list[str] | None = None,
    need_wifi: bool = True,
    commands: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A board config: `base` (e.g. firmware/board.example.json) with these values set, then validated.

    --sensor entries replace the base's sensors (a board lists what is wired to it); a sensor of the same
    name in the base keeps its pins, options and warmup, which --sensor cannot express.
    """
    raw: dict[str, Any] = json.loads(json.dumps(base or {}))
    raw["device"] = device
    if site is not None:
        raw["site"] = site
    if wifi_ssid is not None or wifi_password is not None:
        wifi = raw.get("wifi") if isinstance(raw.get("wifi"), dict) else None
        if wifi is None:
            wifi = raw["wifi"] = {}
        if wifi_ssid is not None:
            wifi["ssid"] = wifi_ssid
        if wifi_password is not None:
            wifi["password"] = wifi_password
    if any(v is not None for v in (broker, mqtt_user, mqtt_password, tls, ca, server_hostname)):
        _set_mqtt(raw, broker, mqtt_user, mqtt_password, tls)
        _set_tls(raw["mqtt"], tls, ca, server_hostname)
    if commands is not None:
        raw["commands"] = commands
    if sensors:
        before: dict[str, Any] = raw["sensors"] if isinstance(raw.get("sensors"), dict) else {}
        raw["sensors"] = {}
        for name, spec in (parse_sensor(text) for text in sensors):
            kept: dict[str, Any] = before[name] if isinstance(before.get(name), dict) else {}
            raw["sensors"][name] = {**{k: v for k, v in kept.items() if k in ("pins", "options", "warmup")}, **spec}
    given = None if base is None else frozenset(argument for argument, value in (
        ("--site", site), ("--wifi-ssid", wifi_ssid), ("--wifi-password", wifi_password), ("--broker", broker),
        ("--mqtt-user", mqtt_user), ("--mqtt-password", mqtt_password), ("--tls", tls), ("--ca", ca),
        ("--server-hostname", server_hostname), ("--sensor", sensors), ("DEVICE", device),
    ) if value)
    validate_config(raw, need_wifi=need_wifi, given=given)
    return raw


def _set_mqtt(raw: dict[str, Any], broker: str | None, user: str | None, password: str | None,
              tls: bool | None) -> None:
    mqtt = raw.get("mqtt") if isinstance(raw.get("mqtt"), dict) else None
    if mqtt is None:
        mqtt = raw["mqtt"] = {}
    if broker is not None:
        host, port = parse_broker(broker)
        mqtt["host"] = host
        mqtt.pop("port", None)
        if port is not None:
            mqtt["port"] = port
    for key, value in (("user", user), ("password", password), ("tls", tls)):
        if value is not None:
            mqtt[key] = value


def _set_tls(mqtt: dict[str, Any], tls: bool | None, ca: str | None, server_hostname: str | None) -> None:
    if tls is False:  # plain: the TLS keys of a --from file would be refused
        mqtt.pop("ca", None)
        mqtt.pop("server_hostname", None)
    if server_hostname:
        problem = host_problem(server_hostname)
        if problem is not None:
            raise InputError(f"--server-hostname: {problem}")
    mqtt.update({k: v for k, v in (("ca", ca), ("server_hostname", server_hostname)) if v is not None})


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {path}: not a JSON file: it holds bytes that are not UTF-8 text") from None
    except ValueError as exc:
        raise InputError(f"{what} {path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} {path}: must hold a JSON object")
    return value


def read_ca(path: Path) -> bytes:
    """The site CA file for a board: PEM certificates only (what firmware/mqtt.py decodes); FwError if not."""
    from cryptography import x509  # noqa: PLC0415 - only --ca needs it

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--ca {path}: {exc.strerror or exc}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InputError(f"--ca {path}: not a PEM certificate file (-----BEGIN CERTIFICATE-----)") from None
    for cert in certs:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise InputError(f"--ca {path}: {cert.subject.rfc4514_string()} is not a CA certificate "
                             "(give the site CA, STORE/tls/ca.pem, not the broker's certificate)")
    return data


def board_ca(raw: dict[str, Any], config: Path) -> tuple[Path, str] | None:
    """(local file, path on the board) of the CA a TLS config names, for deploy; None for a plain config.

    A relative `mqtt.ca` is relative to the config file's folder on both sides (firmware/start.py); an
    absolute one must already be on the board. FwError if the local file is missing.
    """
    mqtt = raw.get("mqtt")
    if not isinstance(mqtt, dict) or mqtt.get("tls", True) is False or not isinstance(mqtt.get("ca"), str):
        return None
    name: str = mqtt["ca"]
    if name.startswith("/"):
        return None
    local = config.parent / name
    if not local.is_file():
        raise FwError(f"board config: mqtt.ca: {local} not found (qala fw config --ca FILE writes it next to "
                      "the config)")
    return local, name


def check_out(out: Path, option: str = "--out") -> None:
    """InputError if no file can be written at `out`: a folder there, no folder to hold it, no permission.
    For commands that change something else first (qala provision board|rotate): ask before, not after."""
    folder = out.parent
    if out.is_dir():
        raise InputError(f"{option} {out}: a folder is there; give a file name")
    if any(p.exists() and not p.is_dir() for p in (folder, *folder.parents)):
        raise InputError(f"{option} {out}: a file is in the way of the folder; give another {option} or remove it")
    if not folder.is_dir():
        raise InputError(f"{option} {out}: the folder {folder} does not exist; create it or give another {option}")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"{option} {out}: not allowed to write there; give another {option}")


def write_config(raw: dict[str, Any], out: Path) -> None:
    """Write the config readable by its owner only: it holds Wi-Fi and broker credentials."""
    text = json.dumps(raw, indent=2) + "\n"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# --- deploy ------------------------------------------------------------------------------------------------


def find_mpremote() -> str:
    found = find_executable("mpremote")
    if found is None:
        raise FwError("mpremote not found: pip install mpremote (in the dev extra)")
    return found


def board_layout(folder: Path, config: Path, ca: tuple[Path, str] | None = None) -> list[tuple[Path, str]]:
    """(local file, path on the board) of everything a deploy copies, in copy order.

    The bundle's files (slot manifest order) go into slot /a/ (/a/firmware/..., /a/protocols/...), the A/B
    loader to /loader.mpy and its one-line starter to /main.py (firmware/loader.py, firmware/slotmain.py: they
    run the slot), boot.py to /boot.py, the config to /board.json,
    the site CA (`board_ca`) where the config names it, and last the slot manifest to /a/manifest: a slot is
    complete, for the loader, only once its manifest is there.
    """
    rels = check_slot(folder)
    plan = [(folder / rel, f"{SLOT}/{rel}") for rel in rels]
    plan += [(folder / "firmware" / "boot.py", "boot.py"), (folder / "firmware" / LOADER, LOADER),
             (folder / "firmware" / SLOT_MAIN, "main.py")]
    plan.append((config, BOARD_CONFIG))
    if ca is not None:
        plan.append(ca)
    return [*plan, (folder / SLOT_MANIFEST, f"{SLOT}/{SLOT_MANIFEST}")]


def install_unix(folder: Path, bundle_folder: Path, config: dict[str, Any] | Path,
                 ca: Path | tuple[Path, str] | None = None) -> Path:
    """Lay out a board with A/B slots in `folder` for the unix port, as `qala fw deploy` lays it out on a board:
    the bundle in `a/`, the loader as `loader.mpy` and `main.py`, the config as `board.json` (a dict is written
    there), the CA (a file, copied as `ca.pem`, or (file, name)), and empty `b/` and `ota/` (a fresh board: no
    update state, no other slot). The board's state folder (`<device>.state`) is kept. Returns `folder/main.py`;
    run it as `micropython -X heapsize=... FOLDER/main.py FOLDER/board.json` (it exits 3 where a board would
    reset)."""
    folder.mkdir(parents=True, exist_ok=True)
    check_slot(bundle_folder)  # before anything is removed
    for name in (SLOT, "b", OTA_DIR):
        shutil.rmtree(folder / name, ignore_errors=True)
    target = folder / BOARD_CONFIG
    if isinstance(config, dict):
        write_config(config, target)
        config = target
    if isinstance(ca, Path):
        ca = (ca, BOARD_CA)
    for local, remote in board_layout(bundle_folder, config, ca):
        dest = folder / remote
        if dest.exists() and dest.samefile(local):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
    (folder / "b").mkdir()
    (folder / OTA_DIR).mkdir()
    return folder / "main.py"


def deploy_commands(port: str, folder: Path, config: Path, *, resume: bool = False,
                    ca: tuple[Path, str] | None = None) -> list[list[str]]:
    """mpremote argument lists: prepare the board, copy `board_layout` in one session, then reset.

    A small exec first removes the slot's manifest (the slot is incomplete until the copy ends with it) and the
    update state in /ota/ (a trial, an offer, a report: a deploy by cable starts afresh, docs/ota.md), and makes
    the folders, ignoring existing ones (mpremote's `fs mkdir` fails on them, and its `cp -r` into `:` depends
    on the port's stat of ""). mpremote skips files whose hash is unchanged. `resume` skips mpremote's soft
    reset before the copy (the unix port on a pty exits on a soft reset).
    """
    connect = ["connect", port, *(["resume"] if resume else [])]
    layout = board_layout(folder, config, ca)
    last = layout[-1]  # the slot manifest
    by_folder: dict[str, list[str]] = {}
    for local, remote in layout[:-1]:
        by_folder.setdefault(remote.rpartition("/")[0], []).append(str(local))
    folders = sorted({f for f in by_folder if f} | {SLOT, OTA_DIR})
    stale = [f"{SLOT}/{SLOT_MANIFEST}", *(f"{OTA_DIR}/{name}" for name in OTA_STATE)]
    prepare = (f"import os\nfor f in {stale!r}:\n try: os.remove(f)\n except OSError: pass\n"
               f"for d in {folders!r}:\n try: os.mkdir(d)\n except OSError: pass")
    copy = [*connect, "exec", prepare]
    for where, locals_ in by_folder.items():
        if where:
            copy += ["+", "fs", "cp", *locals_, ":" + where + "/"]
    for local, remote in layout[:-1]:
        if "/" not in remote:  # one by one: a copy into ":" needs a stat of "", which the unix port refuses
            copy += ["+", "fs", "cp", str(local), ":" + remote]
    copy += ["+", "fs", "cp", str(last[0]), ":" + last[1]]
    return [copy, [*connect, "reset"]]


def run_mpremote(args: list[str], *, mpremote: str | None = None, timeout: float = 300.0) -> str:
    """Run one mpremote command; FwError with its own message (e.g. cannot open the port) on failure."""
    exe = mpremote or find_mpremote()
    try:
        done = subprocess.run(  # noqa: S603 - our own argument list
            [exe, *args], capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise FwError(f"mpremote {' '.join(args[:3])}: no answer within {timeout:g} s (is the board "
                      "running a program that holds the REPL? press reset and try again)") from None
    except OSError as exc:
        raise FwError(f"cannot run mpremote ({exe}): {exc}") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise FwError(f"mpremote {' '.join(args[:2])} failed (exit {done.returncode}): "
                      f"{said[-1] if said else 'no output'}")
    return done.stdout


class _StatusWatch:
    """A paho client subscribed to one status topic, keeping fresh (not retained) payloads."""

    def __init__(self, topic: str, user: str | None, password: str | None, tls: bool, ca_file: str | None) -> None:
        import paho.mqtt.client as paho  # noqa: PLC0415 - only deploy needs paho
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.topic = topic
        self.payloads: list[bytes] = []
        self.subscribed = False
        # with a login, the username: mosquitto replaces the id by it anyway, and RabbitMQ lets a user have only
        # the session queues of that id (hub.trust.rabbit)
        client_id = user if user is not None else f"qala-fw-{os.getpid()}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(ca_certs=ca_file)  # the site CA; None: the system's CAs
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed = True

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if not msg.retain:  # a retained status is the previous run's
            self.payloads.append(msg.payload)

    def start(self, host: str, port: int, within: float) -> None:
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise FwError(f"cannot reach the broker {host}:{port} (--broker): {exc}") from None
        self.client.loop_start()
        deadline = time.monotonic() + within
        while not self.subscribed and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.subscribed:
            self.stop()
            raise FwError(f"the broker {host}:{port} did not accept a subscription to {self.topic} "
                          "(a login that may read it: --store, or --mqtt-user/--mqtt-password?)")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for_birth(
    host: str, port: int, site: str, device: str, timeout: float, *,
    user: str | None = None, password: str | None = None, tls: bool = False, ca_file: str | None = None,
    ready: Any = None,
) -> dict[str, Any]:
    """Wait for a fresh (not retained) status message of the device: its birth, or its safe-mode report.

    `ready()` is called once subscribed (deploy resets the board there, so the birth cannot be missed).
    Returns the birth's state, fw, boot and caps; FwError on time-out, broker trouble, or safe mode.
    """
    from protocols import payloads, topics  # noqa: PLC0415

    watch = _StatusWatch(topics.build(site, device, "status"), user, password, tls, ca_file)
    watch.start(host, port, min(timeout, 10.0))
    try:
        if ready is not None:
            ready()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while watch.payloads:
                status = payloads.decode_status(watch.payloads.pop(0))
                if status.state == "safe":
                    raise FwError(f"{device} started in safe mode: {status.error}")
                if status.state == "online":
                    return {"state": status.state, "fw": status.fw, "boot": status.boot, "caps": status.caps}
            time.sleep(0.05)
    finally:
        watch.stop()
    raise FwError(f"no birth message from {device} on {watch.topic} at {host}:{port} within {timeout:g} s: "
                  "watch the console (mpremote connect PORT repl) for Wi-Fi or broker errors")


# --- mip ---------------------------------------------------------------------------------------------------


def runtime_files(root: Path = bundle.REPO_ROOT) -> list[str]:
    """Every .py file a board runs: firmware/ and protocols/ without build-only files, sorted."""
    files = []
    for package in RUNTIME_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if path.name in bundle.NOT_ON_BOARD or bundle.SKIP_DIRS.intersection(rel.parts):
                continue
            files.append(rel.as_posix())
    return files


def package_json(root: Path = bundle.REPO_ROOT) -> dict[str, Any]:
    """mip's package.json: URLs relative to it, so it works from any fork (github:OWNER/REPO) or a checkout.

    Install with `mpremote mip install --target / github:OWNER/REPO`: the entry scripts land in / and the
    packages in /firmware and /protocols, as `qala fw deploy` puts them (but as source, compiled on the board).
    """
    urls = [[script, "firmware/" + script] for script in ENTRY_SCRIPTS]
    urls += [[rel, rel] for rel in runtime_files(root)]
    return {"urls": urls, "deps": [], "version": firmware_version()}


def package_json_text(root: Path = bundle.REPO_ROOT) -> str:
    """package_json as checked in at the repository root: one URL pair a line."""
    package = package_json(root)
    urls = ",\n".join("    " + json.dumps(pair) for pair in package["urls"])
    return f'{{\n  "urls": [\n{urls}\n  ],\n  "deps": [],\n  "version": {json.dumps(package["version"])}\n}}\n'

