"""The `qala` command line: one entry point, a subcommand per job.

Each subcommand parses and validates its own arguments and returns an exit code; nothing here does I/O at
import time. Subcommands are added as the features they drive land.
"""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hub import __version__, argtypes, cluster_cli, demo_cli, fw_cli
from hub.modbus import cli as modbus_cli
from hub.trust import cli as trust_cli

log = logging.getLogger(__name__)

def _cmd_version(_args: argparse.Namespace) -> int:
    sys.stdout.write(f"qala {__version__}\n")
    return 0


def _cmd_hub_run(args: argparse.Namespace) -> int:
    # Imported here so that `qala version` and `qala demo` do not load paho, aiohttp and influxdb-client.
    from hub import config as hub_config  # noqa: PLC0415
    from hub.control.journal import JournalError  # noqa: PLC0415
    from hub.control.signing import CounterError  # noqa: PLC0415
    from hub.service import serve  # noqa: PLC0415
    from hub.trust.store import StoreError  # noqa: PLC0415

    try:
        config = hub_config.load(Path(args.config))  # its errors start with the file's path
    except hub_config.ConfigError as exc:
        sys.stderr.write(f"qala hub: configuration error: {exc}\n")
        return 2
    try:
        asyncio.run(serve(config))
    except hub_config.ConfigError as exc:  # found at start-up, e.g. api.tls_cert that does not load
        sys.stderr.write(f"qala hub: configuration error: {args.config}: {exc}\n")
        return 2
    except (StoreError, CounterError) as exc:
        sys.stderr.write(f"qala hub: provisioning store ([trust] store): {exc}\n")
        return 2
    except JournalError as exc:
        sys.stderr.write(f"qala hub: {exc}\n")
        return 2
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    from hub.control import cli as control_cli  # noqa: PLC0415

    return control_cli.run_set(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qala", description="Qala: city sensor networks into InfluxDB.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo_cli.add_parsers(sub)  # demo, sim fleet
    cluster_cli.add_parser(sub)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    hub = sub.add_parser("hub", help="the hub service")
    hub_sub = hub.add_subparsers(dest="hub_command", metavar="HUB_COMMAND", required=True)
    run = hub_sub.add_parser("run", help="ingest the site's MQTT telemetry into InfluxDB (until SIGTERM)")
    run.add_argument("--config", type=argtypes.text, required=True, metavar="HUB_TOML",
                     help="the hub's TOML configuration")
    run.set_defaults(func=_cmd_hub_run)
    modbus_cli.add_parser(sub)
    fw_cli.add_parser(sub)
    trust_cli.add_parser(sub)
    setpoint = sub.add_parser("set", help="send a setpoint through the running hub and wait for its outcome")
    setpoint.add_argument("device")
    setpoint.add_argument("actuator")
    setpoint.add_argument("value", help="a number, e.g. 80 or 0.5")
    setpoint.add_argument("--config", type=argtypes.text, metavar="HUB_TOML",
                          help="read the API address and token from the hub's config")
    setpoint.add_argument("--api", metavar="URL", help="the hub's API, e.g. http://127.0.0.1:8470")
    setpoint.add_argument("--token", type=argtypes.text, help="the API's control token (default: $QALA_API_CONTROL)")
    setpoint.add_argument("--timeout", type=argtypes.seconds(120), default=60.0,
                          help="seconds to wait for the outcome (at most 120)")
    setpoint.add_argument("--ttl", type=argtypes.seconds(3600),
                          help="seconds before the command expires, at most 3600 (default: control.ttl)")
    setpoint.set_defaults(func=_cmd_set)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # pymodbus logs every timeout at ERROR; hub.modbus logs each outage once (docs/modbus.md).
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
