"""`qala provision`: a site's identities (docs/security.md): make the store, add, rotate and revoke boards, hubs.

    qala provision init   --store DIR --site ID [--broker-host NAME ...] [--port 8883]
    qala provision board  DEVICE --store DIR [--from FILE] [--broker HOST:PORT] [--sensor ...] [--out board.json]
                          [--district D] [--lat X --lon Y]
    qala provision rotate DEVICE --store DIR [--from FILE] [--out board.json]
    qala provision revoke DEVICE --store DIR
    qala provision place  DEVICE --store DIR [--district D] [--lat X --lon Y]
    qala provision hub    NAME --store DIR [--rotate]
    qala provision integrator NAME --store DIR [--rotate | --revoke]
    qala provision list   --store DIR
    qala provision rabbitmq --store DIR [--out definitions.json]

`board` and `rotate` write the board's config (its MQTT login, its command key, the site CA's file name) with
the site CA next to it as ca.pem, validated by the board's own code before the store changes: a config that
would not run leaves the store as it was. `integrator` makes a situation centre's login: it may only read the
northbound feed `qala/{site}/_north/#` (docs/integrators.md). `rabbitmq` writes the same policy as RabbitMQ
definitions for a cluster (docs/scale.md, "Securing the cluster"). Nothing here prints a secret: they go to files
of mode 600 only.
After a change, mosquitto and the hub read the store again on SIGHUP (printed as a reminder). Every failure
is one line on stderr naming the argument or file, exit code 2 (bad input) or 1 (the system refused a write).

Parses arguments and prints; the work is in hub.trust.provision and hub.tools.fw.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import argtypes
from hub.tools import fw
from hub.trust import broker, provision
from hub.trust.store import DEFAULT_HUB, INTEGRATORS, TOOLS, BoardIdentity, StoreError, TrustStore

if TYPE_CHECKING:
    import argparse

RELOAD = ("reload: kill -HUP the broker (mosquitto reads passwd and acl again) and the hub (it reads the store "
          "again), or restart them")


def _err(text: str, code: int = 2) -> int:
    sys.stderr.write(f"qala provision: {text}\n")
    return code


def board_config(store: TrustStore, device: str, args: argparse.Namespace) -> dict[str, Any]:
    """The board's config from --from and the other arguments, with its identity from the store; validated."""
    identity = store.board(device)
    assert identity is not None, "the caller provisioned it"
    base = fw.read_json(Path(args.base), "--from") if args.base else None
    return fw.make_config(
        device, base=base, site=store.site, wifi_ssid=args.wifi_ssid, wifi_password=args.wifi_password,
        broker=args.broker or f"{store.broker_host}:{args.port}", mqtt_user=identity.user,
        mqtt_password=identity.password, tls=True, ca=fw.BOARD_CA, server_hostname=args.server_hostname,
        sensors=args.sensor, need_wifi=not args.no_wifi,
        commands={"key": identity.cmd_key.hex(), "max_ttl": args.max_ttl},
    )


def _write_board(store: TrustStore, raw: dict[str, Any], args: argparse.Namespace) -> str:
    out = Path(args.out)
    fw.write_config(raw, out)
    (out.parent / fw.BOARD_CA).write_bytes(store.ca_file.read_bytes())
    return f"{out} and {out.parent / fw.BOARD_CA} (mode 600; copy both to the board: qala fw deploy --config {out})"


def _cmd_init(args: argparse.Namespace) -> int:
    store = provision.init_store(Path(args.store), args.site, args.broker_host or [], port=args.port)
    also = "" if store.broker_host == provision.DEFAULT_HOST else " (and localhost, 127.0.0.1)"
    sys.stdout.write(
        f"store {store.root} for site {store.site}: site CA {store.ca_file}, broker certificate for "
        f"{store.broker_host}{also}, hub identities {DEFAULT_HUB} (the hub) and {TOOLS} (qala fw deploy)\n"
        f"broker: include {store.broker_conf} in mosquitto's config (Debian: /etc/mosquitto/conf.d/)\n"
        f'hub: [trust] store = "{store.root}" in hub.toml\n')
    return 0


def _save_with_config(args: argparse.Namespace, rotate: bool) -> tuple[TrustStore, BoardIdentity, str]:
    """A new (or rotated) identity for args.device, its config checked before the store changes, then both
    written: (the store, the identity, where the config went)."""
    with provision.open_store(Path(args.store)) as session:
        identity = session.rotated_board(args.device) if rotate else session.new_board(args.device)
        preview = TrustStore(session.root, session.store.site, session.store.broker_host,
                             {identity.device: identity}, {})
        raw = board_config(preview, identity.device, args)
        fw.check_out(Path(args.out))  # before the store changes: a new identity must reach its config
        place = getattr(args, "district", None), getattr(args, "lat", None), getattr(args, "lon", None)
        places = {identity.device: provision.check_place(*place)} if any(v is not None for v in place) else None
        store = session.save_boards([identity], places)
    return store, identity, _write_board(store, raw, args)


