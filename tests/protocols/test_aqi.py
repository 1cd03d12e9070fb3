"""US EPA AQI (2024 breakpoints). Runs under both interpreters."""

from expect import refused

from protocols import aqi

MICROPYTHON_HEAP = "64k"


def test_band_edges_pm25():
    assert aqi.aqi(pm25=0.0) == 0
    assert aqi.aqi(pm25=9.0) == 50
    assert aqi.aqi(pm25=9.1) == 51
    assert aqi.aqi(pm25=35.4) == 100
    assert aqi.aqi(pm25=35.5) == 101
    assert aqi.aqi(pm25=55.4) == 150
    assert aqi.aqi(pm25=125.4) == 200
    assert aqi.aqi(pm25=225.4) == 300
    assert aqi.aqi(pm25=325.4) == 500


def test_truncation_and_interpolation():
    # 12.0 ug/m3: (100-51)/(35.4-9.1)*(12.0-9.1)+51 = 56.4 -> 56
    assert aqi.aqi(pm25=12.0) == 56
    # 9.05 truncates to 9.0: still "good"
    assert aqi.aqi(pm25=9.05) == 50
    # PM10 truncates to whole ug/m3: 54.9 -> 54 -> 50
    assert aqi.aqi(pm10=54.9) == 50
    assert aqi.aqi(pm10=155) == 101


def test_max_of_subindices_and_beyond_the_index():
    assert aqi.aqi(pm25=12.0, pm10=155) == 101
    assert aqi.aqi(pm25=900.0) == 500
    assert aqi.aqi(pm10=5000) == 500


def test_categories():
    assert aqi.category(50) == "good"
    assert aqi.category(51) == "moderate"
    assert aqi.category(500) == "hazardous"


def test_bad_input_refused():
    refused(aqi.aqi, field="aqi")
    refused(aqi.aqi, -1.0, field="pm25", contains="negative")
    refused(aqi.aqi, float("nan"), field="pm25")
    refused(aqi.aqi, None, "12", field="pm10")
