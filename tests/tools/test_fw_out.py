"""`qala fw config|build|package-json --out` where it cannot write: exit 2 and one line naming --out and what
is in the way, never a traceback. The landed commands raised FileNotFoundError (a missing folder) and
FileExistsError (a file where `build` wants its folder)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub import cli

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

CONFIG = ["fw", "config", "t1", "--site", "lab", "--broker", "127.0.0.1:1883", "--no-tls", "--wifi-ssid", "x",
          "--wifi-password", "y"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_config_into_a_missing_folder_or_onto_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "missing" / "board.json"
    assert run([*CONFIG, "--out", str(out)], capsys) == (
        2, f"qala fw: --out {out}: the folder {out.parent} does not exist; create it or give another --out\n")
    assert run([*CONFIG, "--out", str(tmp_path)], capsys) == (
        2, f"qala fw: --out {tmp_path}: a folder is there; give a file name\n")


def test_package_json_into_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "missing" / "package.json"
    code, err = run(["fw", "package-json", "--out", str(out)], capsys)
    assert code == 2
    assert f"--out {out}: the folder {out.parent} does not exist" in err


def test_build_onto_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "firmware"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "sub"):
        code, err = run(["fw", "build", "--out", str(out)], capsys)
        assert code == 2
        assert f"--out {out}: a file is in the way of the folder" in err
