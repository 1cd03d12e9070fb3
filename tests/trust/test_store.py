"""The provisioning store (hub/trust/provision.py, store.py, cli.py): what it writes, what it refuses, what it
never shows. No broker here: tests/trust/test_broker_policy.py runs a real mosquitto on such a store."""

from __future__ import annotations

import json
import stat
from typing import TYPE_CHECKING

import pytest

from hub import cli
from hub.trust import passwd, provision
from hub.trust.store import StoreError, TrustStore

if TYPE_CHECKING:
    from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    provision.init_store(tmp_path / "store", "ast-01", ["broker.ast-01.example", "10.0.0.5"])
    provision.add_boards(tmp_path / "store", ["aq-1", "aq-2"])
    return TrustStore.load(tmp_path / "store")


def test_a_new_store_holds_what_the_broker_the_hub_and_the_boards_need(store: TrustStore) -> None:
    root = store.root
    assert (store.site, store.broker_host) == ("ast-01", "broker.ast-01.example")
    assert store.devices() == {"aq-1", "aq-2"}
    assert store.hubs() == {"main", "tools"}
    assert mode(root / "secrets") == 0o700
    for path in (root / "secrets").rglob("*"):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    users = passwd.parse_file((root / "broker" / "passwd").read_text())
    assert set(users) == {"ast-01/aq-1", "ast-01/aq-2", "hub/ast-01/main", "hub/ast-01/tools"}
    board = store.board("aq-1")
    assert board is not None
    assert passwd.verify(board.password, users["ast-01/aq-1"])
    assert len(board.cmd_key) == 32
    acl = (root / "broker" / "acl").read_text()
    assert "user ast-01/aq-1\ntopic write qala/ast-01/aq-1/telemetry\n" in acl
    assert "topic read qala/ast-01/aq-1/cmd" in acl
    assert "topic read qala/ast-01/aq-1/ota\n" in acl  # updates (docs/ota.md): its own, nobody else's
    assert "topic write qala/ast-01/aq-1/otaack\n" in acl
    assert "topic read qala/ast-01/aq-2/ota\n" in acl
    assert acl.count("/ota\n") == 2
    assert "topic readwrite qala/ast-01/#" in acl
    conf = (root / "broker" / "qala-broker.conf").read_text()
    for line in ("allow_anonymous false", "use_username_as_clientid true", "require_certificate false",
                 f"acl_file {root / 'broker' / 'acl'}", "listener 8883"):
        assert line in conf


