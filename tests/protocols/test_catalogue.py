"""Measurement catalogue: required quantities, units, ranges, range flags. Runs under both interpreters."""

from expect import refused

from protocols import catalogue, catalogue_text, telemetry

MICROPYTHON_HEAP = "64k"

REQUIRED = {
    "air": ("pm1", "pm25", "pm10", "co2", "tvoc", "no2", "o3", "temperature", "humidity", "pressure"),
    "energy": ("voltage", "current", "power_active", "power_reactive", "power_apparent", "power_factor",
               "frequency", "energy_import", "energy_export"),
    "water": ("water_flow", "water_volume"),
    "gas": ("gas_volume",),
    "heat": ("heat_supply_temp", "heat_return_temp", "heat_flow", "heat_power", "heat_energy"),
    "device": ("uptime", "heap_free", "rssi", "buffered", "resets"),
}


def test_required_quantities_present_with_unit_and_range():
    for domain in REQUIRED:
        for quantity in REQUIRED[domain]:
            row = catalogue.info(quantity)
            assert row[0] == domain, quantity
            assert isinstance(row[1], str), quantity
            assert row[2] < row[3], quantity


def test_every_row_well_formed():
    for quantity in catalogue.QUANTITIES:
        domain, unit, lo, hi = catalogue.QUANTITIES[quantity]
        assert domain in catalogue.DOMAINS
        assert isinstance(unit, str)
        assert lo < hi
        # whole numbers: a board holds no float objects for the ranges
        assert isinstance(lo, int), quantity
        assert isinstance(hi, int), quantity
        assert len(quantity) <= 32
    for quantity in catalogue.COUNTERS:
        assert quantity in catalogue.QUANTITIES


def test_descriptions_and_quality_copies_match():
    assert sorted(catalogue_text.DESCRIPTIONS) == sorted(catalogue.QUANTITIES)
    for quantity in catalogue_text.DESCRIPTIONS:
        assert catalogue_text.DESCRIPTIONS[quantity]
    assert telemetry.QUALITIES == catalogue.QUALITIES
    assert telemetry.OK == catalogue.OK


def test_out_of_range_is_flagged_not_dropped():
    assert catalogue.check("co2", 420.0) == catalogue.OK
    assert catalogue.check("co2", 50000.0) == catalogue.RANGE
    assert catalogue.check("temperature", -80.0) == catalogue.RANGE
    assert catalogue.check("co2", 50000.0, catalogue.WARMUP) == catalogue.WARMUP
    assert catalogue.in_range("humidity", 100.0)


def test_unknown_quantity_refused():
    refused(catalogue.info, "pm2.5", field="quantity", contains="unknown quantity")
    refused(catalogue.unit, None, field="quantity")
    refused(catalogue.by_domain, "sewage", field="domain")


def test_units_and_domains():
    assert catalogue.unit("pm25") == "ug/m3"
    assert catalogue.unit("co2") == "ppm"
    assert catalogue.domain("heat_power") == "heat"
    assert "gas_volume" in catalogue.by_domain("gas")
