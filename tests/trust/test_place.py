"""Where a device is: its district and coordinates in the provisioning store (public, devices.json), given when
it is provisioned or later with `qala provision place`; stores made before coordinates existed still load."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pytest

from hub import cli
from hub.trust import provision
from hub.trust.store import DeviceEntry, StoreError, TrustStore

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("place") / "store"
    provision.init_store(root, "astana")
    provision.add_boards(root, ["w1", "w2"], {"w1": ("esil", 51.128, 71.43)})
    return root


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(template, copy)
    return copy


def test_places_given_when_provisioned_and_changed_later(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = TrustStore.load(root)
    assert store.entry("w1") == DeviceEntry(1, "esil", 51.128, 71.43)
    assert store.entry("w2") == DeviceEntry(1, None, None, None)
    devices = json.loads((root / "devices.json").read_text())["devices"]
    assert devices["w2"] == {"generation": 1, "district": None}  # no coordinates: no keys (older qala reads it)
    assert cli.main(["provision", "place", "w2", "--store", str(root), "--district", "almaty"]) == 0
    assert "placed astana/w2: district almaty, no coordinates" in capsys.readouterr().out
    assert cli.main(["provision", "place", "w1", "--store", str(root), "--lat", "51.2", "--lon", "71.5"]) == 0
    store = TrustStore.load(root)
    assert store.entry("w1") == DeviceEntry(1, "esil", 51.2, 71.5)  # the district kept
    assert store.entry("w2") == DeviceEntry(1, "almaty", None, None)
    provision.rotate_board(root, "w1")
    assert TrustStore.load(root).entry("w1") == DeviceEntry(2, "esil", 51.2, 71.5)  # a rotation keeps the place
    assert cli.main(["provision", "list", "--store", str(root)]) == 0
    assert "w1\tgeneration 2\tuser astana/w1\tdistrict esil\tlat 51.2 lon 71.5" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["w1"], "give --district, or --lat with --lon"),
    (["w1", "--lat", "51"], "--lon: required with --lat (coordinates are a pair)"),
    (["w1", "--district", "bad district"], "argument --district: character ' ' not allowed"),
    (["w1", "--lon", "181", "--lat", "1"], "argument --lon: must be -180..180 degrees, got 181"),
    (["w9", "--district", "esil"], "DEVICE 'w9': not provisioned"),
])
def test_bad_places_are_refused_in_one_line(root: Path, args: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = (root / "devices.json").read_bytes()
    try:
        code = cli.main(["provision", "place", *args, "--store", str(root)])
    except SystemExit as exc:
        code = int(str(exc.code))
    assert code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert (root / "devices.json").read_bytes() == before


def test_an_old_store_loads_and_bad_coordinates_are_named(root: Path) -> None:
    path = root / "devices.json"
    doc = json.loads(path.read_text())
    doc["devices"]["w1"] = {"generation": 1, "district": None}  # as stores were before coordinates
    path.write_text(json.dumps(doc))
    assert TrustStore.load(root).entry("w1") == DeviceEntry(1)
    for entry, says in (({"generation": 1, "district": None, "lat": 91, "lon": 0}, "devices.w1.lat: must be"),
                        ({"generation": 1, "district": None, "lat": 1}, "lat and lon go together"),
                        ({"generation": 1, "district": "a b"}, "devices.w1.district: character ' '"),
                        ({"generation": 1, "district": None, "lat": "x", "lon": 1}, "devices.w1.lat: must be")):
        doc["devices"]["w1"] = entry
        path.write_text(json.dumps(doc))
        with pytest.raises(StoreError, match=says):
            TrustStore.load(root)
