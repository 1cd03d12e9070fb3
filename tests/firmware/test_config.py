"""Board config validation (firmware/config.py): the examples load, and every error names its key path."""

# ruff: noqa: PTH123
# (a dual module: MicroPython has no pathlib)

import json

from firmware import config

MICROPYTHON_HEAP = "256k"  # compiled from source here

GOOD = {
    "site": "lab",
    "device": "b1",
    "mqtt": {"host": "127.0.0.1", "ca": "ca.pem"},
    "sensors": {"air1": {"driver": "sim", "interval": 0.2, "quantities": ["pm25", "co2"]}},
    "actuators": {"fan1": {"kind": "pwm", "pin": 4, "min": 0, "max": 100, "failsafe": 20, "unit": "%"}},
    "commands": {"key": "ab" * 32},
}


def _copy():
    return json.loads(json.dumps(GOOD))


def _error(raw, need_wifi=False):
    try:
        config.validate(raw, need_wifi)
    except config.ConfigError as exc:
        return str(exc)
    raise AssertionError("config accepted")


def test_shipped_examples_are_valid():
    unix = config.validate(config.read("firmware/board.unix.json"))  # a lab bench: plain, a dev key of zeros
    assert unix["sensors"]
    raw = config.read("firmware/board.example.json")  # the --from of `qala provision board`, which adds the key
    assert _error(raw, True).startswith("commands.key: required with actuators")
    raw["commands"] = {"key": "ab" * 32}
    cfg = config.validate(raw, True)
    assert cfg["uplink"] == "mqtt"
    assert cfg["sensors"]
    assert cfg["commands"] == {"key": "ab" * 32, "max_ttl": 600}


def test_the_command_key():
    raw = _copy()
    del raw["commands"]
    assert _error(raw) == ("commands.key: required with actuators: the board's command key (`qala provision board` "
                           "writes it)")
    raw["actuators"] = {}
    assert config.validate(raw)["commands"] is None  # no actuators: nothing to command
    for key in ("ab" * 31, "AB" * 32, "xy" * 32, 12, None):
        raw = _copy()
        raw["commands"] = {"key": key}
        assert _error(raw) == "commands.key: must be 64 lower-case hex digits (32 bytes)"
        assert str(key) not in _error(raw) or key is None  # a key is never echoed
    raw["commands"] = {"key": "ab" * 32, "max_ttl": 0}
    assert _error(raw).startswith("commands.max_ttl: must be in 1..86400")
    raw["commands"] = {"key": "ab" * 32, "ttl": 5}
    assert _error(raw) == "commands: unknown key 'ttl'"


def test_defaults_are_filled_in():
    cfg = config.validate(_copy())
    assert cfg["mqtt"]["keepalive"] == 60
    assert cfg["mqtt"]["tls"] is True  # the default: verified TLS (issue 13)
    assert cfg["mqtt"]["port"] == 8883
    assert cfg["mqtt"]["server_hostname"] is None  # the host dialled
    assert cfg["buffer"] == {"ram": 16, "file": 1000, "replay_ms": 20, "confirm": True, "resend_after": 30}
    assert cfg["health_interval"] == 60
    assert cfg["sensors"]["air1"]["warmup"] == 0
    assert (cfg["watchdog"], cfg["stall_after"]) == (30, 120)


def test_sampling_the_sender_cannot_keep_up_with_is_refused():
    raw = _copy()
    raw["sensors"]["air1"]["interval"] = 0.02  # 50 messages/s, and a backlog drains at 50/s (replay_ms 20)
    assert _error(raw) == ("sensors: together they sample 50.0 messages/s, but the sender drains a backlog at 50 "
                           "messages/s (buffer.replay_ms 20), so after an outage it would never catch up: sample "
                           "less often (at most 25.0 messages/s in all) or lower buffer.replay_ms")
    raw["buffer"] = {"replay_ms": 5}  # drains at 200/s: 50/s is within half of it
    assert config.validate(raw)["sensors"]["air1"]["interval"] == 0.02
    raw["buffer"] = {"replay_ms": 0}  # a board sends no faster than one message per 5 ms: still fine
    config.validate(raw)
    raw["sensors"]["air2"] = {"driver": "sim", "interval": 0.01, "quantities": ["pm25"]}  # 150/s together
    assert _error(raw).startswith("sensors: together they sample 150.0 messages/s")


def test_confirmation_and_stall_settings_refuse_what_is_wrong():
    for key, value, message in (
        ("confirm", "yes", "buffer.confirm: must be true or false, got 'yes'"),
        ("resend_after", 0, "buffer.resend_after: must be in 1..3600, got 0"),
        ("resend_after", "30", "buffer.resend_after: must be an integer, got '30'"),
    ):
        raw = _copy()
        raw["buffer"] = {key: value}
        assert _error(raw) == message
    raw = _copy()
    raw["stall_after"] = 2
    assert _error(raw).startswith("stall_after: must be")
    raw["stall_after"] = "2m"
    assert _error(raw) == "stall_after: must be a number, got '2m'"


def test_caps_carry_actuator_limits_without_pins():
    caps = config.caps(config.validate(_copy()))
    assert caps["actuators"]["fan1"] == {"kind": "pwm", "min": 0, "max": 100, "failsafe": 20, "unit": "%"}
    assert caps["sensors"]["air1"] == {"driver": "sim", "q": ["pm25", "co2"]}