def _cmd_board(args: argparse.Namespace) -> int:
    store, identity, where = _save_with_config(args, rotate=False)
    sys.stdout.write(f"provisioned {store.site}/{identity.device} (generation 1): {where}\n{RELOAD}\n")
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    store, identity, where = _save_with_config(args, rotate=True)
    sys.stdout.write(f"rotated {store.site}/{identity.device} to generation {identity.generation}: new MQTT "
                     f"password and command key in {where}; its old ones stop working at the reload\n{RELOAD}\n")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    provision.revoke_board(Path(args.store), args.device)
    sys.stdout.write(f"revoked {args.device}: removed from the broker's passwd and acl and from the hub's devices; "
                     f"its telemetry is dropped after the reload\n{RELOAD}\n")
    return 0


def _cmd_place(args: argparse.Namespace) -> int:
    store = provision.place_board(Path(args.store), args.device, args.district, args.lat, args.lon)
    entry = store.entry(args.device)
    where = "?"
    if entry is not None:
        where = f"district {entry.district or '-'}, " + (
            f"lat {entry.lat:g}, lon {entry.lon:g}" if entry.lat is not None and entry.lon is not None
            else "no coordinates")
    sys.stdout.write(f"placed {store.site}/{args.device}: {where}; the hub reads it at the next reload\n{RELOAD}\n")
    return 0


def _cmd_hub(args: argparse.Namespace) -> int:
    user, _password = provision.add_hub(Path(args.store), args.name, rotate=args.rotate)
    secret = Path(args.store).absolute() / "secrets" / "hubs" / f"{args.name}.json"
    sys.stdout.write(f"{'rotated' if args.rotate else 'added'} hub identity {args.name} (MQTT user {user}, "
                     f'password in {secret}); a hub uses it with [trust] hub = "{args.name}"\n{RELOAD}\n')
    return 0


def _cmd_integrator(args: argparse.Namespace) -> int:
    root = Path(args.store).absolute()
    if args.revoke:
        provision.revoke_integrator(root, args.name)
        sys.stdout.write(f"revoked integrator {args.name}: removed from the broker's passwd and acl\n{RELOAD}\n")
        return 0
    user, _password = provision.add_integrator(root, args.name, rotate=args.rotate)
    store = TrustStore.load(root)
    sys.stdout.write(
        f"{'rotated' if args.rotate else 'added'} integrator {args.name} (MQTT user {user}, password in "
        f"{root / INTEGRATORS / (args.name + '.json')}): it may read {broker.north_filter(store.site)} only; "
        f"hand it that login, the site CA {store.ca_file} and the broker {store.broker_host} (TLS, "
        f"docs/integrators.md)\n{RELOAD}\n")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = TrustStore.load(Path(args.store))
    sys.stdout.write(f"site {store.site}, broker {store.broker_host}, hubs: {', '.join(sorted(store.hubs()))}, "
                     f"integrators: {', '.join(sorted(store.integrators())) or 'none'}\n")
    for device in sorted(store.devices()):
        entry = store.entry(device)
        generation = entry.generation if entry is not None else "?"
        place = ""
        if entry is not None and entry.district is not None:
            place += f"\tdistrict {entry.district}"
        if entry is not None and entry.lat is not None and entry.lon is not None:
            place += f"\tlat {entry.lat:g} lon {entry.lon:g}"
        sys.stdout.write(f"{device}\tgeneration {generation}\tuser {broker.board_user(store.site, device)}{place}\n")
    sys.stdout.write(f"{len(store.devices())} devices\n")
    return 0


def _cmd_rabbitmq(args: argparse.Namespace) -> int:
    out = Path(args.out)
    store = TrustStore.load(Path(args.store))
    fw.check_out(out)
    doc = provision.write_rabbitmq(store, out)
    sys.stdout.write(
        f"wrote {out} (mode 600): {len(doc['users'])} users of site {store.site} with their permissions and topic "
        f"permissions on amq.topic; load it into the cluster: rabbitmqctl import_definitions {out} (or "
        f"definitions.local.path in rabbitmq.conf), then delete the users it no longer names (rabbitmqctl "
        f"list_users, delete_user): an import never removes one (docs/scale.md)\n")
    return 0


