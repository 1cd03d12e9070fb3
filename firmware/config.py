"""The board config: read the JSON file, validate every key, fill the defaults.

`load(path)` returns a plain dict or raises ConfigError whose message names the key path and the rule
(`sensors.air1.interval: must be a positive number, got 'fast'`). Unknown keys are errors, so a typo is not
silently ignored. Actuator limits are checked by protocols.limits.check_actuator, the same rules the hub
applies to device profiles. `reach(raw)` pulls out just enough (site, device, mqtt) for a board in safe mode
to report its error. The app imports this module at start-up and drops it afterwards to free its RAM.
"""

import json

from protocols import catalogue, topics
from protocols.errors import ProtocolError

# The allowed keys are written where they are checked, not as module constants: a module-level name stays
# interned on the board (its qstr pool) after this module is dropped (docs/performance.md, "qstr pools").
UPLINKS = ("mqtt", "modbus")
LOG_LEVELS = ("debug", "info", "warn", "error")


class ConfigError(ValueError):
    """The config cannot run; the message is `path: problem`."""


def _bad(path, problem, value=None, show=True):
    if show:
        text = repr(value)
        problem = "%s, got %s" % (problem, text if len(text) <= 40 else text[:37] + "...")
    raise ConfigError("%s: %s" % (path, problem))


def _obj(path, value, allowed):
    if not isinstance(value, dict):
        _bad(path, "must be an object", value)
    for key in value:
        if key not in allowed:
            _bad(path, "unknown key %r" % key, show=False)
    return value