def test_secrets_are_in_no_repr_and_in_no_output(store: TrustStore, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    board = store.board("aq-1")
    assert board is not None
    secrets = [board.password, board.cmd_key.hex(), store.hub()[1]]
    shown = repr(store) + repr(board)
    assert not any(secret in shown for secret in secrets)
    for args in (["provision", "list"], ["provision", "hub", "hub-2"], ["provision", "revoke", "aq-2"],
                 ["provision", "rotate", "aq-1", "--no-wifi", "--broker", "h:8883", "--out", str(tmp_path / "b.json")]):
        assert cli.main([*args, "--store", str(store.root)]) == 0
    out = capsys.readouterr()
    new = TrustStore.load(store.root)
    rotated = new.board("aq-1")
    assert rotated is not None
    for secret in [*secrets, rotated.password, rotated.cmd_key.hex(), new.hub("hub-2")[1]]:
        assert secret not in out.out + out.err
    assert mode(tmp_path / "b.json") == 0o600  # the board's config holds its secrets


def test_rotate_and_revoke_touch_one_board_and_never_reuse_a_secret(store: TrustStore) -> None:
    root = store.root
    before = (root / "broker" / "passwd").read_text()
    aq2 = store.board("aq-2")
    rotated = provision.rotate_board(root, "aq-1")
    old = store.board("aq-1")
    assert old is not None
    assert rotated.generation == 2
    assert (rotated.password, rotated.cmd_key) != (old.password, old.cmd_key)
    after = TrustStore.load(root)
    assert after.board("aq-2") == aq2
    lines_before = dict(line.split(":", 1) for line in before.splitlines())
    lines_after = dict(line.split(":", 1) for line in (root / "broker" / "passwd").read_text().splitlines())
    assert lines_after["ast-01/aq-2"] == lines_before["ast-01/aq-2"]  # not even hashed again
    assert lines_after["ast-01/aq-1"] != lines_before["ast-01/aq-1"]
    issued = (root / "secrets" / "issued").read_text().split()
    assert len(issued) == len(set(issued)) == 2 + 2 * 2 + 2  # 2 hubs, 2 boards x (password, key), 1 rotation x 2
    provision.revoke_board(root, "aq-1")
    final = TrustStore.load(root)
    assert final.devices() == {"aq-2"}
    assert "aq-1" not in (root / "broker" / "acl").read_text()
    assert "ast-01/aq-1:" not in (root / "broker" / "passwd").read_text()
    assert not (root / "secrets" / "boards" / "aq-1.json").exists()
    assert json.loads((root / "devices.json").read_text())["devices"] == {"aq-2": {"generation": 1,
                                                                                   "district": None}}


@pytest.mark.parametrize(("args", "message"), [
    (["provision", "init", "--site", "bad site"], "--site: character ' ' not allowed"),
    (["provision", "init", "--site", "s", "--broker-host", "bad_host!"], "--broker-host 'bad_host!': not a DNS"),
    (["provision", "board", "aq 1"], "DEVICE: character ' ' not allowed"),
    (["provision", "board", "aq-1"], "DEVICE 'aq-1': already provisioned (generation 1)"),
    (["provision", "rotate", "aq-9"], "DEVICE 'aq-9': not provisioned"),
    (["provision", "revoke", "aq-9"], "DEVICE 'aq-9': not provisioned"),
    (["provision", "hub", "main"], "NAME 'main': the hub identity exists; --rotate"),
    (["provision", "hub", "nope", "--rotate"], "NAME 'nope': no such hub identity to rotate"),
    (["provision", "board", "aq-3", "--broker", "h:x"], "--broker 'h:x': the port must be a number"),
    (["provision", "board", "aq-3", "--no-wifi", "--sensor", "a:nope:pm25:1"], "no driver 'nope'"),
])
def test_bad_requests_are_one_line_and_change_nothing(store: TrustStore, args: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file() and p.name != ".lock"}
    if args[1] == "init":
        args = [*args, "--store", str(store.root.with_name("new"))]
    else:
        args = [*args, "--store", str(store.root)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("qala provision: ")
    assert message in err, err
    assert len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_init_refuses_an_existing_store(store: TrustStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["provision", "init", "--site", "s", "--store", str(store.root)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_a_damaged_store_is_named_at_load(store: TrustStore) -> None:
    root = store.root
    secret = root / "secrets" / "boards" / "aq-1.json"
    secret.chmod(0o640)
    with pytest.raises(StoreError, match=r"aq-1\.json: mode 640: group or others may read it \(chmod 600\)"):
        TrustStore.load(root)
    secret.chmod(0o600)
    doc = json.loads(secret.read_text())
    secret.write_text(json.dumps(doc | {"generation": 5}))
    with pytest.raises(StoreError, match=r"generation 5 differs from .*devices\.json's 1"):
        TrustStore.load(root)
    secret.write_text(json.dumps(doc | {"cmd_key": "xyz"}))
    with pytest.raises(StoreError, match="cmd_key: must be 64 lower-case hex digits"):
        TrustStore.load(root)
    secret.write_text("{not json")
    with pytest.raises(StoreError, match=r"aq-1\.json: not valid JSON"):
        TrustStore.load(root)
    secret.unlink()
    with pytest.raises(StoreError, match=r"aq-1\.json: missing"):
        TrustStore.load(root)
    with pytest.raises(StoreError, match="not a provisioning store"):
        TrustStore.load(root / "nowhere")


def test_an_integrator_reads_the_northbound_feed_only_and_can_be_rotated_and_revoked(
    store: TrustStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """`qala provision integrator`: a situation centre's login (tests/north/test_mqtt.py tries it on a broker)."""
    root = store.root
    assert store.integrators() == frozenset()  # a store made before any integrator: no folder, loads
    assert not (root / "secrets" / "integrators").exists()
    assert cli.main(["provision", "integrator", "sc", "--store", str(root)]) == 0
    user, password = TrustStore.load(root).integrator("sc")
    assert user == "integrator/ast-01/sc"
    assert password not in capsys.readouterr().out
    assert mode(root / "secrets" / "integrators") == 0o700
    assert mode(root / "secrets" / "integrators" / "sc.json") == 0o600
    assert passwd.verify(password, passwd.parse_file((root / "broker" / "passwd").read_text())[user])
    acl = (root / "broker" / "acl").read_text()
    blocks = [block.strip() for block in acl.split("\n\n")]
    assert "user integrator/ast-01/sc\ntopic read qala/ast-01/_north/#" in blocks  # and nothing else
    assert "topic readwrite qala/ast-01/#" in acl  # the hubs: the feed is theirs to write
    assert password not in repr(TrustStore.load(root))

    rotated = provision.add_integrator(root, "sc", rotate=True)
    assert rotated[0] == user
    assert rotated[1] != password
    assert TrustStore.load(root).integrator("sc") == rotated
    provision.add_boards(root, ["aq-3"])  # a later board change keeps the integrator
    assert TrustStore.load(root).integrators() == {"sc"}

    provision.revoke_integrator(root, "sc")
    again = TrustStore.load(root)
    assert again.integrators() == frozenset()
    assert "integrator/" not in (root / "broker" / "acl").read_text()
    assert user not in passwd.parse_file((root / "broker" / "passwd").read_text())
    with pytest.raises(StoreError, match="no integrator identity 'sc'"):
        again.integrator("sc")
    provision.add_integrator(root, "x")
    with pytest.raises(provision.ProvisionError, match="exists; --rotate"):
        provision.add_integrator(root, "x")
