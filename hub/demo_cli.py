"""`qala demo` and `qala sim fleet`: argument checks and the terminal output; the work is in simulators/.

`qala demo` runs simulators.city.Demo and shows its progress: refreshed in place when stdout is a terminal,
one plain line every few seconds otherwise (logs, CI, tests). `qala sim fleet` runs boards for load: real
firmware processes (simulators.fleet.FirmwareBoard) or, with --light, CPython boards (simulators.fleet.run_light).
This is the only layer that writes to stdout. Nothing is imported from simulators/ until a command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hub import argtypes
from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    import argparse

    from simulators.city import Progress

LIGHT_ABOVE = 20  # more real firmware boards than this: use --light


class View:
    """The demo's progress on a terminal (redrawn in place) or as plain periodic lines."""

    def __init__(self, out: TextIO, tty: bool, plain_every: float = 5.0) -> None:
        self.out = out
        self.tty = tty
        self.plain_every = plain_every
        self._drawn = 0
        self._last_plain: float | None = None  # the first progress is always shown (monotonic may be small)

    def event(self, text: str) -> None:
        self._erase()
        self.out.write(f"qala demo: {text}\n")
        self.out.flush()

    def progress(self, p: Progress) -> None:
        outcomes = ", ".join(f"{n} {state}" for state, n in sorted(p.outcomes.items())) or "none yet"
        lines = [
            f"time            {p.elapsed:5.0f} s of {p.duration:g} s",
            f"boards online   {p.boards_online}/{p.boards}",
            f"readings/s      {p.readings_per_s:7.1f} over MQTT ({p.readings_received} received)",
            f"stored          {p.readings_stored} values in InfluxDB; meters with data {p.meters_stored}/{p.meters}",
            f"commands        {p.commands_sent} sent to boards; outcomes: {outcomes}",
        ]
        if self.tty:
            self._erase()
            self.out.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        elif self._last_plain is None or time.monotonic() - self._last_plain >= self.plain_every:
            self._last_plain = time.monotonic()
            self.out.write(
                f"qala demo: t={p.elapsed:.0f}s boards_online={p.boards_online}/{p.boards} "
                f"readings_per_s={p.readings_per_s:.1f} stored={p.readings_stored} "
                f"meters={p.meters_stored}/{p.meters} commands={p.commands_sent} outcomes={outcomes}\n")
        self.out.flush()

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the first line of the view, clear below
            self._drawn = 0


def _summary_text(summary: dict[str, Any]) -> str:
    lines = ["", "stored in InfluxDB (values per measurement and device):"]
    for measurement, per_device in sorted(summary["stored"].items()):
        devices = ", ".join(f"{device} {n}" for device, n in sorted(per_device.items()))
        lines.append(f"  {measurement:7} {devices}")
    lines.append("commands (qala_command):")
    for row in summary["qala_command"]:
        reason = f" ({row['reason']})" if row.get("reason") else ""
        lines.append(f"  {row['device']}.{row['sensor']} = {row['value']:g} {row['quality']} "
                     f"source={row['source']}{reason}")
    drill = summary.get("alert_drill") or {}
    alert = drill.get("alert")
    if alert:
        lines.append("alerts (qala_alert):")
        lines.append(f"  {alert['id']} {alert['kind']} {alert['device']}: fired, then {alert['state']}; northbound "
                     f"feed received {', '.join(drill.get('northbound') or []) or 'nothing'}")
    elif drill:
        lines.append(f"alerts: the drill on {drill.get('device')} saw no alert fire and resolve (see hub.log)")
    influx = summary["influxd"]
    lines += ["", f"operator page (while a demo runs): {summary['operator_page']}"]
    lines += ["", f"the data stays in {summary['folder']}; while a demo runs, look at it with:",
              f"  {influx['cli']}"]
    for what, query in summary["queries"]:
        lines += [f"  -- {what}", f"  {query};"]
    lines.append(f"or over HTTP: curl -G http://127.0.0.1:{influx['port']}/query --data-urlencode db=qala "  # noqa: S608
                 "--data-urlencode 'q=SELECT count(*) FROM air GROUP BY device'")
    return "\n".join(lines) + "\n"


def cmd_demo(args: argparse.Namespace) -> int:
    from simulators import city  # noqa: PLC0415 - loads paho, pymodbus and the hub's modules

    out = sys.stdout
    view = View(out, out.isatty())
    options = city.Options(boards=args.boards, duration=args.duration, keep_running=args.keep_running)
    if args.run_dir:
        options.root = Path(args.run_dir)

    async def main() -> dict[str, Any] | None:
        demo = city.Demo(options, view.event, view.progress, progress_every=1.0)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, demo.request_stop)
        try:
            return await demo.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    problem = _demo_arguments(args)
    if problem is not None:
        sys.stderr.write(f"qala demo: {problem}\n")
        return 2
    problems = city.missing_tools()
    if problems:
        sys.stderr.write("qala demo: cannot start, missing:\n  - " + "\n  - ".join(problems) + "\n")
        return 2
    if args.keep_running:
        out.write("qala demo: starting; it stays up until Ctrl-C\n")
    else:
        out.write(f"qala demo: starting; it runs for {args.duration:g} s (Ctrl-C stops it earlier)\n")
    try:
        summary = asyncio.run(main())
    except city.DemoError as exc:
        sys.stderr.write(f"qala demo: {exc}\n")
        return 1
    if summary is None:
        out.write("qala demo: stopped while starting; stopped everything it had started\n")
        return 0
    out.write(_summary_text(summary))
    out.write("qala demo: stopped everything it started\n")
    return 0


