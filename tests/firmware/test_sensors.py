"""The driver registry (firmware/sensors.py): names are module names, which the running board relies on."""

from firmware import sensors

MICROPYTHON_HEAP = "64k"


def test_every_driver_name_is_its_module_name():
    # firmware.app.Board.sampler imports "firmware.drivers." + the config's driver without the registry
    for name in sensors.DRIVERS:
        assert sensors.DRIVERS[name] == name, name


def test_unknown_driver_is_refused_with_the_ones_there_are():
    try:
        sensors.make("s1", {"driver": "nope"}, None)
    except sensors.UnknownDriverError as exc:
        assert "sensors.s1.driver" in str(exc)
        assert "sim" in str(exc)
    else:
        raise AssertionError("no error")
