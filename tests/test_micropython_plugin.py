"""Tests of the MicroPython test runner: tests/_plugins/micropython.py and tests/mpy_runner.py.

Each test writes a small dual module with pytester and runs pytest on it in-process, with the plugin
loaded by `-p tests._plugins.micropython`; the interpreter is the real `micropython` binary.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

from tests._plugins.micropython import NOT_FOUND, REPO_ROOT, RUNNER, find_micropython

if TYPE_CHECKING:
    import pytest

# The plugin under test; unrelated plugins off (importing hypothesis anew costs 0.6 s per inner run).
PLUGIN = ("-p", "tests._plugins.micropython", "-p", "no:hypothesispytest", "-p", "no:asyncio")

PASS_AND_FAIL = """
    import sys

    MICROPYTHON_HEAP = "32k"

    def test_adds():
        assert 1 + 1 == 2

    def test_only_micropython_fails():
        print("hello from", sys.implementation.name)
        value = 41 if sys.implementation.name == "micropython" else 42
        assert value == 42, "value is " + str(value)
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN, "-v", *args)


def test_dual_module_runs_twice_and_reports_micropython_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dual=PASS_AND_FAIL)
    result = run(pytester)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_dual.py::test_adds PASSED*",
            "*test_dual.py::test_adds[[]micropython[]] PASSED*",
            "*test_dual.py::test_only_micropython_fails PASSED*",
            "*test_dual.py::test_only_micropython_fails[[]micropython[]] FAILED*",
            "*_ test_only_micropython_fails[[]micropython[]] (heap 32k) _*",
            "test_only_micropython_fails failed under MicroPython (heap 32k, * bytes free after it):",
            "Traceback (most recent call last):",
            '  File "*test_dual.py", line 11, in test_only_micropython_fails',
            "AssertionError: value is 41",
            (
                "run it by hand: cd * && *micropython -X heapsize=32k tests/mpy_runner.py *test_dual.py "
                "test_only_micropython_fails"
            ),
            "*Captured stdout call*",
            "hello from micropython",
        ]
    )
    # The runner's records never leak into the report.
    result.stdout.no_fnmatch_line("*@@qala-mpy@@*")


def test_items_carry_the_micropython_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dual=PASS_AND_FAIL)
    run(pytester, "-m", "micropython").assert_outcomes(passed=1, failed=1, deselected=2)
    run(pytester, "-m", "not micropython").assert_outcomes(passed=2, deselected=2)


def test_selection_reaches_the_interpreter(pytester: pytest.Pytester) -> None:
    # test_crashes would kill the interpreter; deselected, it must not even run inside it.
    pytester.makepyfile(
        test_dual="""
        import os, sys

        MICROPYTHON_HEAP = "32k"

        def test_fine():
            pass

        def test_crashes():
            if sys.implementation.name == "micropython":
                os.system("kill -9 $PPID")
        """
    )
    run(pytester, "-k", "fine").assert_outcomes(passed=2, deselected=2)
    run(pytester, "test_dual.py::test_fine[micropython]").assert_outcomes(passed=1)


def test_module_can_limit_which_functions_get_a_twin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dual="""
        MICROPYTHON_HEAP = "32k"
        MICROPYTHON_TESTS = ("test_portable",)

        def test_portable():
            pass

        def test_cpython_only():
            import pathlib
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_portable[[]micropython[]] PASSED*"])
    result.stdout.no_fnmatch_line("*test_cpython_only[[]micropython[]]*")


def test_function_with_fixtures_fails_its_twin_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dual="""
        MICROPYTHON_HEAP = "32k"

        def test_uses_fixture(tmp_path):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["test_uses_fixture(tmp_path) takes arguments: test functions of a dual module*"])


def test_exception_at_import_fails_every_item_with_its_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dual="""
        import sys

        MICROPYTHON_HEAP = "32k"
        if sys.implementation.name == "micropython":
            raise RuntimeError("no such luck")

        def test_one():
            pass

        def test_two():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "MicroPython (heap 32k) could not import *test_dual.py (exit code 2)",
            "test_one did not run: the module raised while being imported:",
            "RuntimeError: no such luck",
            "MicroPython (heap 32k) could not import *test_dual.py (exit code 2)",
            "test_two did not run: the module raised while being imported:",
        ]
    )


def test_heap_exhausted_at_import_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dual="""
        import sys

        MICROPYTHON_HEAP = "32k"
        if sys.implementation.name == "micropython":
            TABLE = bytearray(64 * 1024)

        def test_one():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["MicroPython (heap 32k) could not import *", "MemoryError: memory allocation failed, allocating 65536 bytes"]
    )


def test_killed_interpreter_fails_every_item_with_signal_and_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dual="""
        import os, sys

        MICROPYTHON_HEAP = "32k"

        def test_a_first():
            pass

        def test_b_dies():
            if sys.implementation.name == "micropython":
                print("about to die")
                os.system("kill -9 $PPID")

        def test_c_never_runs():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "MicroPython (heap 32k) was killed by signal SIGKILL (exit code -9)",
            "test_a_first passed before the interpreter died",
            "*",
            "last output of the interpreter*",
            "about to die",
        ]
    )
    result.stdout.fnmatch_lines(["test_b_dies was running when the interpreter died"])
    result.stdout.fnmatch_lines(["test_c_never_runs did not run"])


def test_timeout_kills_the_interpreter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dual="""
        import sys

        MICROPYTHON_HEAP = "32k"
        MICROPYTHON_TIMEOUT = 0.5

        def test_spins():
            while sys.implementation.name == "micropython":
                pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "MicroPython (heap 32k) timed out after 0.5 s (MICROPYTHON_TIMEOUT) and was killed",
            "test_spins was running when the interpreter died",
        ]
    )


def test_missing_binary_fails_with_install_hint(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(pytester.path / "no-venv" / "python"))
    monkeypatch.setenv("PATH", str(pytester.path))
    assert find_micropython() is None
    pytester.makepyfile(test_dual=PASS_AND_FAIL)
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([f"MicroPython (heap 32k) could not start: {NOT_FOUND}"])


def test_heap_too_small_for_the_runner_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_dual="""
        MICROPYTHON_HEAP = "6k"

        def test_one():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*the runner reported nothing*12k*", "MemoryError*"])


def test_runner_by_hand_prints_summary_and_exit_code(pytester: pytest.Pytester) -> None:
    micropython = find_micropython()
    assert micropython is not None, NOT_FOUND
    module = pytester.makepyfile(test_dual=PASS_AND_FAIL)
    argv = [micropython, "-X", "heapsize=64k", str(RUNNER), str(module)]  # from source: the runner compiles too
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PASS test_adds" in done.stdout
    assert "FAIL test_only_micropython_fails" in done.stdout
    assert "AssertionError: value is 41" in done.stdout
    assert "1 passed, 1 failed" in done.stdout
    assert "@@qala-mpy@@" not in done.stdout
    passing = subprocess.run(
        [*argv, "test_adds"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert passing.returncode == 0, passing.stdout
    assert textwrap.dedent(passing.stdout).startswith("PASS test_adds")
