"""`qala modbus ...` subcommands; hub/cli.py registers them through `add_parser(subparsers)`.

`qala modbus probe` reads a device's candidate registers (from a profile, or `--register ADDR:QUANTITY`),
ranks every byte order and address offset (hub.modbus.probe) and prints the best interpretations and the
profile snippet for the winner. Run it while nothing else polls that bus: two masters on one RS-485 line
corrupt each other's frames. Exit codes: 0 a plausible interpretation was found, 1 none was, 2 bad
arguments or no answer. Imports hub.modbus only; pymodbus is loaded when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import argtypes
from hub.address import host_port
from hub.modbus import probe
from hub.modbus import profile as profiles
from hub.modbus.bus import BusError, PymodbusTransport
from hub.modbus.config import RTU, TCP, BusConfig
from protocols import catalogue, registers

if TYPE_CHECKING:
    from collections.abc import Sequence

TOP = 5


def tcp_address(value: str) -> tuple[str, int]:
    """`HOST` or `HOST:PORT` (port 502 by default), for argparse: a bad one is an error naming the option."""
    try:
        host, port = host_port(value, "192.168.1.20:502")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None
    if port is None:
        return host, 502
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: the port must be 1..65535, got {port}")
    return host, port


def unit_id(value: str) -> int:
    """A Modbus unit id 0..255 (RTU takes 1..247: checked with the transport), for argparse."""
    try:
        unit = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: a unit id is a number, 1..247 on RTU, 0..255 over TCP") from None
    if not 0 <= unit <= 255:
        raise argparse.ArgumentTypeError(f"{unit}: a unit id is 1..247 on RTU, 0..255 over TCP")
    return unit


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `modbus` (with `probe`) to the `qala` subcommands."""
    modbus: argparse.ArgumentParser = subparsers.add_parser("modbus", help="Modbus tools")
    sub = modbus.add_subparsers(dest="modbus_command", metavar="MODBUS_COMMAND", required=True)
    p: argparse.ArgumentParser = sub.add_parser(
        "probe",
        help="find the byte order and address offset of a device's registers",
        description="Read candidate registers, decode them in every byte/word order at address offsets -1, 0, "
        "+1, rank by plausibility and print the profile snippet for the winner.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST[:PORT]", type=tcp_address,
                       help="a Modbus TCP device or gateway (port 502 by default)")
    where.add_argument("--rtu", type=argtypes.text, metavar="SERIAL_PORT",
                       help="a serial port with an RS-485 adapter, e.g. /dev/ttyUSB0")
    p.add_argument("--baudrate", type=argtypes.whole(300, 1_000_000), default=9600)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--stopbits", type=argtypes.whole(1, 2), choices=(1, 2), default=1)
    p.add_argument("--unit", type=unit_id, default=1, help="unit id (slave address), default 1")
    p.add_argument("--timeout", type=argtypes.seconds(60), default=1.0,
                   help="seconds per answer, default 1 (at most 60)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--profile", type=argtypes.text,
                      help="take the candidates from a profile (built-in name or .toml path)")
    what.add_argument("--register", action="append", metavar="ADDR:QUANTITY[:TYPE]",
                      help="a candidate: protocol address (0-based), catalogue quantity, type (default f32); repeat")
    p.add_argument("--table", choices=profiles.TABLES, default=profiles.INPUT, help="for --register, default input")
    p.set_defaults(func=cmd_probe)
    return modbus


def _profile(ref: str) -> profiles.Profile:
    """The profile --profile names; ValueError naming --profile and what to give."""
    path = profiles.resolve(ref)
    if path.parent == profiles.BUILTIN_DIR and not path.is_file():
        raise ValueError(f"--profile {ref}: no built-in profile of that name (have: "
                         f"{', '.join(profiles.builtin_names())}); a profile file's name ends in .toml")
    try:
        return profiles.load(path)
    except profiles.ProfileError as exc:
        raise ValueError(f"--profile {ref}: {exc}") from None


