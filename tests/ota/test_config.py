"""The [ota] section of hub.toml (hub.ota.config): defaults without it, paths taken from the file's folder,
and each refusal naming the key and the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError, parse
from hub.ota.config import OtaConfig
from tests.hub.test_config import V1, with_


def test_without_the_section_every_key_has_its_default() -> None:
    assert parse(V1, {}).ota == OtaConfig()


def test_the_section_is_read_and_a_relative_folder_is_the_files() -> None:
    doc = with_(V1, "ota", releases="rel", waves=[5, 100], max_failures=0.25, trial=600, tries=2,
                board_timeout=7200, tick=0.5)
    ota = parse(doc, {}, base=Path("/etc/qala")).ota
    assert ota == OtaConfig(Path("/etc/qala/rel"), (5.0, 100.0), 0.25, 600, 2, 7200, 0.5)


@pytest.mark.parametrize(("values", "says"), [
    ({"waves": [10, 50]}, "ota.waves: the last wave must be 100"),
    ({"waves": [50, 10, 100]}, "ota.waves: each share in (0, 100], growing"),
    ({"waves": "1,100"}, "ota.waves: must be an array"),
    ({"max_failures": 1.5}, "ota.max_failures: must be 0..1, got 1.5"),
    ({"trial": 5}, "ota.trial: must be 10..86400 seconds, got 5"),
    ({"tries": 0}, "ota.tries: must be 1..20, got 0"),
    ({"board_timeout": 10}, "ota.board_timeout: must be 60..604800 seconds"),
    ({"release": "x"}, "ota.release: unknown key (did you mean releases?"),
])
def test_refusals_name_the_key(values: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_(V1, "ota", **values), {})
    assert str(info.value).startswith(says), str(info.value)
