"""Start-up: read and validate the board config, count the boot, then run the board or safe mode.

`prepare(config_path, file=None)` -> ("board", Board args) or ("safe", safe.run args). Runs once:
firmware.run (firmware/__init__.py) drops this module from memory, with firmware.config, before it imports the
board's own modules, so that validation and the running board never need RAM at the same time (and the board's
code is loaded into the room this module's code leaves, not above it: a heap cut into holes has no room for a
reconnect's buffers).

"""

import sys

from firmware import hw, log


def _count_boot(state):
    from firmware.buffer import _ensure_dir

    _ensure_dir(state)
    boot = 0
    try:
        with open(state + "/boot") as f:
            boot = int(f.read()) + 1
    except (OSError, ValueError):
        pass
    try:
        with open(state + "/boot", "w") as f:
            f.write("%d" % boot)
    except OSError as exc:
        log.error("cannot save the boot counter in %s: %s", state, log.why(exc))
    return boot


def _resolve_ca(config_path, *settings):
    """A relative `mqtt.ca` names a file in the config file's folder (`/` on a board, whose config is /board.json)."""
    cut = config_path.rfind("/")
    for m in settings:
        if m is not None and m.get("ca") and not m["ca"].startswith("/") and cut >= 0:
            m["ca"] = config_path[:cut + 1] + m["ca"]


def prepare(config_path, file=None):
    """("board", Board args) or ("safe", safe.run args), from the config in `file` (default: config_path).

    config_path is the board's own config, whose folder holds the state folder and a relative `mqtt.ca`: a
    config on trial (docs/ota.md) is read from another file but runs as the board's own.
    """
    home = config_path
    impl = hw.load()
    # The wire codec first, while the heap is empty: its big tables then sit in one block, not in holes.
    from firmware import config, sensors
    from protocols import status, telemetry_encode  # noqa: F401 - imported for their place in the heap

    error = None
    reach = None
    cfg = None
    try:
        raw = config.read(file or config_path)
        reach = config.reach(raw)
        if reach is not None:
            w = raw.get("wifi")
            reach = reach + (  # noqa: RUF005 - MicroPython has no *x in tuple displays
               w if isinstance(w, dict) and isinstance(w.get("ssid"), str) else None,)
        cfg = config.validate(raw, impl.NEEDS_WIFI)
        log.level = log.LEVELS[cfg["log"]]
        for name in cfg["sensors"]:
            driver = cfg["sensors"][name]["driver"]
            if driver not in sensors.DRIVERS:
                raise config.ConfigError("sensors.%s.driver: no driver %r in this firmware (have: %s)" % (
                    name, driver, ", ".join(sorted(sensors.DRIVERS))))
    except config.ConfigError as exc:
        error = "config: %s" % exc
    _resolve_ca(home, cfg["mqtt"] if cfg else None, reach[2] if reach else None)
    device = cfg["device"] if cfg else (reach[1] if reach else "board")
    boot = _count_boot(impl.state_dir(home, device))
    impl.state = impl.state_dir(home, device)  # for drivers that keep a count across resets (pulse)
    caps = config.caps(cfg) if error is None else None
    del config, sensors
    # validation is done: give the RAM of the validator and the catalogue back (the board never needs them again)
    for name in ("firmware.config", "firmware.sensors", "firmware.driveropts", "protocols.catalogue",
                 "protocols.limits"):
        sys.modules.pop(name, None)
    import firmware
    import protocols

    for package, name in ((firmware, "config"), (firmware, "sensors"), (firmware, "driveropts"),
                          (protocols, "catalogue"), (protocols, "limits")):
        if hasattr(package, name):
            delattr(package, name)
    if error is not None:
        return "safe", (impl, error, reach, boot)
    return "board", (impl, cfg, caps, boot, impl.state)