def _run(func: Any, args: argparse.Namespace) -> int:
    try:
        code: int = func(args)
    except (provision.ProvisionError, fw.FwError) as exc:
        return _err(str(exc))
    except StoreError as exc:
        return _err(f"--store: {exc}")
    except OSError as exc:
        return _err(f"{exc.filename or ''}: {exc.strerror or exc}", 1)
    return code


def _place_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--district", type=argtypes.identifier, metavar="D",
                   help="the city district the board serves, an id (coverage per district)")
    p.add_argument("--lat", type=argtypes.degrees(90), metavar="X", help="latitude, degrees (WGS 84), with --lon")
    p.add_argument("--lon", type=argtypes.degrees(180), metavar="Y", help="longitude, degrees, with --lat")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `provision` (init, board, rotate, revoke, hub, integrator, list, rabbitmq) to the `qala` subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "provision", help="the site's identities: CA, broker policy, board and hub logins, command keys")
    sub = parser.add_subparsers(dest="provision_command", metavar="PROVISION_COMMAND", required=True)

    def command(name: str, func: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=text)
        p.set_defaults(func=lambda args: _run(func, args))
        return p

    init = command("init", _cmd_init, "make a store: site CA, broker certificate, broker policy, hub identity")
    init.add_argument("--site", required=True, help="the site id (1-32 of A-Z a-z 0-9 _ -)")
    init.add_argument("--broker-host", action="append", metavar="NAME",
                      help="a name or address of the broker for its certificate (repeat; the first is the one "
                      "boards dial); localhost and 127.0.0.1 are always added")
    init.add_argument("--port", type=argtypes.port, default=broker.DEFAULT_PORT, help="the broker's TLS port (8883)")

    for name, func, text in (("board", _cmd_board, "provision a new board and write its config"),
                             ("rotate", _cmd_rotate, "new MQTT password and command key for one board")):
        p = command(name, func, text)
        p.add_argument("device", help="the board's id (1-32 of A-Z a-z 0-9 _ -)")
        p.add_argument("--from", dest="base", type=argtypes.text, metavar="FILE",
                       help="start from this config (e.g. firmware/board.example.json, or the board's current one)")
        p.add_argument("--broker", type=argtypes.text, metavar="HOST:PORT",
                       help="what the board dials (default: the store's broker host and --port)")
        p.add_argument("--port", type=argtypes.port, default=broker.DEFAULT_PORT,
                       help="the broker's TLS port without --broker")
        p.add_argument("--server-hostname", metavar="NAME",
                       help="the name the broker's certificate must carry (default: the --broker host)")
        p.add_argument("--wifi-ssid")
        p.add_argument("--wifi-password")
        p.add_argument("--sensor", action="append", metavar="NAME:DRIVER:QUANTITIES:INTERVAL")
        p.add_argument("--max-ttl", type=argtypes.whole(1, 86400), default=600, metavar="SECONDS",
                       help="the board refuses a command that expires further ahead than this (600)")
        p.add_argument("--no-wifi", action="store_true", help="a board without Wi-Fi (unix port, wired)")
        p.add_argument("--out", type=argtypes.text, default="board.json", metavar="FILE",
                       help="the board config to write")
        if name == "board":
            _place_arguments(p)

    revoke = command("revoke", _cmd_revoke, "remove one board: broker login, ACL, hub's device list")
    revoke.add_argument("device")
    place = command("place", _cmd_place, "record a board's district and coordinates (coverage per district)")
    place.add_argument("device")
    _place_arguments(place)
    hub = command("hub", _cmd_hub, "add a hub identity (or --rotate its password)")
    hub.add_argument("name", help="e.g. main, hub-2")
    hub.add_argument("--rotate", action="store_true")
    integrator = command("integrator", _cmd_integrator,
                         "add a situation centre's read-only login to the northbound feed (or --rotate, --revoke)")
    integrator.add_argument("name", help="e.g. situation-centre")
    once = integrator.add_mutually_exclusive_group()
    once.add_argument("--rotate", action="store_true", help="a new password for an existing integrator")
    once.add_argument("--revoke", action="store_true", help="remove the integrator's login")
    command("list", _cmd_list, "the store's devices, hubs and integrators (no secrets)")
    rabbitmq = command("rabbitmq", _cmd_rabbitmq,
                       "write the store's users and permissions as RabbitMQ definitions (a cluster, issue 15)")
    rabbitmq.add_argument("--out", type=argtypes.text, default="definitions.json", metavar="FILE",
                          help="the definitions file to write (mode 600: it holds password hashes)")
    for p in sub.choices.values():
        p.add_argument("--store", type=argtypes.text, required=True, metavar="DIR",
                       help="the provisioning store's folder")
    return parser
