"""`qala cluster`: a site on a three-node RabbitMQ cluster on this machine, for people to try and for tests.

It starts (simulators.cluster.ClusterSite, in a run folder, on 127.0.0.1 only) a provisioning store, the three
nodes (TLS, the store's users and topic permissions), influxd, `--hubs` hubs as competing consumers and
`--boards` boards running the real firmware under `micropython`, each listing every node. Every few seconds
it says what InfluxDB holds, which nodes and hubs run and how deep the telemetry queue is. With `--drill` it
SIGKILLs the node leading the telemetry queue and the first hub a third of the way in, starts that hub again
10 s later and the node at two thirds; each board then sends a known number of messages (the sim driver's
`limit`: those of 80 % of the run), and at the end they are counted in InfluxDB (docs/scale.md). It stops
everything it started, by PID, at the end or on Ctrl-C.

This is the only layer that writes to stdout. Nothing is imported from simulators/ until the command runs.
Imports hub.argtypes; knows nothing of the hub's service.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import argtypes

if TYPE_CHECKING:
    import argparse

    from simulators.cluster import ClusterSite

MAX_BOARDS = 20
"""Firmware processes: each takes a heap and a process (qala sim fleet --light is the load tool)."""
MIN_DURATION = 20.0
MIN_INTERVAL = 0.1
EVERY = 5.0
"""Seconds between progress lines."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cluster", help="a site on a local three-node RabbitMQ cluster: hubs, boards, a failover "
                                       "drill (docs/scale.md)")
    p.add_argument("--hubs", type=argtypes.whole(1, 8), default=2, help="hubs consuming the site (default 2)")
    p.add_argument("--boards", type=argtypes.whole(1, MAX_BOARDS), default=6,
                   help=f"firmware boards, 1..{MAX_BOARDS} (default 6)")
    p.add_argument("--duration", type=argtypes.seconds(86400), default=90.0, metavar="SECONDS",
                   help="how long the site runs (default 90)")
    p.add_argument("--interval", type=argtypes.seconds(60), default=1.0, metavar="SECONDS",
                   help="each board's sampling interval (default 1)")
    p.add_argument("--drill", action="store_true",
                   help="kill the queue's leading node and the first hub mid-run, bring them back, count losses")
    p.add_argument("--run-dir", type=argtypes.text, metavar="DIR",
                   help="where the run folder goes (default: a new folder under /tmp, kept)")
    p.set_defaults(func=cmd_cluster)


def _say(text: str) -> None:
    sys.stdout.write(f"qala cluster: {text}\n")
    sys.stdout.flush()


def _arguments(args: argparse.Namespace) -> str | None:
    if args.duration < MIN_DURATION:
        return f"--duration {args.duration:g}: at least {MIN_DURATION:g} s (the cluster takes about 20 s to start)"
    if args.interval < MIN_INTERVAL:
        return f"--interval {args.interval:g}: at least {MIN_INTERVAL:g} s (a board sends one message per interval)"
    return None


def cmd_cluster(args: argparse.Namespace) -> int:
    problem = _arguments(args)
    if problem is not None:
        sys.stderr.write(f"qala cluster: {problem}\n")
        return 2
    from simulators import cluster  # noqa: PLC0415 - loads the simulators only now

    problems = cluster.missing_tools()
    if problems:
        sys.stderr.write("qala cluster: cannot start, missing:\n  - " + "\n  - ".join(problems) + "\n")
        return 2
    root = Path(args.run_dir) if args.run_dir else Path(tempfile.gettempdir())
    blocker = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        sys.stderr.write(f"qala cluster: --run-dir {root}: {blocker} is a file, not a folder; give another\n")
        return 2
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="qala-cluster-", dir=root))
    from simulators.services import ServiceError, ServiceUnavailable  # noqa: PLC0415

    site = cluster.ClusterSite(folder, hubs=args.hubs)
    try:
        return _run(site, args)
    except KeyboardInterrupt:
        _say("stopping (Ctrl-C)")
        return 0
    except (ServiceError, ServiceUnavailable) as exc:
        sys.stderr.write(f"qala cluster: {exc}\n")
        return 1
    finally:
        site.stop()
        _say(f"stopped everything it started; the run folder stays: {folder}")


