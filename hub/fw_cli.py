"""`qala fw`: board tooling (build, config, deploy, package-json; release and rollout: hub.ota.cli); see
docs/hardware-engineers.md and docs/ota.md.

Parses arguments and prints; the work is in hub.tools.fw. Every failure is one line on stderr naming the
argument, config key or tool at fault, and exit code 2 (bad input) or 1 (a step failed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hub import argtypes
from hub.ota import cli as ota_cli
from hub.tools import bundle, fw

EXAMPLE = bundle.REPO_ROOT / "firmware" / "board.example.json"


def _err(text: str, code: int = 1) -> int:
    sys.stderr.write(f"qala fw: {text}\n")
    return code


def _out_error(path: Path, exc: OSError, want: str = "file") -> str:
    """One line for an --out that cannot be written: what is in the way and what to do."""
    if isinstance(exc, FileNotFoundError) and not path.parent.is_dir():
        return f"--out {path}: the folder {path.parent} does not exist; create it or give another --out"
    if isinstance(exc, IsADirectoryError) or (want == "file" and path.is_dir()):
        return f"--out {path}: a folder is there; give a file name"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return f"--out {path}: a file is in the way of the folder; give another --out or remove it"
    if isinstance(exc, PermissionError):
        return f"--out {path}: not allowed to write there; give another --out"
    return f"--out {path}: cannot write: {exc.strerror or exc}"


def _cmd_build(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        manifest = fw.build_bundle(out)
    except fw.FwError as exc:
        return _err(str(exc))
    except OSError as exc:
        return _err(_out_error(out, exc, "folder"), 2)
    sys.stdout.write(f"built firmware {manifest['firmware']}: {len(manifest['files'])} files in {out}, "
                     f"hashes in {out / fw.MANIFEST}\n")
    return 0


def _store(path: str) -> Any:
    """The provisioning store at path (hub.trust.store.TrustStore); InputError naming --store."""
    from hub.trust.store import StoreError, TrustStore  # noqa: PLC0415

    try:
        return TrustStore.load(Path(path))
    except StoreError as exc:
        raise fw.InputError(f"--store: {exc}") from None


def _identity(args: argparse.Namespace) -> tuple[Any, ...]:
    """(site, user, password, CA file, commands) from the arguments, or from --store for a provisioned board."""
    if not args.store:
        return args.site, args.mqtt_user, args.mqtt_password, args.ca, None
    store = _store(args.store)
    identity = store.board(args.device)
    if identity is None:
        raise fw.FwError(f"DEVICE {args.device!r} is not provisioned in {store.root}: "
                         f"`qala provision board {args.device} --store {args.store}` does it")
    if args.site not in (None, store.site) or args.mqtt_user or args.mqtt_password or args.ca or args.tls is False:
        raise fw.FwError("--store gives the site, the MQTT login, TLS and --ca: leave those out")
    return store.site, identity.user, identity.password, str(store.ca_file), {"key": identity.cmd_key.hex()}


def _cmd_config(args: argparse.Namespace) -> int:
    try:
        site, user, password, ca_path, commands = _identity(args)
        base = fw.read_json(Path(args.base), "--from") if args.base else None
        if commands is not None and base is not None and isinstance(base.get("commands"), dict):
            commands = {**base["commands"], **commands}  # keep its max_ttl
        raw = fw.make_config(
            args.device, base=base, site=site, wifi_ssid=args.wifi_ssid,
            wifi_password=args.wifi_password or os.environ.get("QALA_WIFI_PASSWORD"),
            broker=args.broker, mqtt_user=user,
            mqtt_password=password or os.environ.get("QALA_MQTT_PASSWORD"),
            tls=True if args.store else args.tls, ca=fw.BOARD_CA if ca_path else None,
            server_hostname=args.server_hostname, sensors=args.sensor, need_wifi=not args.no_wifi,
            commands=commands,
        )
        ca = fw.read_ca(Path(ca_path)) if ca_path else None
    except fw.FwError as exc:
        return _err(str(exc), 2)
    if args.out == "-":
        sys.stdout.write(json.dumps(raw, indent=2) + "\n")
        if ca is not None:
            sys.stderr.write(f"copy {ca_path} next to the config as {fw.BOARD_CA} (qala fw deploy takes it)\n")
    else:
        try:
            fw.write_config(raw, Path(args.out))
            if ca is not None:
                (Path(args.out).parent / fw.BOARD_CA).write_bytes(ca)
        except OSError as exc:
            return _err(_out_error(Path(args.out), exc), 2)
        sys.stderr.write(f"wrote {args.out} for {raw['site']}/{raw['device']} (validated; mode 600)"
                         f"{f' and {fw.BOARD_CA}, its site CA' if ca is not None else ''}\n")
    return 0


Watch = tuple[str, int, str | None, str | None, bool]  # host, port, user, password, TLS


def _watch(args: argparse.Namespace, raw: dict[str, Any]) -> Watch | None:
    """Where and as whom to watch for the birth (None with --no-wait); InputError naming the argument. The
    arguments are checked with --no-wait too: a typo is said, not ignored."""
    mqtt: dict[str, Any] = raw.get("mqtt") or {}
    first, at = mqtt.get("host"), None
    if isinstance(first, list):  # the nodes of a clustered broker (failover, docs/firmware.md): watch the first
        first, at = fw.parse_broker(first[0]) if first and isinstance(first[0], str) else (None, None)
    host, port = fw.parse_broker(args.broker) if args.broker is not None else (first, at)
    if port is not None and not 1 <= port <= 65535:
        raise fw.InputError(f"--broker {args.broker!r}: the port must be 1..65535, got {port}")
    if host is None and not args.no_wait:
        raise fw.InputError("--broker: the config has no mqtt.host; give --broker HOST:PORT or --no-wait")
    tls = mqtt.get("tls", True) is not False
    port = port or int(mqtt.get("port", 8883 if tls else 1883))
    user, password = args.mqtt_user, args.mqtt_password or os.environ.get("QALA_MQTT_PASSWORD")
    if args.store is not None:  # the store's tools login (never the hub's: that would take over its session)
        from hub.trust.store import TOOLS, StoreError  # noqa: PLC0415

        try:
            user, password = _store(args.store).hub(TOOLS)
        except StoreError as exc:
            raise fw.InputError(f"--store: {exc}") from None
    if args.no_wait or host is None:
        return None
    return host, port, user, password, tls


def _deploy(args: argparse.Namespace, folder: Path, raw: dict[str, Any], ca: tuple[Path, str] | None,
            watch: Watch | None) -> int:
    config_path = Path(args.config)
    copy, reset = fw.deploy_commands(args.port, folder, config_path, resume=args.resume, ca=ca)
    sys.stderr.write(f"copying {folder} and {config_path} to {args.port} ...\n")
    fw.run_mpremote(copy, mpremote=args.mpremote)
    if watch is None:
        fw.run_mpremote(reset, mpremote=args.mpremote)
        sys.stderr.write("reset; not waiting for the birth message (--no-wait)\n")
        return 0
    host, port, user, password, tls = watch
    birth = fw.wait_for_birth(
        host, port, raw["site"], raw["device"], args.timeout, user=user, password=password, tls=tls,
        ca_file=str(ca[0]) if ca is not None else None,
        ready=lambda: fw.run_mpremote(reset, mpremote=args.mpremote),
    )
    sys.stdout.write(f"{raw['site']}/{raw['device']} is online: firmware {birth['fw']}, boot {birth['boot']}\n")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    """Every argument is checked (the config, --bundle, --broker, --store, --mpremote) before a bundle is built
    or anything is copied: a typo costs no build and leaves the board as it was."""
    try:
        config_path = Path(args.config)
        raw = fw.read_json(config_path, "--config")
        fw.validate_config(raw, need_wifi=not args.no_wifi, given=frozenset(), file_option="--config")
        try:
            ca = fw.board_ca(raw, config_path)
        except fw.FwError as exc:
            raise fw.InputError(f"--config {config_path}: {exc}") from None
        watch = _watch(args, raw)
        if args.mpremote is not None and shutil.which(args.mpremote) is None:
            raise fw.InputError(f"--mpremote {args.mpremote}: not a program that can run; give mpremote's path, or "
                                "leave --mpremote out for the venv's")
        if args.bundle is not None:
            try:
                fw.check_bundle(Path(args.bundle))
            except fw.FwError as exc:
                raise fw.InputError(f"--bundle: {exc}") from None
            return _deploy(args, Path(args.bundle), raw, ca, watch)
        with tempfile.TemporaryDirectory(prefix="qala-fw-") as tmp:
            fw.build_bundle(Path(tmp))
            return _deploy(args, Path(tmp), raw, ca, watch)
    except fw.FwError as exc:
        return _err(str(exc), 2 if isinstance(exc, fw.InputError) else 1)


def _cmd_package_json(args: argparse.Namespace) -> int:
    text = fw.package_json_text()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.out).write_text(text)
        except OSError as exc:
            return _err(_out_error(Path(args.out), exc), 2)
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `fw` (build, config, deploy, package-json) to the `qala` subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser("fw", help="board firmware: build, config, deploy")
    sub = parser.add_subparsers(dest="fw_command", metavar="FW_COMMAND", required=True)

    build = sub.add_parser("build", help="compile firmware/ and protocols/ with mpy-cross into a bundle")
    build.add_argument("--out", type=argtypes.text, default="build/firmware", metavar="DIR", help="the bundle folder")
    build.set_defaults(func=_cmd_build)

    config = sub.add_parser("config", help="write a board config, validated by the board's own code")
    config.add_argument("device", help="the board's id (1-32 of A-Z a-z 0-9 _ -)")
    config.add_argument("--from", dest="base", type=argtypes.text, metavar="FILE",
                        help=f"start from this config (e.g. {EXAMPLE.relative_to(bundle.REPO_ROOT)})")
    config.add_argument("--site")
    config.add_argument("--wifi-ssid")
    config.add_argument("--wifi-password", help="default: $QALA_WIFI_PASSWORD")
    config.add_argument("--broker", metavar="HOST:PORT", help="the MQTT broker the board reports to")
    config.add_argument("--mqtt-user")
    config.add_argument("--mqtt-password", help="default: $QALA_MQTT_PASSWORD")
    config.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                        help="MQTT over TLS, verified (the board's default); --no-tls: plain, a lab bench only")
    config.add_argument("--ca", type=argtypes.text, metavar="FILE",
                        help=f"the site CA (PEM, e.g. STORE/tls/ca.pem): copied next to --out as {fw.BOARD_CA}, "
                        "which the config names and deploy puts on the board")
    config.add_argument("--server-hostname", metavar="NAME",
                        help="the name the broker's certificate must carry (default: the --broker host)")
    config.add_argument("--sensor", action="append", metavar="NAME:DRIVER:QUANTITIES:INTERVAL",
                        help="a sensor, e.g. air1:pms5003:pm1,pm25,pm10:10 (repeat; replaces --from's sensors, "
                        "keeping the pins and options of one with the same name)")
    config.add_argument("--store", type=argtypes.text, metavar="DIR",
                        help="a board provisioned in this store (qala provision): its site, MQTT login, command key "
                        "and the site CA come from there")
    config.add_argument("--no-wifi", action="store_true", help="a board without Wi-Fi (unix port, wired)")
    config.add_argument("--out", type=argtypes.text, default="board.json", metavar="FILE",
                        help="where to write it ('-': stdout)")
    config.set_defaults(func=_cmd_config)

    deploy = sub.add_parser("deploy", help="copy a bundle and a config onto a board, reset it, wait for its birth")
    deploy.add_argument("--port", type=argtypes.text, required=True,
                        help="the board's serial port, e.g. /dev/ttyUSB0 (mpremote connect)")
    deploy.add_argument("--config", type=argtypes.text, default="board.json", metavar="FILE", help="the board config")
    deploy.add_argument("--bundle", type=argtypes.text, metavar="DIR",
                        help="a `qala fw build` folder (default: build one now)")
    deploy.add_argument("--broker", type=argtypes.text, metavar="HOST:PORT",
                        help="where to watch for the birth (default: the config's)")
    deploy.add_argument("--store", type=argtypes.text, metavar="DIR",
                        help="watch the broker with this provisioning store's `tools` login (qala provision)")
    deploy.add_argument("--mqtt-user", help="credentials for watching the broker (without --store)")
    deploy.add_argument("--mqtt-password", help="default: $QALA_MQTT_PASSWORD")
    deploy.add_argument("--timeout", type=argtypes.seconds(), default=60.0,
                        help="seconds to wait for the birth message")
    deploy.add_argument("--no-wait", action="store_true", help="reset and return without watching the broker")
    deploy.add_argument("--no-wifi", action="store_true", help="the board has no Wi-Fi (config check)")
    deploy.add_argument("--resume", action="store_true",
                        help="no soft reset before copying (mpremote resume; for the unix port on a pty)")
    deploy.add_argument("--mpremote", type=argtypes.text, metavar="EXE",
                        help="the mpremote executable (default: the venv's)")
    deploy.set_defaults(func=_cmd_deploy)

    ota_cli.add_parsers(sub)  # release, rollout (hub.ota.cli)

    pkg = sub.add_parser("package-json", help="print mip's package.json for the firmware (checked in at the root)")
    pkg.add_argument("--out", type=argtypes.text, default="-", metavar="FILE")
    pkg.set_defaults(func=_cmd_package_json)
    return parser
