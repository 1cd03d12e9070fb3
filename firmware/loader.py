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
the current slot with `ota/board.new.json`), its folder first on sys.path, firmware/entry.py's job; it is
rolled back when the config does not validate (safe mode), when the job or its coroutine raises, or when it
has not committed (firmware/ota.py, on the hub's confirmation) within `trial` seconds. A rollback writes
`ota/last.json` (reported at the next connect), drops the trial from `ota/boot.json` and resets; the current
slot's files are never touched.

Imports sys, os, json, gc and asyncio only: nothing of a slot is loaded before the slot is chosen, and it
prints its own few console lines (in firmware/log.py's format), since a broken slot may have no working log.
"""

import gc
import json
import os
import sys


def _root():
    here = __file__ if "/" in __file__ else "./" + __file__
    return here[: here.rfind("/")] or "/"


_R = _root()
_O = _R + "/ota/"


def _has(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _save(name, b):
    tmp = _O + name + ".tmp"
    with open(tmp, "w") as f:
        json.dump({k: b[k] for k in b if k[0] != "_"}, f)
    os.rename(tmp, _O + name)


def _back(b, why):
    """Roll the trial back: the reason for the hub in ota/last.json, the trial out of ota/boot.json."""
    print("qala E loader: %s %s rolled back: %s" % (b.get("kind"), b.get("version"), why))
    _save("last.json", {"id": b.get("id"), "version": b.get("version"), "state": "rolledback", "reason": why})
    if b.get("kind") == "config" and _has(_O + "board.new.json"):
        os.remove(_O + "board.new.json")
    b["new"] = None
    b["tries"] = 0
    _save("boot.json", b)


def _reset():
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):  # the unix port: whoever runs it starts it again (firmware/hw/unix.py)
        sys.exit(3)


async def _watch(job, b):
    """Run the job; while its trial is pending, roll back when it ends with an error or does not commit in time."""
    import asyncio

    t = asyncio.create_task(job)
    left = b.get("trial", 300)
    while b["new"] and left > 0 and not t.done():
        await asyncio.sleep(1)
        left -= 1
    if b["new"] and not t.done():
        _back(b, "not healthy within %d s" % b.get("trial", 300))
        _reset()
    await t


def main():
    cfg = sys.argv[1] if len(sys.argv) > 1 else "/board.json"
    try:
        with open(_O + "boot.json") as f:
            b = json.load(f)
        if b["cur"] not in ("a", "b", ".") or b["new"] not in (None, "a", "b", "."):
            raise ValueError
    except Exception:  # missing, or half-written by a damaged flash: what the slots hold decides
        b = {"cur": "b" if not _has(_R + "/a/manifest") and _has(_R + "/b/manifest") else "a", "new": None}
        if not _has(_R + "/" + b["cur"] + "/manifest"):
            b["cur"] = "."
    if b["new"]:
        b["tries"] = b.get("tries", 0) + 1
        try:
            if b["tries"] > b.get("max", 3):
                _back(b, "reset %d times in a row" % (b["tries"] - 1))
            else:
                _save("boot.json", b)
        except OSError as exc:
            print("qala E loader: cannot count the trial's boots (%s): running the current slot" % exc)
            b["new"] = None
    b["_root"] = _R
    b["_home"] = cfg
    b["_wake"] = bool(b["new"]) or _has(_O + "last.json") or _has(_O + "offer")
    slot = b["new"] or b["cur"]
    if b["new"] and b.get("kind") == "config":
        slot = b["cur"]
        if _has(_O + "board.new.json"):
            b["_cfg"] = _O + "board.new.json"
    sys.path.insert(0, _R if slot == "." else _R + "/" + slot)
    gc.collect()
    try:
        from firmware import entry

        mode, job = entry.job(cfg, b)
        del entry
        sys.modules.pop("firmware.entry", None)
        import firmware

        del firmware.entry
        if b["new"] and mode == "safe":
            why = b.get("_error") or "safe mode"
            raise RuntimeError(why if why.startswith("config") else "safe mode: " + why)
        import asyncio

        asyncio.run(_watch(job, b) if b["new"] else job)
    except Exception as exc:
        if not b["new"]:
            raise
        why = str(exc)
        if not isinstance(exc, RuntimeError) or not (why.startswith("config") or why.startswith("safe mode")):
            why = "raised at start-up: %s: %s" % (type(exc).__name__, why)
        _back(b, why)
        _reset()


main()