def test_errors_name_the_key_path():
    raw = _copy()
    raw["sensors"]["air1"]["interval"] = "fast"
    assert _error(raw) == "sensors.air1.interval: must be a number, got 'fast'"
    raw["sensors"]["air1"]["interval"] = -1
    assert _error(raw) == "sensors.air1.interval: must be a positive number, got -1"
    raw = _copy()
    raw["mqtt"]["port"] = True
    assert _error(raw) == "mqtt.port: must be an integer, got True"
    raw = _copy()
    del raw["mqtt"]["host"]
    assert _error(raw) == "mqtt.host: required key missing"
    raw = _copy()
    raw["sensors"]["air1"]["quantities"] = ["pm25", "smog"]
    assert _error(raw) == "sensors.air1.quantities: unknown quantity 'smog' (not in the catalogue)"
    raw = _copy()
    raw["actuators"]["fan1"]["failsafe"] = 150
    assert _error(raw).startswith("actuators.fan1.failsafe:")
    raw = _copy()
    raw["actuators"]["fan1"]["pin"] = "D4"
    assert _error(raw) == "actuators.fan1.pin: must be an integer, got 'D4'"
    raw = _copy()
    raw["mqtt"]["tsl"] = True
    assert _error(raw) == "mqtt: unknown key 'tsl'"
    raw = _copy()
    raw["device"] = "a/b"
    assert _error(raw).startswith("device: character '/' not allowed")
    raw = _copy()
    raw["uplink"] = "lora"
    assert _error(raw) == "uplink: must be one of mqtt|modbus, got 'lora'"


def test_a_broker_list_for_failover():
    raw = _copy()
    raw["mqtt"]["host"] = ["10.0.0.1", "10.0.0.2:8884", "node3.example:1"]
    assert config.validate(raw)["mqtt"]["host"] == [("10.0.0.1", 8883), ("10.0.0.2", 8884), ("node3.example", 1)]
    raw["mqtt"]["port"] = 9000
    assert config.validate(raw)["mqtt"]["host"][0] == ("10.0.0.1", 9000)  # mqtt.port: the entries without one
    for bad, error in (
        ([], "mqtt.host: must list 1 to 8 brokers, got 0"),
        (["a"] * 9, "mqtt.host: must list 1 to 8 brokers, got 9"),
        (["a", ""], "mqtt.host[1]: must be a non-empty string, got ''"),
        (["a", 7], "mqtt.host[1]: must be a non-empty string, got 7"),
        (["a:0"], 'mqtt.host[0]: must be "host" or "host:port" with a port 1..65535, got \'a:0\''),
        (["a:x"], 'mqtt.host[0]: must be "host" or "host:port" with a port 1..65535, got \'a:x\''),
        ([":1883"], 'mqtt.host[0]: must be "host" or "host:port" with a port 1..65535, got \':1883\''),
    ):
        raw["mqtt"]["host"] = bad
        assert _error(raw) == error, bad


def test_a_clean_session_for_a_cluster():
    raw = _copy()
    assert config.validate(raw)["mqtt"]["clean"] is False  # a persistent session by default
    raw["mqtt"]["clean"] = True
    assert config.validate(raw)["mqtt"]["clean"] is True
    raw["mqtt"]["clean"] = "yes"
    assert _error(raw) == "mqtt.clean: must be true or false, got 'yes'"


def test_tls_keys():
    raw = _copy()
    del raw["mqtt"]["ca"]
    assert _error(raw) == "mqtt.ca: required when mqtt.tls is true (the site CA's PEM file on the board)"
    raw["mqtt"]["ca"] = ""
    assert _error(raw) == "mqtt.ca: must be a non-empty string, got ''"
    raw["mqtt"]["ca"] = ["ca.pem"]
    assert _error(raw) == "mqtt.ca: must be a non-empty string, got ['ca.pem']"
    raw["mqtt"]["ca"] = "/ca.pem"
    raw["mqtt"]["server_hostname"] = 5
    assert _error(raw) == "mqtt.server_hostname: must be a non-empty string, got 5"
    raw["mqtt"]["server_hostname"] = "broker.example"
    assert config.validate(raw)["mqtt"]["server_hostname"] == "broker.example"
    raw["mqtt"]["tls"] = "no"
    assert _error(raw) == "mqtt.tls: must be true or false, got 'no'"
    raw["mqtt"]["tls"] = False  # the plain mode, lab bench only: no CA, no server name
    assert _error(raw) == "mqtt.ca: not used when mqtt.tls is false"
    del raw["mqtt"]["ca"]
    assert _error(raw) == "mqtt.server_hostname: not used when mqtt.tls is false"
    del raw["mqtt"]["server_hostname"]
    cfg = config.validate(raw)["mqtt"]
    assert (cfg["tls"], cfg["port"], cfg["ca"]) == (False, 1883, None)


def test_wifi_required_on_boards_only():
    assert _error(_copy(), True) == "wifi: required on this board"
    raw = _copy()
    raw["wifi"] = {"ssid": 5}
    assert _error(raw) == "wifi.ssid: must be a non-empty string, got 5"


def test_modbus_uplink_validates():
    raw = _copy()
    raw["uplink"] = "modbus"
    raw["modbus"] = {"transport": "tcp"}
    assert config.validate(raw)["uplink"] == "modbus"


def test_unreadable_and_invalid_files():
    try:
        config.read("/nonexistent/board.json")
    except config.ConfigError as exc:
        assert str(exc).startswith("cannot read /nonexistent/board.json")
    else:
        raise AssertionError("read a missing file")
    path = "/tmp/qala-bad-config.json"
    with open(path, "w") as f:
        f.write("{not json")
    try:
        config.read(path)
    except config.ConfigError as exc:
        assert str(exc) == path + " is not valid JSON"
    else:
        raise AssertionError("read bad JSON")


def test_reach_finds_what_safe_mode_needs():
    raw = _copy()
    raw["sensors"] = 5
    site, device, mqtt = config.reach(raw)
    assert (site, device, mqtt["host"], mqtt["port"]) == ("lab", "b1", "127.0.0.1", 8883)
    assert config.reach({"site": "lab"}) is None
