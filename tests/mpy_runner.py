"""Runs the test_* functions of one test module inside MicroPython (the unix port `micropython`).

By hand:  micropython -X heapsize=64k tests/mpy_runner.py tests/protocols/test_topics.py [test_name ...]
prints PASS/FAIL per function, MicroPython's tracebacks and a summary with the heap figures, and exits
1 if a test failed, 2 if the module could not be imported.

The pytest plugin (tests/_plugins/micropython.py) adds --json: then the only output of the runner is one
line per event, "@@qala-mpy@@ " followed by JSON (events: start, end, error, done); anything else on
stdout was printed by the tests.

Puts the test module's folder and the repository root first on sys.path, so `import protocols`,
`import firmware...` and the test's sibling helper modules resolve. A function returning a coroutine
(async def) is run with asyncio.run(). Tests take no arguments: fixtures are CPython-only.

Must stay within what MicroPython runs: no traceback, inspect, pathlib or os.path; no f-string
conversions; print_exception instead of the traceback module.
"""

import gc
import io
import json
import os
import sys
import time

PREFIX = "@@qala-mpy@@ "
USAGE = (
    "usage: micropython -X heapsize=64k tests/mpy_runner.py [--json] [--path DIR]..."
    " path/to/test_module.py [test_name ...]"
)

try:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
except AttributeError:  # CPython, for debugging the runner itself

    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(end, start):
        return end - start


def _format_exception(exc):
    buf = io.StringIO()
    try:
        sys.print_exception(exc, buf)
    except AttributeError:  # CPython
        import traceback  # noqa: PLC0415 - only when not on MicroPython

        traceback.print_exception(exc, file=buf)
    except MemoryError:
        return "MemoryError while formatting the traceback of " + repr(exc) + "\n"
    # Drop the runner's own frames (and, on CPython, their source lines).
    kept = []
    skipping = False
    for line in buf.getvalue().split("\n"):
        if line.startswith("  File "):
            skipping = "mpy_runner.py" in line
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def _absolute(path):
    if path.startswith("/"):
        return path
    cwd = os.getcwd()  # noqa: PTH109 - no pathlib on MicroPython
    while path.startswith("./"):
        path = path[2:]
    return cwd.rstrip("/") + "/" + path


def _dirname(path):
    cut = path.rstrip("/").rfind("/")
    return path[:cut] if cut > 0 else "/"


def _heap_free():
    return gc.mem_free() if hasattr(gc, "mem_free") else -1


class Runner:
    """Runs the tests of one module; prints JSON records or a human-readable report."""

    def __init__(self, as_json, paths=()):
        self.as_json = as_json
        self.paths = paths
        self.passed = 0
        self.failed = 0
        self.free_min = _heap_free()

    def record(self, event):
        if self.as_json:
            print(PREFIX + json.dumps(event))

    def say(self, text):
        if not self.as_json:
            print(text)

    def load(self, path):
        """Import the module at path; None (after reporting the error) if it raises."""
        path = _absolute(path)
        folder = _dirname(path)
        # run as a script (tests/mpy_runner.py) the root is two levels up; run precompiled with
        # `micropython -m mpy_runner` (as the pytest plugin does, to save heap) it is the working directory
        script = sys.argv[0] if sys.argv else ""
        root = _dirname(_dirname(_absolute(script))) if script.endswith(".py") else os.getcwd()  # noqa: PTH109
        # --path folders (a precompiled bundle of protocols/ and firmware/) come first, as on a board
        for entry in [root, folder] + list(reversed(self.paths)):  # noqa: RUF005 - MicroPython: no * in displays
            if entry in sys.path:
                sys.path.remove(entry)
            sys.path.insert(0, entry)
        name = path[path.rfind("/") + 1 :]
        if name.endswith(".py"):  # noqa: FURB188 - MicroPython's str has no removesuffix
            name = name[:-3]
        gc.collect()
        try:
            return __import__(name)
        except Exception as exc:
            gc.collect()
            text = _format_exception(exc)
            self.record({"event": "error", "phase": "import", "module": name, "traceback": text})
            self.say("ERROR importing " + path + "\n" + text)
            return None

    def run(self, module, names):
        if not names:
            names = sorted(n for n in dir(module) if n.startswith("test") and callable(getattr(module, n)))
        for name in names:
            self.run_one(module, name)

    def run_one(self, module, name):
        self.record({"event": "start", "name": name})
        gc.collect()
        started = _ticks_ms()
        error = None
        function = getattr(module, name, None)
        if function is None:
            error = NameError("no test function " + name + " in " + module.__name__)
        else:
            try:
                result = function()
                if hasattr(result, "send"):  # async def: a coroutine (a generator on MicroPython)
                    import asyncio  # noqa: PLC0415 - only async tests pay for it

                    asyncio.run(result)
            except Exception as exc:
                error = exc
        elapsed = _ticks_diff(_ticks_ms(), started)
        free = _heap_free()
        self.free_min = min(self.free_min, free)
        traceback = None
        if error is not None:
            gc.collect()
            traceback = _format_exception(error)
        gc.collect()
        outcome = "passed" if error is None else "failed"
        if error is None:
            self.passed += 1
        else:
            self.failed += 1
        self.record(
            {
                "event": "end",
                "name": name,
                "outcome": outcome,
                "ms": elapsed,
                "heap_free_after": free,
                "traceback": traceback,
            }
        )
        self.say(("PASS " if error is None else "FAIL ") + name + " (" + str(elapsed) + " ms)")
        if traceback:
            self.say(traceback)

    def finish(self, started):
        gc.collect()
        heap = {"free": _heap_free(), "free_min": self.free_min}
        if hasattr(gc, "mem_alloc"):
            heap["total"] = gc.mem_alloc() + gc.mem_free()
        try:
            import micropython  # noqa: PLC0415 - MicroPython only

            heap["malloc_peak"] = micropython.mem_peak()
        except (ImportError, AttributeError):
            pass
        elapsed = _ticks_diff(_ticks_ms(), started)
        self.record({"event": "done", "passed": self.passed, "failed": self.failed, "ms": elapsed, "heap": heap})
        self.say(
            str(self.passed)
            + " passed, "
            + str(self.failed)
            + " failed in "
            + str(elapsed)
            + " ms; heap "
            + str(heap.get("total", "?"))
            + " bytes: "
            + str(heap["free"])
            + " free at the end, "
            + str(heap["free_min"])
            + " lowest free seen after a test (before collection)"
        )


def main(argv):
    as_json = False
    paths = []
    args = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--json":
            as_json = True
        elif arg == "--path" and i + 1 < len(argv):
            paths.append(_absolute(argv[i + 1]))
            i += 1
        else:
            args.append(arg)
        i += 1
    if not args or args[0].startswith("-"):
        print(USAGE)
        return 2
    started = _ticks_ms()
    runner = Runner(as_json, paths)
    module = runner.load(args[0])
    if module is None:
        return 2
    runner.run(module, args[1:])
    runner.finish(started)
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
