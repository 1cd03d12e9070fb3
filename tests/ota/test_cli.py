"""`qala fw rollout` and `qala fw release` as a person sees them: the progress bar on a terminal, one line per
change in a log, the failed boards with their reasons at the end, the exit codes, the API's errors in one
line. The hub's API is stood in for by the answers it gives (hub.ota.cli.call patched); tests/ota/test_live.py
runs the command against a real hub. Mistyped arguments: tests/test_cli_sweep.py."""

from __future__ import annotations

import contextlib
import io
import json
from typing import TYPE_CHECKING, Any

import pytest

from hub import cli
from hub.ota import rollout as ro
from hub.tools.bundle import REPO_ROOT

if TYPE_CHECKING:
    from pathlib import Path

T0 = 1_800_000_000_000


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def docs() -> list[dict[str, Any]]:
    """What GET /v1/rollouts/{id} answers as a roll-out of 4 boards goes on and halts."""
    r = ro.Rollout.new("r1", "0.2.0", "fw", "all", ["a", "b", "c", "d"], now_ms=T0, percents=[25, 100],
                       max_failures=0.5)
    out = [r.detail()]
    r.start(T0, lambda _d: True)
    out.append(r.detail())
    out.append(r.detail())  # nothing changed
    r.report(r.devices[0], "healthy", T0)
    r.tick(T0, lambda _d: True)
    out.append(r.detail())
    r.report(r.devices[1], "rolledback", T0, reason="raised at start-up: ValueError: x")
    r.report(r.devices[2], "refused", T0, reason="hash mismatch: firmware/app.mpy")
    out.append(r.detail())
    return out


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str, Any]]:
    answers = docs()
    calls: list[tuple[str, str, Any]] = []

    def call(base: str, token: str, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        calls.append((method, path, body))
        assert (base, token, kw["source"]) == ("http://127.0.0.1:8470", "control-token-0123456789", "cli")
        if method == "POST" and path == "/v1/rollouts":
            return 201, answers[0]
        if path == "/v1/rollouts/r1/pause":
            return 409, {"error": "roll-out r1 is halted: only a running one can be paused", "field": "id"}
        assert (method, path) == ("GET", "/v1/rollouts/r1?boards=failed")  # a large roll-out: not every board
        return 200, answers[min(len(calls) - 1, len(answers) - 1)]

    monkeypatch.setattr("hub.ota.cli.call", call)
    monkeypatch.setattr("hub.ota.cli.time.sleep", lambda _s: None)
    (tmp_path / "token").write_text("control-token-0123456789\n")
    monkeypatch.chdir(tmp_path)
    return calls


ARGS = ["--api", "http://127.0.0.1:8470", "--token-file", "token"]


def run(argv: list[str], out: io.StringIO) -> tuple[int, str, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def test_in_a_log_one_line_per_change_and_the_failures_at_the_end(api: list[tuple[str, str, Any]]) -> None:
    code, out, err = run(["fw", "rollout", "0.2.0", "--to", "all", "--waves", "25,100", "--max-failures", "0.5",
                          *ARGS], io.StringIO())
    assert code == 1  # halted
    assert err == ""
    assert api[0] == ("POST", "/v1/rollouts", {"version": "0.2.0", "to": "all", "waves": [25.0, 100.0],
                                               "max_failures": 0.5})
    lines = out.splitlines()
    assert lines[0] == "roll-out r1 started: fw 0.2.0 to 4 boards in 2 waves [1, 4]"
    assert "\r" not in out
    states = [line.split(" ")[3] for line in lines[1:] if line.startswith("r1 fw")]
    assert states == ["running", "running", "running", "halted", "halted"]  # a line per change, then the summary
    assert lines[-3].endswith("1/4 healthy, 0 updating, 2 failed (1 rolled back), 0 offline - wave 2: 2 of 3 "
                              "boards failed, more than 50%")
    boards = docs()[-1]["boards"]
    failed = {state: next(d for d, b in boards.items() if b["state"] == state) for state in ("rolledback", "refused")}
    assert sorted(lines[-2:]) == sorted([
        f"  {failed['rolledback']}: rolledback (wave 2) raised at start-up: ValueError: x",
        f"  {failed['refused']}: refused (wave 2) hash mismatch: firmware/app.mpy"])


def test_on_a_terminal_a_progress_bar_redrawn_in_place(api: list[tuple[str, str, Any]]) -> None:
    code, out, _ = run(["fw", "rollout", "0.2.0", "--to", "all", *ARGS], Terminal())
    assert code == 1
    assert out.count("\r[") == 5  # one redraw per look
    assert "\r[" + "#" * 8 + "x" * 22 + "] r1 fw 0.2.0 halted" in out  # 1 healthy; 2 failed, 1 cancelled of 4


def test_no_follow_status_and_an_action_refused(api: list[tuple[str, str, Any]]) -> None:
    code, out, _ = run(["fw", "rollout", "0.2.0", "--to", "all", "--no-follow", *ARGS], io.StringIO())
    assert (code, len(out.splitlines())) == (0, 1)
    code, out, _ = run(["fw", "rollout", "status", "r1", *ARGS], io.StringIO())
    assert code == 0
    assert out.startswith("r1 fw 0.2.0 running wave 1/2: 0/4 healthy, 1 updating")
    code, out, err = run(["fw", "rollout", "pause", "r1", *ARGS], io.StringIO())
    assert (code, out) == (2, "")
    assert err == "qala fw: id: roll-out r1 is halted: only a running one can be paused (HTTP 409)\n"


def test_a_hub_that_does_not_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t" * 20)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["fw", "rollout", "list", "--api", "http://127.0.0.1:1", "--token-file", "token"],
                         io.StringIO())
    assert (code, out) == (4, "")
    assert err.startswith("qala fw: cannot reach the hub's API at http://127.0.0.1:1: ")
    assert "Traceback" not in err


def test_release_of_a_config(tmp_path: Path) -> None:
    board = json.loads((REPO_ROOT / "firmware" / "board.unix.json").read_text())
    (tmp_path / "b.json").write_text(json.dumps(board))
    code, out, err = run(["fw", "release", "--config", str(tmp_path / "b.json"), "--version", "cfg-1", "--out",
                          str(tmp_path / "rel")], io.StringIO())
    assert (code, err) == (0, "")
    assert out.startswith(f"released config cfg-1 for board {board['device']}: 1 files, ")
