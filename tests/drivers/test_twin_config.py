"""The board config validates `options.twin` (the unix-port twin's fault switches) like every other key."""

from firmware.config import ConfigError, validate

MICROPYTHON_HEAP = "128k"  # the config validator loads the catalogue: more than 64k with the test itself


def test_config_validates_twin_faults():
    def cfg(twin):
        sensor = {"driver": "pzem004t", "interval": 1, "quantities": ["voltage"], "options": {"twin": twin}}
        return {"site": "s", "device": "d", "mqtt": {"host": "h", "tls": False}, "sensors": {"m": sensor}}

    assert validate(cfg({"silent": True, "bad_checksum": 3}))["sensors"]["m"]["options"]["twin"]["bad_checksum"] == 3
    for twin, text in (({"smoke": True}, "unknown key 'smoke'"), ({"silent": "yes"}, "must be an integer")):
        try:
            validate(cfg(twin))
        except ConfigError as exc:
            assert "sensors.m.options.twin" in str(exc), exc
            assert text in str(exc), exc
            continue
        raise AssertionError("accepted %r" % twin)
