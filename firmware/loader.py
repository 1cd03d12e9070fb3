"""The A/B loader: `/loader.mpy` on a board with slots, run by `/main.py` (firmware/slotmain.py: `import loader`);
`micropython DIR/main.py DIR/board.json` on the unix port.

Never replaced over the air: it must boot whatever the slots hold. Precompiled, not a `.py` main script: the
board compiling it at each boot would keep about 5 KB more heap. Its folder R holds `board.json`, the slots
`a/` and `b/` (each: firmware/, protocols/, `manifest`) and `ota/` (`boot.json`, `offer.json`, `last.json`,
`last.wait`, `board.new.json`). `ota/boot.json` says which slot runs and which is on trial:

    {"boot": "a", "next": "b" or null, "kind": "fw" or "config", "count": 1, "max": 3, "timeout": 300,
     "id": "r1", "version": "0.2.0", "config": "c7"}

`boot` is the slot that runs, `next` the slot on trial (a config trial: the same slot), `count` the trial's
boots so far, `timeout` its seconds to prove healthy. (Keys and function names here are names the interpreter
knows already: each new one would be interned for as long as the board runs, and a board close to a new qstr
pool pays for the whole pool, docs/ota.md "Heap".)

Missing or unreadable (a damaged flash): the first slot whose `manifest` is complete (written only once the
slot was verified and proved healthy, or installed by cable), `a` first; no slot at all: the flat layout
(firmware/ in R), run as slot ".". A trial (`next` set): `count` counted up on flash (tmp file + rename) before
it runs; past `max`: rolled back ("reset N times in a row"). The trial runs the `next` slot (a config trial:
the current slot with `ota/board.new.json`), its folder first on sys.path, firmware.run (firmware/__init__.py); it is
rolled back when the config does not validate (safe mode), when the job or its coroutine raises, or when it
has not proved healthy within `timeout` seconds. Healthy: the running board (app.py) sets the boot record's
`done` once the hub confirmed a record of this boot (or, on a board without confirmations, the broker
acknowledged one); the loader, which looks every second, then commits the trial here: the slot becomes
current (`manifest.new` -> `manifest`; a config: `board.json` kept as `board.old.json`, the new one renamed
over it), `ota/last.json` records it, `ota/boot.json` drops the trial, and the board resets. A rollback
writes `ota/last.json` with its reason, drops the trial from `ota/boot.json` and resets; the current slot's
files are never touched. Either way the report waits in `ota/last.json`: the next start is update mode
(firmware/ota.py), which sends it and resets into the normal run. So a running board, a trial included,
never holds the update's code: only update mode does (docs/ota.md, "Heap").

The boot record goes to the board as its `ota` (app.py, firmware/ota.py), with this run's notes under names the
interpreter has interned already (a new name costs the board's qstr pool): `dir` (R), `path` (the board's
config file), `file` (the config to read, in a config trial), `load` (2: an offer or a report waits, the
board starts in update mode; 1: a report waits in `ota/last.wait` for a connection), `done` (set by the
trial: healthy), `ota` and `reset` (the running board's ota topic and reset, app.py: a trial's end resets the
board through it, which keeps its buffer) and, from firmware.run, `error` (why safe mode).

Imports sys, os, json, gc and asyncio only: nothing of a slot is loaded before the slot is chosen, and it
prints its own few console lines (in firmware/log.py's format), since a broken slot may have no working log.
"""

import gc
import json
import os
import sys


def known(path):
    """Whether path exists."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def keep(path, b):
    """b as JSON in path, without this run's notes, atomically: a new file renamed over the old one."""
    with open(path + ".being-written", "w") as f:
        notes = ("dir", "path", "file", "load", "done", "ota", "reset", "error")  # this run's (module docstring)
        json.dump({k: b[k] for k in b if k not in notes}, f)
    os.rename(path + ".being-written", path)


def failed(b, why):
    """Roll the trial back: the reason for the hub in ota/last.json, the trial out of ota/boot.json."""
    print("qala E loader: %s %s rolled back: %s" % (b.get("kind"), b.get("version"), why))
    # Literals of more than 10 characters: a shorter one is interned (a qstr) for as long as the board runs.
    root = b["dir"]
    # no state in it: a rollback (firmware/ota.py reports it so)
    keep(root + "/ota/last.json", {"id": b.get("id"), "version": b.get("version"), "reason": why})
    if b.get("kind") == "config" and known(root + "/ota/board.new.json"):
        os.remove(root + "/ota/board.new.json")
    b["next"] = None
    b["count"] = 0
    keep(root + "/ota/boot.json", b)


