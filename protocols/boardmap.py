"""The Qala board's Modbus register map: the single source for the firmware's server and the hub's profile.

Input registers (FC 04): every catalogue quantity has a fixed slot, an IEEE-754 float32 in two registers,
high word first (ABCD), at address 2 x its position in QUANTITIES below; quiet NaN (0x7FC0 0x0000) for a
quantity the board does not measure (or whose sensor is failing). Health values (uptime, heap_free,
resets, sensor_faults, ...) are catalogue quantities too, so they have slots like any other.
Holding registers (FC 03/16): one float32 ABCD setpoint per actuator, two registers each from address 0,
actuators in the alphabetical order of their names. Coils (FC 01/05/15): coil N is actuator N, 1 when it is
not at its minimum; only relays take coil writes (1 = max, 0 = min).

QUANTITIES is the order of protocols/catalogue.py QUANTITIES, written out because MicroPython dicts do not
keep insertion order and boards drop the catalogue after start-up; tests/firmware/test_boardmap.py checks
both, hub/profiles/qala_board.toml and the table in docs/modbus.md against it. Append only: reordering
moves every address after the change. Imports nothing; MicroPython-safe.
"""

QUANTITIES = (
    "pm1", "pm25", "pm10", "co2", "tvoc", "voc_index", "no2", "o3", "temperature", "humidity", "pressure", "aqi",
    "voltage", "current", "power_active", "power_reactive", "power_apparent", "power_factor", "frequency",
    "energy_import", "energy_export", "water_flow", "water_volume", "gas_volume", "heat_supply_temp",
    "heat_return_temp", "heat_flow", "heat_power", "heat_energy", "uptime", "heap_free", "heap_max_block", "rssi",
    "buffered", "dropped", "resets", "reconnects", "sensor_faults", "setpoint",
    "self_resets", "lagging",
)
ORDER = "ABCD"
INPUT_REGISTERS = 2 * len(QUANTITIES)
"""Input registers 0..INPUT_REGISTERS-1 exist; a read past them answers exception 02."""
REGISTERS_PER_SETPOINT = 2


def input_address(quantity: str) -> int:
    """The address of a quantity's float32 input register pair; ValueError for a quantity not in the map."""
    return 2 * QUANTITIES.index(quantity)


def setpoint_address(index: int) -> int:
    """The holding register address of the setpoint of actuator `index` (alphabetical order of names)."""
    return REGISTERS_PER_SETPOINT * index


def actuator_order(names: list[str]) -> list[str]:
    """Actuator names in map order (sorted), so a board and its hub profile agree whatever the JSON order."""
    return sorted(names)
