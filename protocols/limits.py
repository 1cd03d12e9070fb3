"""Capabilities and actuator limits: the rules for a birth message's `caps`, a board config's actuators and
the hub's device profiles, so that all three agree.

`check_actuator` validates one actuator's limits (kind, min <= failsafe <= max, optional rate and minimum
on/off times); `check_caps` validates a whole `caps` object. Boards import this module only while they
validate their config at boot.
"""

from protocols.errors import ProtocolError, describe
from protocols.fields import closed_object, mapping, number, required, text
from protocols.topics import check_id

MAX_ACTUATORS = 16
MAX_SENSORS = 16
ACTUATOR_KINDS = ("relay", "pwm", "valve")
UPLINKS = ("mqtt", "modbus")
_CAPS_KEYS = ("sensors", "actuators", "uplink", "failsafe_after")
_SENSOR_KEYS = ("driver", "q")
_ACTUATOR_KEYS = ("kind", "unit", "min", "max", "failsafe", "rate", "min_on", "min_off")


def check_caps(value: object, known: dict[str, tuple[str, str, int, int]] | None = None) -> dict[str, object]:
    """Validate a birth message's caps; sensor quantities against `known` (the catalogue) when given."""
    caps = closed_object("caps", value, _CAPS_KEYS)
    sensors = mapping("caps.sensors", caps.get("sensors", {}), MAX_SENSORS)
    for name in sensors:
        where = "caps.sensors." + name
        sensor = closed_object(where, sensors[name], _SENSOR_KEYS)
        check_id(where + ".driver", required(sensor, "driver", where + "."))
        quantities = required(sensor, "q", where + ".")
        if not isinstance(quantities, list):
            raise ProtocolError(where + ".q", "must be a list of quantities")
        for quantity in quantities:
            if known is None:
                check_id(where + ".q", quantity)
            elif quantity not in known:
                raise ProtocolError(where + ".q", "unknown quantity %s" % describe(quantity))
    actuators = mapping("caps.actuators", caps.get("actuators", {}), MAX_ACTUATORS)
    for name in actuators:
        check_actuator(name, actuators[name], "caps.actuators.")
    if "uplink" in caps and caps["uplink"] not in UPLINKS:
        raise ProtocolError("caps.uplink", "must be one of %s" % "|".join(UPLINKS))
    if "failsafe_after" in caps and number("caps.failsafe_after", caps["failsafe_after"]) <= 0:
        raise ProtocolError("caps.failsafe_after", "must be positive seconds")
    return caps


def check_actuator(name: str, spec: object, prefix: str = "") -> dict[str, object]:
    """Validate one actuator's limits: kind, min <= failsafe <= max, optional rate and min on/off times.

    Shared by the birth message, the board config and the hub's device profiles, so that all three agree.
    """
    where = prefix + str(name)
    check_id(where, name)
    spec = closed_object(where, spec, _ACTUATOR_KEYS)
    kind = required(spec, "kind", where + ".")
    if kind not in ACTUATOR_KINDS:
        raise ProtocolError(where + ".kind", "must be one of %s, got %s" % ("|".join(ACTUATOR_KINDS), describe(kind)))
    lo = number(where + ".min", required(spec, "min", where + "."))
    hi = number(where + ".max", required(spec, "max", where + "."))
    if lo > hi:
        raise ProtocolError(where, "min %s is above max %s" % (describe(lo), describe(hi)))
    safe = number(where + ".failsafe", required(spec, "failsafe", where + "."))
    if not lo <= safe <= hi:
        raise ProtocolError(where + ".failsafe", "%s is outside min..max" % describe(safe))
    if "unit" in spec:
        text(where + ".unit", spec["unit"])
    for key in ("rate", "min_on", "min_off"):
        if key in spec and number(where + "." + key, spec[key]) < 0:
            raise ProtocolError(where + "." + key, "must not be negative")
    return spec
