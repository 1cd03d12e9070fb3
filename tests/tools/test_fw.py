"""`qala fw`: the bundle and its manifest, board configs checked by the board's own validator, the deploy plan
and its errors, mip's package.json.

The Must-show: a built bundle, laid out as `qala fw deploy` lays it out on a board but in a folder far from the
repository, runs under the `micropython` unix port (`micropython main.py board.json`, nothing of the repository
on its path) and sends its birth message to a real mosquitto, where `fw.wait_for_birth` sees it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest

from hub import cli, fw_cli
from hub.tools import bundle, fw
from hub.trust.store import TOOLS, TrustStore
from protocols import ota
from tests._plugins.micropython import find_micropython
from tests._plugins.trust import SITE, provision_site

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto
    from tests._plugins.services import ServiceFactory

EXAMPLE = bundle.REPO_ROOT / "firmware" / "board.example.json"
KEY = {"key": "ab" * 32}


def example(*, actuators: bool = True) -> dict[str, Any]:
    """board.example.json as `qala provision board` completes it (a command key), or without its actuator."""
    raw: dict[str, Any] = json.loads(EXAMPLE.read_text())
    if actuators:
        raw["commands"] = dict(KEY)
    else:
        del raw["actuators"]
    return raw


def provisioned(tmp_path: Path, factory: ServiceFactory[Mosquitto], device: str) -> tuple[TrustStore, Mosquitto]:
    """A site store of the test's own with `device` provisioned, and its broker."""
    store = provision_site(tmp_path / "store", [device])
    return store, factory(store=store.root)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle")
    fw.build_bundle(out)
    return out


