"""docs/protocol.md stays true to protocols/: the catalogue table lists exactly the catalogue."""

import re
from pathlib import Path

from protocols import catalogue

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_catalogue_table_matches_code() -> None:
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\w+) \| ([^|]+) \| ([^|]+) \|", DOC.read_text(), re.MULTILINE)
    documented = {name: (domain, unit.strip()) for name, domain, unit, _ in rows}
    assert set(documented) == set(catalogue.QUANTITIES)
    for name, (domain, unit) in documented.items():
        row = catalogue.QUANTITIES[name]
        assert domain == row[0], name
        assert unit == (row[1] or "-"), name