def _demo_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with `qala demo`'s arguments (checked before anything starts), or None."""
    if args.boards > LIGHT_ABOVE:
        return (f"--boards {args.boards}: the demo runs each board as a firmware process (about 160k heap and a "
                f"process each): at most {LIGHT_ABOVE}; for load, qala sim fleet --light")
    if args.run_dir is not None:
        root = Path(args.run_dir)
        blocker = next((p for p in (root, *root.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            return f"--run-dir {root}: {blocker} is a file, not a folder; give another --run-dir"
    return None


def cmd_fleet(args: argparse.Namespace) -> int:
    from simulators import fleet  # noqa: PLC0415

    try:
        host, port = fleet.parse_broker(args.broker)
        _check_size(args)
        if args.site is not None:
            check_id("--site", args.site)
        _check_rate(args.rate, host, port)
        args.faults = _faults(args)
        args.trust = _fleet_store(args)  # last: it may provision boards (--provision)
        if args.trust is not None:
            args.site = args.trust.site
        args.site = args.site or "astana"
    except (fleet.FleetError, ProtocolError) as exc:
        sys.stderr.write(f"qala sim fleet: {exc}\n")
        return 2
    duration = args.duration if args.duration is not None else float("inf")
    if args.light:
        return _light(args, host, port, duration)
    return _firmware(args, host, port, duration)


def _faults(args: argparse.Namespace) -> list[Any]:
    """The --fault switches (simulators.fleet.LightFault); FleetError unless they are for light boards."""
    from simulators import fleet  # noqa: PLC0415

    faults = [fleet.parse_fault(text) for text in args.fault]
    if faults and not args.light:
        raise fleet.FleetError("--fault: only light boards (--light) show faults on demand")
    return faults


def _check_size(args: argparse.Namespace) -> None:
    from simulators import fleet  # noqa: PLC0415

    if not args.light and args.boards > LIGHT_ABOVE:
        raise fleet.FleetError(f"{args.boards} firmware processes are too heavy for one machine (about 160k "
                               f"heap and a process each); use --light above {LIGHT_ABOVE} boards")


def _check_rate(rate: float, host: str, port: int) -> None:
    """--rate against the firmware's own config rules (a board refuses to sample faster than it can send)."""
    from simulators import fleet  # noqa: PLC0415

    try:
        fleet.board_config("check", "check", "air", host, port, interval=1 / rate)  # no socket
    except ValueError as exc:
        raise fleet.FleetError(f"--rate {rate:g}: a board's config refuses it: {exc}") from None


def _fleet_store(args: argparse.Namespace) -> Any:
    """The provisioning store (--store), its fleet boards checked or provisioned; None with --plain."""
    from hub.trust import provision  # noqa: PLC0415
    from hub.trust.store import StoreError, TrustStore  # noqa: PLC0415
    from simulators import fleet  # noqa: PLC0415

    if args.plain:
        return None
    if args.store is None:
        raise fleet.FleetError("give --store STORE (a provisioned broker: the boards' logins and the site CA) or "
                               "--plain (a lab-bench broker without passwords)")
    try:
        store = TrustStore.load(Path(args.store))
    except StoreError as exc:
        raise fleet.FleetError(f"--store: {exc}") from None
    if args.site is not None and args.site != store.site:
        raise fleet.FleetError(f"--site {args.site}: the store {store.root} is for site {store.site}")
    try:
        names = [fleet.board_name(i)[0] for i in range(args.boards)]
        missing = [name for name in names if store.board(name) is None]
        if missing and args.provision:
            places = {name: fleet.board_place(i) for i, name in enumerate(names) if name in missing}
            provision.add_boards(store.root, missing, places)
            sys.stdout.write(f"qala sim fleet: provisioned {len(missing)} boards in {store.root}; SIGHUP the "
                             "broker (and the hub) so that they can log in\n")
            store = TrustStore.load(store.root)
        fleet.fleet_identities(store, args.boards)
    except (StoreError, provision.ProvisionError) as exc:
        raise fleet.FleetError(f"--store: {exc}") from None
    return store


def _light(args: argparse.Namespace, host: str, port: int, duration: float) -> int:
    from simulators import fleet  # noqa: PLC0415

    def report(messages: int, readings: int) -> None:
        sys.stdout.write(f"qala sim fleet: sent {messages} messages, {readings} readings\n")
        sys.stdout.flush()

    sys.stdout.write(f"qala sim fleet: {args.boards} light boards -> {host}:{port}, site {args.site}, "
                     f"{args.rate:g} messages/s each\n")
    for fault in args.faults:
        sys.stdout.write(f"qala sim fleet: fault {fault.label()}\n")
    try:
        messages, readings = asyncio.run(fleet.run_light(host, port, args.site, args.boards, args.rate, duration,
                                                         on_sent=report, store=args.trust, faults=args.faults))
    except KeyboardInterrupt:
        sys.stdout.write("qala sim fleet: stopped\n")
        return 0
    except OSError as exc:
        sys.stderr.write(f"qala sim fleet: {host}:{port}: {exc}\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - aiomqtt's MqttError and friends: say it, do not trace
        sys.stderr.write(f"qala sim fleet: {exc}\n")
        return 1
    sys.stdout.write(f"qala sim fleet: done, sent {messages} messages, {readings} readings\n")
    return 0


def _firmware(args: argparse.Namespace, host: str, port: int, duration: float) -> int:
    from hub.tools import bundle  # noqa: PLC0415
    from simulators import fleet  # noqa: PLC0415

    try:
        micropython = fleet.find_micropython()
        folder = Path(tempfile.mkdtemp(prefix="qala-fleet-"))
        bundle.build(folder / "bundle")
    except (fleet.FleetError, bundle.BundleError) as exc:
        sys.stderr.write(f"qala sim fleet: {exc}\n")
        return 2
    boards = []
    for index in range(args.boards):
        device, kind = fleet.board_name(index)
        identity = args.trust.board(device) if args.trust is not None else None
        ca = args.trust.ca_file if args.trust is not None else None
        config = fleet.board_config(args.site, device, kind, host, port, interval=1 / args.rate, seed=index,
                                    identity=identity, ca=ca)
        boards.append(fleet.FirmwareBoard(folder / device, config, folder / "bundle"))
    sys.stdout.write(f"qala sim fleet: {args.boards} firmware boards -> {host}:{port}, site {args.site}; "
                     f"consoles in {folder}\n")
    sys.stdout.flush()

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the boards like Ctrl-C: they run in sessions of their own

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        for board in boards:
            board.start(micropython)
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            dead = [b.device for b in boards if not b.alive]
            if dead:
                sys.stderr.write(f"qala sim fleet: boards exited: {', '.join(dead)} (see their console.log)\n")
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        for board in boards:
            with contextlib.suppress(Exception):
                board.stop()
        signal.signal(signal.SIGTERM, previous)
    sys.stdout.write("qala sim fleet: stopped\n")
    return 0


def add_parsers(sub: Any) -> None:
    """Register `demo` and `sim fleet` on the `qala` subparsers."""
    demo = sub.add_parser("demo", help="run the simulated city: boards, meters, the hub, InfluxDB (docs/demo.md)")
    demo.add_argument("--boards", type=argtypes.positive_int, default=6,
                      help=f"simulated boards (default 6, at most {LIGHT_ABOVE})")
    demo.add_argument("--duration", type=argtypes.seconds(), default=60.0,
                      help="seconds before the demo stops by itself (default 60)")
    demo.add_argument("--keep-running", action="store_true", help="stay up until Ctrl-C")
    demo.add_argument("--run-dir", type=argtypes.text, metavar="DIR", help="where the run folder goes (default ./run)")
    demo.set_defaults(func=cmd_demo)
    sim = sub.add_parser("sim", help="simulators")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)
    fleet = sim_sub.add_parser("fleet", help="many simulated boards publishing to a broker (load)")
    fleet.add_argument("--boards", type=argtypes.positive_int, required=True, help="number of boards")
    fleet.add_argument("--rate", type=argtypes.positive, required=True, help="telemetry messages per second per board")
    fleet.add_argument("--broker", required=True, metavar="HOST:PORT", help="the MQTT broker")
    fleet.add_argument("--site", help="site id (default: the store's; astana with --plain)")
    trust = fleet.add_mutually_exclusive_group()
    trust.add_argument("--store", type=argtypes.text, metavar="DIR",
                       help="the provisioning store: boards log in with their identities there, over TLS verified "
                       "against its site CA")
    trust.add_argument("--plain", action="store_true", help="a lab-bench broker: plain MQTT, no logins")
    fleet.add_argument("--provision", action="store_true",
                       help="with --store: provision the fleet's boards the store lacks (then SIGHUP the broker)")
    fleet.add_argument("--duration", type=argtypes.seconds(), help="seconds to run (default: until Ctrl-C)")
    fleet.add_argument("--light", action="store_true",
                       help="CPython boards with the firmware's payloads instead of firmware processes")
    fleet.add_argument("--fault", action="append", default=[], metavar="KIND:DEVICE:START_S:END_S[:QUANTITY[:SIZE]]",
                       help="with --light: a labelled fault a board shows (docs/detect.md), e.g. "
                            "spike:esil-air-01:30:40:pm25; repeat for more")
    fleet.set_defaults(func=cmd_fleet)