def test_build_writes_a_manifest_of_every_file(built: Path) -> None:
    manifest = json.loads((built / fw.MANIFEST).read_text())
    assert manifest["firmware"] == fw.firmware_version()
    on_disk = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    on_disk -= {fw.MANIFEST, fw.SLOT_MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert "firmware/app.mpy" in on_disk
    assert "protocols/telemetry.mpy" in on_disk
    assert "firmware/main.py" in on_disk
    assert "firmware/slotmain.py" in on_disk  # source: it runs as /main.py on a slotted board
    assert not any(name.endswith("manifest.py") for name in on_disk)
    assert fw.check_bundle(built) == manifest
    # the slot manifest (protocols/ota.py) lists the same files with their sizes and the same hashes
    slot = ota.parse_manifest((built / fw.SLOT_MANIFEST).read_bytes())
    assert (slot["kind"], slot["version"]) == ("fw", fw.firmware_version())
    assert slot["micropython"] >= (1, 20)
    assert {rel: digest for rel, _, digest in slot["files"]} == manifest["files"]
    assert all(size == (built / rel).stat().st_size for rel, size, _ in slot["files"])
    assert fw.check_slot(built) == sorted(manifest["files"])


def test_check_slot_names_a_changed_file_and_a_missing_manifest(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(built, copy)
    (copy / "protocols" / "sign.mpy").write_bytes(b"x")
    with pytest.raises(fw.FwError, match=r"protocols/sign\.mpy is missing or differs from manifest"):
        fw.check_slot(copy)
    (copy / fw.SLOT_MANIFEST).unlink()
    with pytest.raises(fw.FwError, match=r"has no slot manifest .* rebuild it"):
        fw.check_slot(copy)


def test_check_bundle_names_a_changed_file(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(built, copy)
    (copy / "firmware" / "app.mpy").write_bytes(b"x")
    with pytest.raises(fw.FwError, match=r"firmware/app\.mpy"):
        fw.check_bundle(copy)
    with pytest.raises(fw.FwError, match="not a bundle"):
        fw.check_bundle(tmp_path)


def _install(built: Path, config: Path, board: Path) -> None:
    """What `qala fw deploy` copies with mpremote, copied with shutil to a folder standing in for the board."""
    for local, remote in fw.board_layout(built, config):
        (board / remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, board / remote)


@pytest.mark.integration
@pytest.mark.micropython
def test_bundle_runs_from_a_clean_folder_and_is_born(
    built: Path, mosquitto_factory: ServiceFactory[Mosquitto], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`qala provision init`, `qala provision board`, the files a deploy copies, and the birth over verified TLS."""
    micropython = find_micropython()
    assert micropython is not None
    root = tmp_path / "store"
    assert cli.main(["provision", "init", "--store", str(root), "--site", "lab"]) == 0
    config = tmp_path / "cfg" / "board.json"
    config.parent.mkdir()
    assert cli.main(["provision", "board", "fw-01", "--store", str(root), "--broker", "127.0.0.1:8883",
                     "--no-wifi", "--sensor", "air1:sim:pm25,pm10:1", "--out", str(config)]) == 0
    out = capsys.readouterr().out
    assert "provisioned lab/fw-01" in out
    store = TrustStore.load(root)
    identity = store.board("fw-01")
    assert identity is not None
    assert identity.password not in out  # secrets go to files only
    mosquitto = mosquitto_factory(store=root)
    raw = json.loads(config.read_text())
    raw["mqtt"]["port"] = mosquitto.port  # the test's broker: a free port, known only now
    fw.write_config(raw, config)
    assert (raw["mqtt"]["user"], raw["mqtt"]["tls"], raw["mqtt"]["ca"]) == (identity.user, True, "ca.pem")
    assert raw["commands"]["key"] == identity.cmd_key.hex()
    board = tmp_path / "board"
    board.mkdir()
    for local, remote in fw.board_layout(built, config, fw.board_ca(raw, config)):
        (board / remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, board / remote)
    assert {p.name for p in board.iterdir()} >= {"main.py", "boot.py", "board.json", "a"}
    assert {p.name for p in (board / "a").iterdir()} >= {"firmware", "protocols", "manifest"}
    env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"} | {"MICROPYPATH": ".frozen"}
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(
            [micropython, "-X", "heapsize=128k", "main.py", "board.json"], cwd=board, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        ))

    tools = store.hub(TOOLS)
    try:
        birth = fw.wait_for_birth("127.0.0.1", mosquitto.port, "lab", "fw-01", 20, user=tools[0], password=tools[1],
                                  tls=True, ca_file=str(store.ca_file), ready=start)
    finally:
        for p in procs:
            p.kill()
            out = p.communicate()[0].decode(errors="replace")
    assert birth["state"] == "online", out
    assert birth["fw"]
    assert birth["caps"]["sensors"]["air1"]["q"] == ["pm25", "pm10"]
    assert "Traceback" not in out, out


# A stand-in for a board's reset on the unix port, whose `machine` has no reset(): leave the REPL, so the
# shell script below "boots" main.py, as a board does after mpremote's `reset`.
RESET_SHIM = "import sys\nclass M:\n def reset():\n  raise SystemExit\nsys.modules['machine'] = M"


@pytest.mark.integration
@pytest.mark.micropython
def test_deploy_with_mpremote_to_the_unix_port_on_a_pty(
    built: Path, mosquitto_factory: ServiceFactory[Mosquitto], tmp_path: Path
) -> None:
    """The whole `qala fw deploy` with the real mpremote: raw REPL copy, reset, birth on the broker (watched with
    the store's tools login over verified TLS)."""
    store, mosquitto = provisioned(tmp_path, mosquitto_factory, "pty-01")
    micropython = find_micropython()
    socat = shutil.which("socat")
    assert micropython is not None
    assert socat is not None, "socat is one of the packages scripts/test installs"
    board = tmp_path / "board"
    board.mkdir()
    script = tmp_path / "board.sh"
    script.write_text(f"#!/bin/sh\n{micropython} -i\nexec {micropython} -X heapsize=128k main.py board.json\n")
    script.chmod(0o755)
    tty = tmp_path / "tty"
    rig = subprocess.Popen(
        [socat, f"PTY,link={tty},raw,echo=0", f"EXEC:{script},pty,stderr,raw,echo=0"],
        cwd=board, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if tty.exists():
                break
            time.sleep(0.05)
        fw.run_mpremote(["connect", str(tty), "resume", "exec", RESET_SHIM])
        config = tmp_path / "board.json"
        assert cli.main(["fw", "config", "pty-01", "--store", str(store.root), "--broker",
                         f"127.0.0.1:{mosquitto.port}", "--no-wifi", "--sensor", "air1:sim:pm25:1",
                         "--out", str(config)]) == 0
        code = cli.main(["fw", "deploy", "--port", str(tty), "--resume", "--bundle", str(built),
                         "--config", str(config), "--timeout", "30", "--no-wifi", "--store", str(store.root)])
        assert code == 0
    finally:
        os.killpg(rig.pid, signal.SIGKILL)
        rig.wait()
    for rel, digest in json.loads((built / fw.MANIFEST).read_text())["files"].items():
        assert hashlib.sha256((board / "a" / rel).read_bytes()).hexdigest() == digest, rel
    assert (board / "main.py").read_bytes() == (built / "firmware" / "slotmain.py").read_bytes()
    assert (board / "loader.mpy").read_bytes() == (built / "firmware" / "loader.mpy").read_bytes()
    assert (board / "a" / "manifest").read_bytes() == (built / fw.SLOT_MANIFEST).read_bytes()
    assert json.loads((board / "board.json").read_text())["device"] == "pty-01"
    assert (board / "ca.pem").read_bytes() == store.ca_file.read_bytes()


def test_wait_for_birth_times_out_naming_the_device(mosquitto: Mosquitto, test_store: TrustStore) -> None:
    user, password = test_store.hub("obs-1")
    with pytest.raises(fw.FwError, match="no birth message from nobody"):
        fw.wait_for_birth("127.0.0.1", mosquitto.port, SITE, "nobody", 0.5, user=user, password=password, tls=True,
                          ca_file=str(test_store.ca_file))
    with pytest.raises(fw.FwError, match=r"did not accept a subscription .* \(a login that may read it: --store"):
        fw.wait_for_birth("127.0.0.1", mosquitto.port, SITE, "nobody", 0.5, tls=True, ca_file=str(test_store.ca_file))


def test_wait_for_birth_without_a_broker() -> None:
    with pytest.raises(fw.FwError, match=r"cannot reach the broker 127\.0\.0\.1:1 "):
        fw.wait_for_birth("127.0.0.1", 1, "lab", "x", 1)


def test_deploy_watches_the_first_broker_of_a_list() -> None:
    """A config that lists the nodes of a clustered broker (failover): deploy waits for the birth at the first."""
    args = argparse.Namespace(broker=None, no_wait=False, mqtt_user=None, mqtt_password=None, store=None)
    raw = {"mqtt": {"host": ["10.0.0.7:8884", "10.0.0.8"], "tls": True}}
    assert fw_cli._watch(args, raw) == ("10.0.0.7", 8884, None, None, True)
    raw = {"mqtt": {"host": ["10.0.0.9"], "tls": True}}
    assert fw_cli._watch(args, raw) == ("10.0.0.9", 8883, None, None, True)


def test_config_from_the_example_with_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QALA_WIFI_PASSWORD", "w-secret")
    monkeypatch.setenv("QALA_MQTT_PASSWORD", "m-secret")
    out = tmp_path / "board.json"
    (tmp_path / "sensors-only.json").write_text(json.dumps(example(actuators=False)))  # no actuator: no key needed
    code = cli.main(["fw", "config", "aq-0042", "--from", str(tmp_path / "sensors-only.json"), "--site", "ast-02",
                     "--wifi-ssid", "net", "--broker", "10.1.2.3:8883", "--tls", "--mqtt-user", "aq-0042",
                     "--out", str(out)])
    assert code == 0
    raw = json.loads(out.read_text())
    assert raw["device"] == "aq-0042"
    assert raw["site"] == "ast-02"
    assert raw["wifi"] == {"ssid": "net", "password": "w-secret"}
    assert raw["mqtt"]["host"] == "10.1.2.3"
    assert raw["mqtt"]["port"] == 8883
    assert raw["mqtt"]["tls"] is True
    assert raw["mqtt"]["user"] == "aq-0042"
    assert raw["mqtt"]["password"] == "m-secret"
    assert raw["sensors"] == json.loads(EXAMPLE.read_text())["sensors"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    fw.validate_config(raw, need_wifi=True)


def test_config_of_a_provisioned_board_from_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = provision_site(tmp_path / "store", ["aq-7"])
    out = tmp_path / "cfg" / "board.json"
    out.parent.mkdir()
    args = ["fw", "config", "aq-7", "--from", str(EXAMPLE), "--store", str(store.root), "--out", str(out)]
    assert cli.main(args) == 0
    raw = json.loads(out.read_text())
    identity = store.board("aq-7")
    assert identity is not None
    assert (raw["site"], raw["mqtt"]["user"], raw["mqtt"]["password"]) == (SITE, identity.user, identity.password)
    assert raw["commands"]["key"] == identity.cmd_key.hex()
    assert (out.parent / "ca.pem").read_bytes() == store.ca_file.read_bytes()
    assert identity.password not in capsys.readouterr().err
    assert cli.main(["fw", "config", "aq-8", "--store", str(store.root), "--out", "-"]) == 2
    assert "'aq-8' is not provisioned" in capsys.readouterr().err
    assert cli.main([*args, "--mqtt-user", "x"]) == 2
    assert "--store gives the site, the MQTT login" in capsys.readouterr().err
    assert cli.main(["fw", "config", "aq-7", "--from", str(EXAMPLE), "--site", "s", "--no-wifi", "--broker", "h",
                     "--out", "-"]) == 2  # an actuator and no store: no command key
    assert "commands.key: required with actuators" in capsys.readouterr().err


def test_config_sensors_replace_the_examples() -> None:
    raw = fw.make_config("aq-1", base=example(),
                         sensors=["air1:pms5003:pm1,pm25,pm10:10", "co2:scd4x:co2,temperature,humidity:2.5"])
    assert raw["sensors"] == {
        "air1": {"driver": "pms5003", "interval": 10, "quantities": ["pm1", "pm25", "pm10"], "warmup": 30,
                 "pins": {"rx": 16, "tx": 17}},
        "co2": {"driver": "scd4x", "interval": 2.5, "quantities": ["co2", "temperature", "humidity"]},
    }


@pytest.mark.parametrize(("args", "message"), [
    (["--site", "ast 1"], "site: character ' ' not allowed .* \\(set by --site\\)"),
    ([], "site: required key missing"),
    (["--site", "s", "--broker", "h:x"], "--broker 'h:x': the port must be a number"),
    (["--site", "s", "--no-wifi", "--broker", "h:70000"], "mqtt.port: must be in 1..65535.* \\(set by --broker\\)"),
    (["--site", "s", "--broker", "h"], "wifi: required on this board \\(set by --wifi-ssid\\)"),
    (["--site", "s", "--no-wifi"], "mqtt: required key missing \\(set by --broker\\)"),
    (["--site", "s", "--broker", "h", "--no-tls", "--no-wifi", "--sensor", "a:sim:pm25"],
     "--sensor 'a:sim:pm25': expected"),
    (["--site", "s", "--broker", "h", "--no-tls", "--no-wifi", "--sensor", "a:sim:pm25:0"],
     "sensors.a.interval: must be a positive number.* \\(set by --sensor\\)"),
    (["--site", "s", "--broker", "h", "--no-tls", "--no-wifi", "--sensor", "a:sim:pm26:1"], "unknown quantity 'pm26'"),
    (["--site", "s", "--broker", "h", "--no-tls", "--no-wifi", "--sensor", "a:nope:pm25:1"],
     "no driver 'nope'.*--sensor"),
])
def test_config_errors_name_the_key_and_the_argument(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["fw", "config", "aq-1", "--out", "-", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qala fw: ")
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_config_from_a_file_with_a_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = json.loads(EXAMPLE.read_text())
    base["helth_interval"] = 5
    (tmp_path / "b.json").write_text(json.dumps(base))
    assert cli.main(["fw", "config", "aq-1", "--from", str(tmp_path / "b.json"), "--out", "-"]) == 2
    assert "unknown key 'helth_interval'" in capsys.readouterr().err
    assert cli.main(["fw", "config", "aq-1", "--from", str(tmp_path / "missing.json"), "--out", "-"]) == 2
    assert "--from" in capsys.readouterr().err


def test_config_carries_the_site_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TLS is the default: --ca copies the site CA next to the config, which names it; deploy then copies it."""
    from hub.trust import tls  # noqa: PLC0415

    ca, ca_key = tls.make_ca("site CA")
    (tmp_path / "site-ca.pem").write_bytes(ca)
    out = tmp_path / "cfg" / "board.json"
    out.parent.mkdir()
    args = ["fw", "config", "aq-1", "--site", "s", "--no-wifi", "--broker", "broker.example", "--out", str(out)]
    assert cli.main([*args, "--ca", str(tmp_path / "site-ca.pem"), "--server-hostname", "mqtt.example"]) == 0
    raw = json.loads(out.read_text())
    assert raw["mqtt"] == {"host": "broker.example", "ca": "ca.pem", "server_hostname": "mqtt.example"}
    assert (out.parent / "ca.pem").read_bytes() == ca
    assert "ca.pem, its site CA" in capsys.readouterr().err
    assert fw.board_ca(raw, out) == (out.parent / "ca.pem", "ca.pem")
    assert fw.board_ca({"mqtt": {"tls": False}}, out) is None
    (out.parent / "ca.pem").unlink()
    with pytest.raises(fw.FwError, match=r"mqtt\.ca: .*ca\.pem not found"):
        fw.board_ca(raw, out)
    # without --ca (and no mqtt.ca in --from) the board could not verify its broker
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "mqtt.ca: required when mqtt.tls is true" in err
    assert err.endswith("(set by --ca)\n"), err
    # --no-tls: plain, and a --from file's TLS keys are dropped
    (tmp_path / "example.json").write_text(json.dumps(example()))
    assert cli.main([*args, "--from", str(tmp_path / "example.json"), "--no-tls"]) == 0
    assert "ca" not in json.loads(out.read_text())["mqtt"]
    capsys.readouterr()
    # --ca must be the CA, in PEM
    server, _ = tls.make_server_cert(ca, ca_key, ["broker.example"])
    (tmp_path / "server.pem").write_bytes(server)
    (tmp_path / "ca.der").write_bytes(tls.pem_to_der(ca))
    for bad, message in ((tmp_path / "server.pem", "is not a CA certificate"),
                         (tmp_path / "ca.der", "not a PEM certificate file"),
                         (tmp_path / "missing.pem", "No such file")):
        assert cli.main([*args, "--ca", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert len(err.splitlines()) == 1


def test_deploy_plan_copies_the_site_ca(built: Path, tmp_path: Path) -> None:
    config = tmp_path / "board.json"
    copy, _ = fw.deploy_commands("/dev/ttyUSB0", built, config, ca=(tmp_path / "ca.pem", "ca.pem"))
    assert f"fs cp {tmp_path / 'ca.pem'} :ca.pem" in " ".join(copy)


def test_deploy_plan_copies_the_bundle_config_and_entry_points(built: Path, tmp_path: Path) -> None:
    config = tmp_path / "board.json"
    copy, reset = fw.deploy_commands("/dev/ttyUSB0", built, config)
    assert copy[:2] == ["connect", "/dev/ttyUSB0"]
    assert reset == ["connect", "/dev/ttyUSB0", "reset"]
    steps = " ".join(copy[2:]).split(" + ")
    assert steps[0].startswith("exec import os")
    assert "['a', 'a/firmware', 'a/firmware/drivers', 'a/firmware/hw', 'a/protocols', 'ota']" in steps[0]
    # the slot's manifest and the update state go first: the slot is complete only once the copy ends
    assert ("['a/manifest', 'ota/boot.json', 'ota/offer.json', 'ota/last.json', 'ota/last.wait', "
            "'ota/board.new.json']") in steps[0]
    assert steps[-1].endswith(f"{built / fw.SLOT_MANIFEST} :a/manifest")
    copied = {}
    for step in steps[1:]:
        words = step.split(" ")
        assert words[:2] == ["fs", "cp"]
        dest = words[-1]
        for local in words[2:-1]:
            copied[dest + local.rsplit("/", 1)[-1] if dest.endswith("/") else dest] = local
    manifest = json.loads((built / fw.MANIFEST).read_text())["files"]
    assert {k.removeprefix(":") for k in copied} == {"a/" + rel for rel in manifest} | {
        "boot.py", "main.py", "loader.mpy", "board.json", "a/manifest"}
    assert copied[":main.py"] == str(built / "firmware" / "slotmain.py")
    assert copied[":board.json"] == str(config)
    assert fw.deploy_commands("/dev/ttyUSB0", built, config, resume=True)[1] == [
        "connect", "/dev/ttyUSB0", "resume", "reset"]


def test_deploy_to_a_missing_port_says_what_mpremote_said(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "board.json"
    fw.write_config(example(), config)
    (tmp_path / fw.BOARD_CA).write_text("the example names ca.pem: deploy copies it")
    code = cli.main(["fw", "deploy", "--port", str(tmp_path / "ttyNONE"), "--config", str(config),
                     "--bundle", str(built), "--timeout", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "mpremote connect" in err
    assert f"failed to access {tmp_path / 'ttyNONE'}" in err


def test_deploy_refuses_a_bad_config_before_touching_the_board(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "board.json"
    raw = example()
    del raw["wifi"]
    fw.write_config(raw, config)
    code = cli.main(["fw", "deploy", "--port", "/dev/ttyUSB9", "--config", str(config), "--bundle", str(built),
                     "--mpremote", str(tmp_path / "no-mpremote")])
    assert code == 2  # bad input, as `qala fw config` says it (the landed deploy exited 1)
    assert "wifi: required on this board (edit it in the --config file)" in capsys.readouterr().err


def test_a_bad_value_from_the_from_file_is_blamed_on_the_file(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = example()
    base["sensors"] = {"air1": {"driver": "nope", "interval": 1, "quantities": ["pm25"]}}
    path = tmp_path / "from.json"
    path.write_text(json.dumps(base))
    assert cli.main(["fw", "config", "t1", "--from", str(path), "--out", "-"]) == 2
    err = capsys.readouterr().err
    assert "sensors.air1.driver: no driver 'nope'" in err
    assert err.rstrip().endswith("(edit it in the --from file, or set it with --sensor)")  # not "set by --sensor"
    assert cli.main(["fw", "config", "t1", "--from", str(path), "--sensor", "air1:nope:pm25:1", "--out", "-"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("(set by --sensor)")


def test_deploy_without_mpremote(built: Path, tmp_path: Path) -> None:
    with pytest.raises(fw.FwError, match="cannot run mpremote"):
        fw.run_mpremote(["connect", "x", "reset"], mpremote=str(tmp_path / "no-mpremote"))


def test_package_json_is_generated_and_lists_every_runtime_file(built: Path) -> None:
    committed = (bundle.REPO_ROOT / fw.PACKAGE_JSON).read_text()
    assert committed == fw.package_json_text(), "regenerate: qala fw package-json --out package.json"
    package = json.loads(committed)
    assert package["version"] == fw.firmware_version()
    assert package["deps"] == []
    targets = dict(package["urls"])
    assert targets["main.py"] == "firmware/main.py"
    assert targets["boot.py"] == "firmware/boot.py"
    # every module the bundle compiles for a board is there as source, at the same place
    built_modules = {
        rel[: -len(".mpy")] + ".py" if rel.endswith(".mpy") else rel
        for rel in json.loads((built / fw.MANIFEST).read_text())["files"]
        if not rel.endswith(".json")
    }
    assert built_modules == {t for t in targets if "/" in t}
    for target, url in targets.items():
        assert (bundle.REPO_ROOT / url).is_file(), url
        assert target == url or target in fw.ENTRY_SCRIPTS