def _num(path, value, lo=None, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # noqa: PLR0124 - NaN test without math
        _bad(path, "must be a number", value)
    if positive and value <= 0:
        _bad(path, "must be a positive number", value)
    if lo is not None and value < lo:
        _bad(path, "must be at least %s" % lo, value)
    return value


def _int(path, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(path, "must be an integer", value)
    if not lo <= value <= hi:
        _bad(path, "must be in %d..%d" % (lo, hi), value)
    return value


def _str(path, value, empty=False):
    if not isinstance(value, str) or (not value and not empty):
        _bad(path, "must be a non-empty string" if not empty else "must be a string", value)
    return value


def _id(path, value):
    try:
        return topics.check_id(path, value)
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None


def _need(obj, key, path):
    if key not in obj:
        _bad(path + key, "required key missing", show=False)
    return obj[key]


def _mqtt(raw):
    m = _obj("mqtt", _need(raw, "mqtt", ""), ("host", "port", "user", "password", "tls", "ca", "server_hostname",
                                              "keepalive", "max_packet", "clean"))
    host = _need(m, "host", "mqtt.")
    out = {"tls": m.get("tls", True)}
    if not isinstance(out["tls"], bool):
        _bad("mqtt.tls", "must be true or false", out["tls"])
    out["port"] = _int("mqtt.port", m.get("port", 8883 if out["tls"] else 1883), 1, 65535)
    # one broker, or the nodes of a cluster to try in turn ("host" or "host:port"): failover, docs/firmware.md
    if isinstance(host, list):
        if not 1 <= len(host) <= 8:
            _bad("mqtt.host", "must list 1 to 8 brokers", len(host))
        out["host"] = []
        for i in range(len(host)):
            path = "mqtt.host[%d]" % i
            h = _str(path, host[i])
            cut = h.rfind(":")
            p = h[cut + 1:] if cut >= 0 else str(out["port"])
            if cut >= 0:
                h = h[:cut]
            if not h or not p.isdigit() or not 1 <= int(p) <= 65535:
                _bad(path, 'must be "host" or "host:port" with a port 1..65535', host[i])
            out["host"].append((h, int(p)))
    else:
        out["host"] = _str("mqtt.host", host)
    for key in ("user", "password"):
        value = m.get(key)
        out[key] = None if value is None else _str("mqtt." + key, value, empty=True)
    out["keepalive"] = _int("mqtt.keepalive", m.get("keepalive", 60), 5, 3600)
    out["max_packet"] = _int("mqtt.max_packet", m.get("max_packet", 2048), 256, 65536)
    # a clean session on a cluster (docs/scale.md): RabbitMQ keeps a persistent one on one node only
    key = "clean"  # no new interned string on the board: "clean" is the client's attribute already
    out[key] = m.get(key, False)
    if not isinstance(out[key], bool):
        _bad("mqtt." + key, "must be true or false", out[key])
    # TLS verifies the broker: `ca` is the site CA's file (PEM; relative to the config file's folder, see
    # firmware/start.py), `server_hostname` the name its certificate must carry (default: host)
    for key in ("ca", "server_hostname"):
        value = m.get(key)
        if not out["tls"]:
            if value is not None:
                _bad("mqtt." + key, "not used when mqtt.tls is false", show=False)
        elif value is None and key == "ca":
            _bad("mqtt.ca", "required when mqtt.tls is true (the site CA's PEM file on the board)", show=False)
        elif value is not None:
            _str("mqtt." + key, value)
        out[key] = value
    return out


def reach(raw):
    """(site, device, mqtt settings) if the config has them right, else None: what safe mode can use."""
    try:
        return _id("site", raw["site"]), _id("device", raw["device"]), _mqtt(raw)
    except (ConfigError, KeyError, TypeError):
        return None


def read(path):
    """The raw JSON object in the file at path; ConfigError if missing, unreadable or not JSON."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc)) from None
    try:
        raw = json.loads(text)
    except ValueError:
        raise ConfigError("%s is not valid JSON" % path) from None
    if not isinstance(raw, dict):
        raise ConfigError("%s must hold a JSON object" % path)
    return raw


def validate(raw, need_wifi=False):
    """The validated config with defaults filled in; ConfigError naming the first bad key."""
    _obj("config", raw, ("site", "device", "wifi", "mqtt", "uplink", "sensors", "actuators", "buffer",
                         "health_interval", "failsafe_after", "log", "ntp_host", "watchdog", "stall_after", "modbus",
                         "commands"))
    cfg = {"site": _id("site", _need(raw, "site", "")), "device": _id("device", _need(raw, "device", ""))}
    cfg["uplink"] = raw.get("uplink", "mqtt")
    if cfg["uplink"] not in UPLINKS:
        _bad("uplink", "must be one of %s" % "|".join(UPLINKS), cfg["uplink"])
    wifi = raw.get("wifi")
    if wifi is not None:
        _obj("wifi", wifi, ("ssid", "password"))
        _str("wifi.ssid", _need(wifi, "ssid", "wifi."))
        _str("wifi.password", wifi.get("password", ""), empty=True)
    elif need_wifi:
        _bad("wifi", "required on this board", show=False)
    cfg["wifi"] = wifi
    cfg["mqtt"] = _mqtt(raw) if cfg["uplink"] == "mqtt" or "mqtt" in raw else None
    cfg["modbus"] = _modbus(raw, need_wifi) if cfg["uplink"] == "modbus" or "modbus" in raw else None
    cfg["sensors"] = _sensors(raw.get("sensors", {}))
    cfg["actuators"] = _actuators(raw.get("actuators", {}))
    cfg["commands"] = _commands(raw, cfg)
    buf = _obj("buffer", raw.get("buffer", {}), ("ram", "file", "replay_ms", "confirm", "resend_after"))
    cfg["buffer"] = {
        "ram": _int("buffer.ram", buf.get("ram", 16), 1, 1000),
        "file": _int("buffer.file", buf.get("file", 1000), 0, 1000000),
        "replay_ms": _int("buffer.replay_ms", buf.get("replay_ms", 20), 0, 60000),
        "confirm": buf.get("confirm", True),
        "resend_after": _int("buffer.resend_after", buf.get("resend_after", 30), 1, 3600),
    }
    if cfg["buffer"]["confirm"] is not True and cfg["buffer"]["confirm"] is not False:
        _bad("buffer.confirm", "must be true or false", cfg["buffer"]["confirm"])
    cfg["health_interval"] = _num("health_interval", raw.get("health_interval", 60), positive=True)
    cfg["failsafe_after"] = _num("failsafe_after", raw.get("failsafe_after", 120), positive=True)
    cfg["log"] = raw.get("log", "info")
    if cfg["log"] not in LOG_LEVELS:
        _bad("log", "must be one of %s" % "|".join(LOG_LEVELS), cfg["log"])
    cfg["ntp_host"] = _str("ntp_host", raw.get("ntp_host", "pool.ntp.org"))
    cfg["watchdog"] = _num("watchdog", raw.get("watchdog", 30), lo=5)
    cfg["stall_after"] = _num("stall_after", raw.get("stall_after", 120), lo=5)
    # refuse sensors that sample faster than the sender can drain a backlog: after an outage the board would
    # never catch up. The backlog drains one message per buffer.replay_ms (at least 5 ms: a board sends no
    # faster over MQTT); sampling may use at most half of that, the rest is for the backlog. A Modbus board
    # keeps no backlog: its registers hold the latest sample.
    if cfg["uplink"] == "mqtt":
        rate = 0.0
        for name in cfg["sensors"]:
            rate += 1.0 / cfg["sensors"][name]["interval"]
        drain = 1000.0 / max(cfg["buffer"]["replay_ms"], 5)
        if rate > drain / 2:
            _bad("sensors", "together they sample %.1f messages/s, but the sender drains a backlog at %.0f "
                 "messages/s (buffer.replay_ms %d), so after an outage it would never catch up: sample less often "
                 "(at most %.1f messages/s in all) or lower buffer.replay_ms" % (rate, drain,
                                                                                 cfg["buffer"]["replay_ms"],
                                                                                 drain / 2), show=False)
    return cfg


def _modbus(raw, board):
    """modbus: {transport: tcp, host, port, writers, max_connections, idle_timeout} or
    {transport: rtu, device | uart, baudrate, parity, stopbits, pins}."""
    m = _obj("modbus", _need(raw, "modbus", ""), ("transport", "unit", "host", "port", "writers", "max_connections",
                                                  "idle_timeout", "device", "uart", "baudrate", "parity", "stopbits",
                                                  "pins"))
    t = _need(m, "transport", "modbus.")
    if t not in ("tcp", "rtu"):
        _bad("modbus.transport", "must be tcp|rtu", t)
    out = {"transport": t, "unit": _int("modbus.unit", m.get("unit", 1), 1, 247)}
    tcp = ("host", "port", "writers", "max_connections", "idle_timeout")
    for key in ("device", "uart", "baudrate", "parity", "stopbits", "pins") if t == "tcp" else tcp:
        if key in m:
            _bad("modbus." + key, "not used with transport %s" % t, show=False)
    if t == "tcp":
        # a board serves its LAN; the unix port only its own host
        out["host"] = _str("modbus.host", m.get("host", "0.0.0.0" if board else "127.0.0.1"))
        out["port"] = _int("modbus.port", m.get("port", 502), 1, 65535)
        out["writers"] = _writers(m.get("writers", []))  # empty: nobody writes over TCP
        out["max_connections"] = _int("modbus.max_connections", m.get("max_connections", 4), 1, 32)
        idle = _num("modbus.idle_timeout", m.get("idle_timeout", 60), lo=1)
        if idle > 86400:
            _bad("modbus.idle_timeout", "must be at most 86400 seconds", idle)
        out["idle_timeout"] = idle
        return out
    if ("device" in m) == ("uart" in m):
        _bad("modbus.device", "give exactly one of device (a serial device path) and uart (a UART id)", show=False)
    out["device"] = _str("modbus.device", m["device"]) if "device" in m else None
    out["uart"] = _int("modbus.uart", m["uart"], 0, 15) if "uart" in m else None
    out["baudrate"] = _int("modbus.baudrate", m.get("baudrate", 9600), 300, 1000000)
    out["parity"] = m.get("parity", "N")
    if out["parity"] not in ("N", "E", "O"):
        _bad("modbus.parity", "must be N|E|O", out["parity"])
    out["stopbits"] = _int("modbus.stopbits", m.get("stopbits", 1), 1, 2)
    pins = _obj("modbus.pins", m.get("pins", {}), ("tx", "rx", "de"))
    for pin in pins:
        _int("modbus.pins." + pin, pins[pin], 0, 255)
    out["pins"] = pins
    return out


def _writers(value):
    """modbus.writers: the IPv4 addresses (dotted quads) of the masters allowed to write, at most 16."""
    if not isinstance(value, list) or len(value) > 16:
        _bad("modbus.writers", "must be a list of at most 16 IPv4 addresses", value)
    for i in range(len(value)):
        ip = value[i]
        path = "modbus.writers[%d]" % i
        parts = ip.split(".") if isinstance(ip, str) else ()
        for part in parts:
            if not part.isdigit() or len(part) > 3 or (len(part) > 1 and part[0] == "0") or int(part) > 255:
                parts = ()
                break
        if len(parts) != 4:
            _bad(path, "must be an IPv4 address such as 192.168.1.10 (no names, no leading zeros)", ip)
        if ip == "0.0.0.0" or ip in value[:i]:
            _bad(path, "0.0.0.0 is no host" if ip == "0.0.0.0" else "listed twice", ip)
    return value


def _sensors(value):
    sensors = _obj_of_ids("sensors", value, 16)
    for name in sensors:
        path = "sensors." + name + "."
        s = _obj(path[:-1], sensors[name], ("driver", "interval", "warmup", "quantities", "pins", "options"))
        _id(path + "driver", _need(s, "driver", path))
        _num(path + "interval", _need(s, "interval", path), positive=True)
        s["warmup"] = _num(path + "warmup", s.get("warmup", 0), lo=0)
        q = _need(s, "quantities", path)
        if not isinstance(q, list) or not q or len(q) > 32:
            _bad(path + "quantities", "must be a list of 1 to 32 quantities", q)
        for quantity in q:
            if quantity not in catalogue.QUANTITIES:
                _bad(path + "quantities", "unknown quantity %r (not in the catalogue)" % (quantity,), show=False)
        pins = _obj_any(path + "pins", s.get("pins", {}))
        for pin in pins:
            _int(path + "pins." + pin, pins[pin], 0, 255)
        s["pins"] = pins
        s["options"] = _obj_any(path + "options", s.get("options", {}))
        twin = _obj(path + "options.twin", s["options"].get("twin", {}),  # the unix-port twins' faults
                    ("bad_checksum", "silent", "stuck", "out_of_range", "warming_up", "bouncing"))
        for fault in twin:
            if twin[fault] is not True and twin[fault] is not False:
                _int(path + "options.twin." + fault, twin[fault], 1, 1000000)
        if s["driver"] in ("pulse", "ds18b20", "sgp40"):  # their own options: checked apart, loaded only then
            from firmware import driveropts

            driveropts.check(path + "options.", s["driver"], s["options"], q, _num, _int, _bad, _obj)
    return sensors


def _actuators(value):
    from protocols import limits

    actuators = _obj_of_ids("actuators", value, 16)
    for name in actuators:
        spec = _obj_any("actuators." + name, actuators[name])
        _int("actuators." + name + ".pin", _need(spec, "pin", "actuators." + name + "."), 0, 255)
        rules = {}
        for key in spec:
            if key != "pin":
                rules[key] = spec[key]
        try:
            limits.check_actuator(name, rules, "actuators.")
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from None
    return actuators


def _commands(raw, cfg):
    """commands: {key, max_ttl}: the board's command key (64 lower-case hex digits, from `qala provision`) and
    how far ahead of the board clock a command's expiry may be (seconds). Required by a board with actuators
    and an MQTT uplink: it acts only on commands signed with that key (protocols/control.py)."""
    c = raw.get("commands")
    if c is None:
        if cfg["actuators"] and cfg["uplink"] == "mqtt":
            _bad("commands.key", "required with actuators: the board's command key (`qala provision board` "
                 "writes it)", show=False)
        return None
    c = _obj("commands", c, ("key", "max_ttl"))
    key = _need(c, "key", "commands.")
    if not isinstance(key, str) or len(key) != 64:
        _bad("commands.key", "must be 64 lower-case hex digits (32 bytes)", show=False)
    for ch in key:
        if ch not in "0123456789abcdef":
            _bad("commands.key", "must be 64 lower-case hex digits (32 bytes)", show=False)
    return {"key": key, "max_ttl": _int("commands.max_ttl", c.get("max_ttl", 600), 1, 86400)}


def _obj_any(path, value):
    if not isinstance(value, dict):
        _bad(path, "must be an object", value)
    return value


def _obj_of_ids(path, value, limit):
    _obj_any(path, value)
    if len(value) > limit:
        _bad(path, "at most %d entries" % limit, show=False)
    for key in value:
        _id(path + "." + key, key)
    return value


def caps(cfg):
    """The `caps` of the birth message: sensors with their quantities, actuator limits, uplink."""
    sensors = {}
    for name in cfg["sensors"]:
        s = cfg["sensors"][name]
        sensors[name] = {"driver": s["driver"], "q": s["quantities"]}
    actuators = {}
    for name in cfg["actuators"]:
        spec = cfg["actuators"][name]
        limits = {}
        for key in spec:
            if key != "pin":
                limits[key] = spec[key]
        actuators[name] = limits
    return {"sensors": sensors, "actuators": actuators, "uplink": cfg["uplink"],
            "failsafe_after": cfg["failsafe_after"]}