async def watch(c, b):
    """Run the trial's coroutine c: commit it once it is healthy (`done`), end it when it raises or has not
    proved healthy in time; either way the board resets (module docstring)."""
    import asyncio

    t = asyncio.create_task(c)
    left = b.get("timeout", 300)
    while left > 0 and not t.done() and not b.get("done"):
        await asyncio.sleep(1)
        left -= 1
    if t.done():
        await t  # its exception: rolled back by main()
    if not b.get("done"):
        b["error"] = "not healthy within %d s" % b.get("timeout", 300)
        raise RuntimeError
    root = b["dir"]
    if b.get("kind") == "config":
        new = root + "/ota/board.new.json"
        home = b["path"]
        if known(new):
            old = home[:home.rfind("/") + 1] + "board.old.json"
            with open(home, "rb") as src, open(old + ".being-written", "wb") as dst:  # noqa: ASYNC230 - a few KB
                dst.write(src.read())
            os.rename(old + ".being-written", old)
            os.rename(new, home)
        b["config"] = b["version"]
    else:
        new = root + "/%s/manifest.new" % b["next"]
        if known(new):
            os.rename(new, new[:-4])  # the slot is complete
        b["boot"] = b["next"]
    # the report for update mode (firmware/ota.py): no reason is healthy
    keep(root + "/ota/last.json", {"id": b.get("id"), "version": b.get("version")})
    b["next"] = None
    b["count"] = 0
    keep(root + "/ota/boot.json", b)
    print("qala I loader: %s %s healthy: committed" % (b.get("kind"), b.get("version")))


def main():
    here = __file__ if "/" in __file__ else "./" + __file__
    root = here[: here.rfind("/")] or "/"
    cfg = sys.argv[1] if len(sys.argv) > 1 else "/board.json"
    try:
        with open(root + "/ota/boot.json") as f:
            b = json.load(f)
        if b["boot"] not in ("a", "b", ".") or b["next"] not in (None, "a", "b", "."):
            raise ValueError
    except Exception:  # missing, or half-written by a damaged flash: what the slots hold decides
        b = {"boot": "a" if known(root + "/a/manifest") else "b" if known(root + "/b/manifest") else ".", "next": None}
    b["dir"] = root
    b["path"] = cfg
    if b["next"]:
        b["count"] = b.get("count", 0) + 1
        try:
            if b["count"] > b.get("max", 3):
                failed(b, "reset %d times in a row" % (b["count"] - 1))
            else:
                keep(root + "/ota/boot.json", b)
        except OSError as exc:
            print("qala E loader: cannot count the trial's boots (%s): running the current slot" % exc)
            b["next"] = None
    # 2: an offer or a report waits: update mode (firmware.run, firmware/ota.py); 1: a report waits for the
    # running board's next connection (app.py), update mode could not send it
    b["load"] = 0
    if not b["next"]:
        if known(root + "/ota/offer.json") or known(root + "/ota/last.json"):
            b["load"] = 2
        elif known(root + "/ota/last.wait"):
            b["load"] = 1
    slot = b["next"] or b["boot"]
    if b["next"] and b.get("kind") == "config":
        slot = b["boot"]
        if known(root + "/ota/board.new.json"):
            b["file"] = root + "/ota/board.new.json"
    sys.path.insert(0, root if slot == "." else root + "/" + slot)
    gc.collect()
    try:
        import firmware

        mode, c = firmware.run(cfg, b)
        if b["next"] and mode == "safe":
            raise RuntimeError  # rolled back below, with firmware.run's error
        import asyncio

        if not b["next"]:
            asyncio.run(c)
            return
        asyncio.run(watch(c, b))
    except Exception as exc:
        if not b["next"]:
            raise
        why = b.get("error")  # safe mode's (firmware.run) or the trial's time-out (watch)
        if why is None:
            why = "raised at start-up: %s: %s" % (type(exc).__name__, exc)
        elif not why.startswith("config") and not why.startswith("not healthy"):
            why = "safe mode: " + why
        failed(b, why)
    if b["next"] is None:  # committed or rolled back: reset into update mode, which reports it
        if b.get("reset"):  # the running board's own reset (app.py): what its buffer holds in RAM kept on flash
            b["reset"]("loader: trial ended, resetting to report it", 0)
        try:
            import machine

            machine.reset()
        except (ImportError, AttributeError):  # the unix port: whoever runs it starts it again (firmware/hw/unix.py)
            sys.exit(3)


main()