def _candidates(args: argparse.Namespace) -> list[probe.Candidate]:
    if args.profile is not None:
        return probe.candidates_from_profile(_profile(args.profile))
    out = []
    for spec in args.register:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--register {spec!r}: expected ADDR:QUANTITY[:TYPE]")
        try:
            address = int(parts[0], 0)
        except ValueError:
            raise ValueError(f"--register {spec!r}: the address {parts[0]!r} is not a number (0..65535, "
                             "decimal or 0x hex)") from None
        if not 0 <= address <= 0xFFFF:
            raise ValueError(f"--register {spec!r}: address must be 0..65535")
        if parts[1] not in catalogue.QUANTITIES:
            raise ValueError(f"--register {spec!r}: unknown quantity {parts[1]!r}")
        dtype = parts[2] if len(parts) == 3 else "f32"
        if dtype not in registers.TYPES:
            raise ValueError(f"--register {spec!r}: type must be one of {', '.join(registers.TYPES)}")
        out.append(probe.Candidate(f"{parts[1]}_{address}", address, parts[1], dtype, args.table))
    return out


def _serial_port(port: str) -> str:
    """--rtu: a character device (or a pyserial URL such as socket://HOST:PORT); ValueError if it is not."""
    if "://" in port:
        return port
    try:
        mode = Path(port).stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"--rtu {port}: no such serial port (is the adapter plugged in? see ls /dev/serial/by-id)"
                         ) from None
    except OSError as exc:
        raise ValueError(f"--rtu {port}: {exc.strerror or exc}") from None
    if not stat.S_ISCHR(mode):
        raise ValueError(f"--rtu {port}: not a serial port (a {'folder' if stat.S_ISDIR(mode) else 'file'}); give "
                         "the adapter's device, e.g. /dev/ttyUSB0")
    return port


def _bus(args: argparse.Namespace) -> BusConfig:
    if args.rtu is not None:
        if not 1 <= args.unit <= 247:
            raise ValueError(f"--unit {args.unit}: an RTU device answers only as 1..247 (0 is a broadcast)")
        return BusConfig("probe", RTU, port=_serial_port(args.rtu), baudrate=args.baudrate, parity=args.parity,
                         stopbits=args.stopbits, timeout=args.timeout, retries=0)
    host, port = args.tcp
    return BusConfig("probe", TCP, host=host, port=port, timeout=args.timeout, retries=0)


async def run_probe(bus: BusConfig, unit: int, cands: list[probe.Candidate]) -> list[probe.Interpretation]:
    transport = PymodbusTransport(bus)
    try:
        await transport.connect()
        words = await probe.read_candidates(transport, unit, cands)
    finally:
        transport.close()
    if not words:
        raise BusError("the device refused every candidate read")
    return probe.rank(cands, words)


def cmd_probe(args: argparse.Namespace) -> int:
    # pymodbus logs every timeout at ERROR; the probe reports failures itself.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        cands = _candidates(args)
        bus = _bus(args)
    except (ValueError, profiles.ProfileError) as exc:
        sys.stderr.write(f"qala modbus probe: {exc}\n")
        return 2
    try:
        ranked = asyncio.run(run_probe(bus, args.unit, cands))
    except BusError as exc:
        sys.stderr.write(f"qala modbus probe: no usable answer from unit {args.unit}: {exc}\n")
        return 2
    return report(ranked, sys.stdout)


def report(ranked: Sequence[probe.Interpretation], out: Any) -> int:
    out.write("best interpretations (order, address offset, plausibility score):\n")
    for interp in ranked[:TOP]:
        out.write(f"  {probe.describe(interp)}\n")
    best = ranked[0]
    if best.plausible == 0:
        out.write("no interpretation gives plausible values: check the unit id, the table and the addresses\n")
        return 1
    if len(ranked) > 1 and ranked[1].score == best.score:
        out.write("warning: the two best interpretations score the same; add candidates to tell them apart\n")
    out.write("\n" + probe.snippet(best))
    return 0