def _run(site: ClusterSite, args: argparse.Namespace) -> int:
    _say(f"run folder {site.folder}; starting three RabbitMQ nodes (about 20 s), influxd, {args.hubs} hubs, "
         f"{args.boards} boards")
    site.start_services(boards=args.boards)
    cluster = site.cluster
    assert cluster is not None
    for i, node in enumerate(cluster.nodes):
        _say(f"node {i + 1}: {node.nodename} MQTT(TLS) 127.0.0.1:{node.mqtt_port} AMQPS 127.0.0.1:{node.amqp_port}")
    for index in range(len(site.hubs)):
        site.start_hub(index)
    for index, hub in enumerate(site.hubs):
        site.wait_hub_connected(index)
        _say(f"hub {hub.name} (pid {hub.pid}) consumes qala.{site.site}.telemetry; config {hub.config}")
    _say(f"API of hub {site.hubs[0].name}: http://127.0.0.1:{site.hubs[0].api_port} (token in "
         f"{_token_file(site)})")
    limit = int(args.duration * 0.8 / args.interval) if args.drill else None  # all sent before the end
    boards = site.start_boards(interval=args.interval, limit=limit)
    _say(f"{len(boards)} boards under micropython, each listing the three nodes: "
         + ", ".join(b.device for b in boards))
    return _watch(site, args)


def _token_file(site: ClusterSite) -> Path:
    path = site.folder / "api-token"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(site.token + "\n")
    return path


def _watch(site: ClusterSite, args: argparse.Namespace) -> int:
    cluster = site.cluster
    assert cluster is not None
    start = time.monotonic()
    plan = _drill_plan(args.duration) if args.drill else {}
    killed: int | None = None
    last = 0.0
    while (elapsed := time.monotonic() - start) < args.duration:
        for step in [s for s, at in plan.items() if elapsed >= at]:
            del plan[step]
            killed = _drill_step(site, step, killed)
        if elapsed - last >= EVERY:
            last = elapsed
            _say(_progress(site, elapsed))
        time.sleep(0.2)
    if killed is not None:
        cluster.restart(killed)
    _say(_progress(site, time.monotonic() - start))
    return _summary(site)


def _drill_plan(duration: float) -> dict[str, float]:
    return {"kill": duration / 3, "hub back": duration / 3 + 10, "node back": 2 * duration / 3}


def _drill_step(site: ClusterSite, step: str, killed: int | None) -> int | None:
    cluster = site.cluster
    assert cluster is not None
    if step == "kill":
        node = cluster.leader(f"qala.{site.site}.telemetry")
        cluster.kill(node)
        site.kill_hub(0)
        _say(f"drill: SIGKILLed node {node + 1} (the telemetry queue's leader) and hub {site.hubs[0].name}")
        return node
    if step == "hub back":
        site.start_hub(0)
        _say(f"drill: hub {site.hubs[0].name} started again with its spool")
        return killed
    if killed is not None:
        cluster.restart(killed)
        _say(f"drill: node {killed + 1} started again; it rejoins the cluster")
    return None


def _progress(site: ClusterSite, elapsed: float) -> str:
    cluster = site.cluster
    assert cluster is not None
    try:
        info = cluster.queue_info(f"qala.{site.site}.telemetry")
        queue = f"queue={info.get('messages', '?')}"
    except Exception as exc:  # noqa: BLE001 - a progress line must not end the run
        queue = f"queue=? ({type(exc).__name__})"
    nodes = "".join("up " if n.running else "down " for n in cluster.nodes).strip()
    hubs = " ".join(f"{h.name}={'up' if h.alive else 'down'}" for h in site.hubs)
    return f"t={elapsed:.0f}s stored={sum(site.stored_by_board().values())} {queue} nodes=[{nodes}] {hubs}"


def _summary(site: ClusterSite) -> int:
    limit = site.limit
    if limit is not None:  # every board has sent its `limit` messages: wait for the hubs to store them
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and min(site.stored_by_board().values(), default=0) < limit:
            time.sleep(1)
    stored = site.stored_by_board()
    _say("telemetry messages stored per board (InfluxDB)" + (f", of the {limit} each sent:" if limit else ":"))
    for device, n in sorted(stored.items()):
        _say(f"  {device:20} {n:6}" + ("  <- missing" if limit is not None and n < limit else ""))
    if limit is None:
        return 0
    short = [device for device, n in stored.items() if n < limit]
    if short:
        _say(f"LOST: {len(short)} boards short of {limit} (see the hubs' logs in {site.folder / 'hubs'})")
        return 1
    _say(f"nothing lost: every board's {limit} messages are in InfluxDB, through the drill")
    return 0
