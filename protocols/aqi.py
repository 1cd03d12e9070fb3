"""US EPA Air Quality Index from PM2.5 and PM10 concentrations.

Breakpoints are those of the EPA's Technical Assistance Document for the Reporting of Daily Air Quality
(EPA-454/B-24-002, May 2024), which lowered the PM2.5 "good" band to 9.0 ug/m3 and merged the two top
PM2.5 bands into 301-500. Concentrations are truncated as the EPA prescribes (PM2.5 to 0.1 ug/m3, PM10 to
1 ug/m3) and the index is I = (Ihi - Ilo) / (Chi - Clo) * (C - Clo) + Ilo, rounded to the nearest integer.
Officially the AQI uses 24-hour averages; Qala computes it from whatever averaging the caller passes and
says so on the dashboards ("NowCast-style, from the last readings"). Above the top breakpoint the index is
reported as 500 ("beyond the AQI").
"""

import math

from protocols.errors import ProtocolError, describe

# (C_lo, C_hi, I_lo, I_hi)
PM25_BREAKPOINTS = (
    (0.0, 9.0, 0, 50),
    (9.1, 35.4, 51, 100),
    (35.5, 55.4, 101, 150),
    (55.5, 125.4, 151, 200),
    (125.5, 225.4, 201, 300),
    (225.5, 325.4, 301, 500),
)
PM10_BREAKPOINTS = (
    (0, 54, 0, 50),
    (55, 154, 51, 100),
    (155, 254, 101, 150),
    (255, 354, 151, 200),
    (355, 424, 201, 300),
    (425, 504, 301, 400),
    (505, 604, 401, 500),
)
CATEGORIES = (
    (50, "good"),
    (100, "moderate"),
    (150, "unhealthy for sensitive groups"),
    (200, "unhealthy"),
    (300, "very unhealthy"),
    (500, "hazardous"),
)
AQI_MAX = 500


def _index(concentration: float, table: tuple[tuple[float, float, int, int], ...]) -> int:
    for c_lo, c_hi, i_lo, i_hi in table:
        if concentration <= c_hi:
            # a truncated value can only fall into a table gap (e.g. 9.05 -> 9.0 is in, never 9.05): clamp up
            concentration = max(concentration, c_lo)
            return int((i_hi - i_lo) / (c_hi - c_lo) * (concentration - c_lo) + i_lo + 0.5)
    return AQI_MAX


def _concentration(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(field, "must be a number, got %s" % describe(value))
    if math.isnan(value) or math.isinf(value):
        raise ProtocolError(field, "must be finite, got %s" % describe(value))
    if value < 0:
        raise ProtocolError(field, "concentration cannot be negative: %s" % describe(value))
    return float(value)


def pm25_index(pm25: float) -> int:
    c = _concentration("pm25", pm25)
    return _index(int(c * 10 + 1e-9) / 10, PM25_BREAKPOINTS)


def pm10_index(pm10: float) -> int:
    c = _concentration("pm10", pm10)
    return _index(float(int(c)), PM10_BREAKPOINTS)


def aqi(pm25: float | None = None, pm10: float | None = None) -> int:
    """The AQI: the larger of the PM2.5 and PM10 sub-indices among those given."""
    if pm25 is None and pm10 is None:
        raise ProtocolError("aqi", "needs pm25 or pm10")
    best = 0
    if pm25 is not None:
        best = pm25_index(pm25)
    if pm10 is not None:
        best = max(best, pm10_index(pm10))
    return best


def category(index: int) -> str:
    """The EPA's name for an AQI value, e.g. 'moderate' for 51-100."""
    for upper, name in CATEGORIES:
        if index <= upper:
            return name
    return CATEGORIES[-1][1]
