"""The A/B loader: `/loader.mpy` on a board with slots, run by `/main.py` (firmware/slotmain.py: `import loader`);
`micropython DIR/main.py DIR/board.json` on the unix port.

Never replaced over the air: it must boot whatever the slots hold. Precompiled, not a `.py` main script: the
board compiling it at each boot would keep about 5 KB more heap. Its folder R holds `board.json`, the slots
`a/` and `b/` (each: firmware/, protocols/, `manifest`) and `ota/` (`boot.json`, `offer`, `last.json`,
`board.new.json`). `ota/boot.json` says which slot runs and which is on trial:

    {"cur": "a", "new": "b" or null, "kind": "fw" or "config", "tries": 1, "max": 3, "trial": 300,
     "id": "r1", "version": "0.2.0", "config": "c7"}

Missing or unreadable (a damaged flash): the first slot whose `manifest` is complete (written only once the
slot was verified and proved healthy, or installed by cable), `a` first; no slot at all: the flat layout
(firmware/ in R), run as slot ".". A trial (`new` set): `tries` counted up on flash (tmp file + rename) before
it runs; past `max`: rolled back ("reset N times in a row"). The trial runs the `new` slot (a config trial:
the current slot with `ota/board.new.json`), its folder first on sys.path, firmware/start.py's `run`; it is
rolled back when the config does not validate (safe mode), when the job or its coroutine raises, or when it
has not committed (firmware/ota.py, on the hub's confirmation) within `trial` seconds. A rollback writes
`ota/last.json` (reported at the next connect), drops the trial from `ota/boot.json` and resets; the current
slot's files are never touched.

The boot record goes to the board as its `ota` (app.py, firmware/ota.py), with this run's notes under names the
interpreter has interned already (a new name costs the board's qstr pool): `dir` (R), `path` (the board's
config file), `file` (the config to read, in a config trial), `load` (the update's code has work at this
start: 2, an offer waits, the board starts in update mode; true, a trial to commit or a report to send)
and, from start.py, `error` (why safe mode).

Imports sys, os, json, gc and asyncio only: nothing of a slot is loaded before the slot is chosen, and it
prints its own few console lines (in firmware/log.py's format), since a broken slot may have no working log.
"""

import gc
import json
import os
import sys


def _has(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _save(path, b):
    """b as JSON in path, without this run's notes, atomically: a new file renamed over the old one."""
    with open(path + ".being-written", "w") as f:
        json.dump({k: b[k] for k in b if k not in ("dir", "path", "file", "load", "error")}, f)
    os.rename(path + ".being-written", path)


def _back(b, why):
    """Roll the trial back: the reason for the hub in ota/last.json, the trial out of ota/boot.json."""
    print("qala E loader: %s %s rolled back: %s" % (b.get("kind"), b.get("version"), why))
    # Literals of more than 10 characters: a shorter one is interned (a qstr) for as long as the board runs.
    root = b["dir"]
    # no state in it: a rollback (firmware/ota.py reports it so)
    _save(root + "/ota/last.json", {"id": b.get("id"), "version": b.get("version"), "reason": why})
    if b.get("kind") == "config" and _has(root + "/ota/board.new.json"):
        os.remove(root + "/ota/board.new.json")
    b["new"] = None
    b["tries"] = 0
    _save(root + "/ota/boot.json", b)


async def _watch(c, b):
    """Run the coroutine c; while its trial is pending, end it when it raises or has not committed in time."""
    import asyncio

    t = asyncio.create_task(c)
    left = b.get("trial", 300)
    while b["new"] and left > 0 and not t.done():
        await asyncio.sleep(1)
        left -= 1
    if b["new"] and not t.done():
        b["error"] = "not healthy within %d s" % b.get("trial", 300)
        raise RuntimeError
    await t


def main():
    here = __file__ if "/" in __file__ else "./" + __file__
    root = here[: here.rfind("/")] or "/"
    cfg = sys.argv[1] if len(sys.argv) > 1 else "/board.json"
    try:
        with open(root + "/ota/boot.json") as f:
            b = json.load(f)
        if b["cur"] not in ("a", "b", ".") or b["new"] not in (None, "a", "b", "."):
            raise ValueError
    except Exception:  # missing, or half-written by a damaged flash: what the slots hold decides
        b = {"cur": "a" if _has(root + "/a/manifest") else "b" if _has(root + "/b/manifest") else ".", "new": None}
    b["dir"] = root
    b["path"] = cfg
    if b["new"]:
        b["tries"] = b.get("tries", 0) + 1
        try:
            if b["tries"] > b.get("max", 3):
                _back(b, "reset %d times in a row" % (b["tries"] - 1))
            else:
                _save(root + "/ota/boot.json", b)
        except OSError as exc:
            print("qala E loader: cannot count the trial's boots (%s): running the current slot" % exc)
            b["new"] = None
    # 2: an offer waits (update mode, start.py); True: a trial to commit or a report to send
    b["load"] = bool(b["new"]) or _has(root + "/ota/last.json")
    if not b["new"] and _has(root + "/ota/offer"):
        b["load"] = 2
    slot = b["new"] or b["cur"]
    if b["new"] and b.get("kind") == "config":
        slot = b["cur"]
        if _has(root + "/ota/board.new.json"):
            b["file"] = root + "/ota/board.new.json"
    sys.path.insert(0, root if slot == "." else root + "/" + slot)
    gc.collect()
    try:
        from firmware import start

        mode, c = start.run(cfg, b)
        del start
        if b["new"] and mode == "safe":
            raise RuntimeError  # rolled back below, with start.py's error
        import asyncio

        asyncio.run(_watch(c, b) if b["new"] else c)
    except Exception as exc:
        if not b["new"]:
            raise
        why = b.get("error")  # safe mode's (start.py) or the trial's time-out (_watch)
        if why is None:
            why = "raised at start-up: %s: %s" % (type(exc).__name__, exc)
        elif not why.startswith("config") and not why.startswith("not healthy"):
            why = "safe mode: " + why
        _back(b, why)
        try:  # reset into the current slot
            import machine

            machine.reset()
        except (ImportError, AttributeError):  # the unix port: whoever runs it starts it again (firmware/hw/unix.py)
            sys.exit(3)


main()
