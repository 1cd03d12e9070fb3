"""The `[ota]` section of hub.toml: where releases are, and a roll-out's defaults.

Declared through hub.sections (SECTION, put into hub.config's DOCUMENT) and built into OtaConfig by `build`,
which also checks what the declarations cannot (waves growing up to 100). docs/hub.md lists every key;
docs/ota.md says what a roll-out does with them. Without the section every key has its default: the
hub answers OTA requests whenever it has the boards' command keys ([trust] store).

Imports hub.sections, hub.errors and hub.ota.rollout (the wave rule); does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.errors import ConfigError
from hub.ota import rollout
from hub.sections import Key, Table


@dataclass(frozen=True)
class OtaConfig:
    releases: Path | None = None
    """The folder of releases, one sub-folder per version (`qala fw release --out`); None: <spool.path>/releases."""
    waves: tuple[float, ...] = rollout.DEFAULT_WAVES
    """A roll-out's waves by default: cumulative percentages of its boards, the last 100."""
    max_failures: float = rollout.DEFAULT_MAX_FAILURES
    """A roll-out halts when more than this share of a wave's offered boards failed (refused, rolled back,
    timed out)."""
    trial: int = 300
    """Seconds a board's new version has to report healthy before the board rolls back."""
    tries: int = 3
    """Resets in a row during a trial after which the board rolls back."""
    board_timeout: int = 3600
    """Seconds from an offer to a board's final state before the hub counts it as timed out."""
    tick: float = 1.0
    """Seconds between two rounds of the roll-outs (time-outs, next waves)."""


SECTION = Table({
    "releases": Key(str, None, note="a folder with one release folder per version (qala fw release --out)"),
    "waves": Key(list, list(rollout.DEFAULT_WAVES), note="cumulative percentages, e.g. [1, 10, 50, 100]"),
    "max_failures": Key(float, rollout.DEFAULT_MAX_FAILURES, 0, 1, note="a share of a wave's boards: 0.1 is 10 %"),
    "trial": Key(int, 300, 10, 86400, unit="seconds"),
    "tries": Key(int, 3, 1, 20),
    "board_timeout": Key(int, 3600, 60, 7 * 86400, unit="seconds"),
    "tick": Key(float, 1.0, 0.05, 60, unit="seconds"),
})


def build(values: dict[str, Any], base: Path | None) -> OtaConfig:
    """OtaConfig from what sections.check returned; a relative `releases` is taken from `base`."""
    try:
        waves = rollout.check_waves(values["waves"])
    except rollout.RolloutError as exc:
        raise ConfigError(f"ota.{exc}") from None
    releases = values["releases"]
    path = None
    if releases is not None:
        path = Path(releases)
        if not path.is_absolute() and base is not None:
            path = base / path
    return OtaConfig(releases=path, waves=tuple(waves), max_failures=values["max_failures"], trial=values["trial"],
                     tries=values["tries"], board_timeout=values["board_timeout"], tick=values["tick"])
