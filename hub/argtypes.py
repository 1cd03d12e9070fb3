"""argparse `type=` functions for the values people type on a `qala` command line, shared by every command.

Each returns the value or raises argparse.ArgumentTypeError saying the rule and what was typed; argparse
then prints `qala ...: error: argument --OPTION: <rule>` and exits 2, so every option names itself the same
way (tests/test_cli_sweep.py). An empty string is refused instead of meaning "the default", and numbers are
finite: `nan`, `inf` and `1e999` are not numbers of seconds or boards.

Imports nothing of the hub; protocols.topics for the id rule.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    from collections.abc import Callable

YEAR = 366 * 24 * 3600  # the default upper bound of a number of seconds: larger ones overflow the clocks


def text(value: str) -> str:
    """Any text but the empty one (a path, a name, an address)."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def whole(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """A whole number in lo..hi (no upper bound if hi is None)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if hi is None and number < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {number}")
        if hi is not None and not lo <= number <= hi:
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}, got {number}")
        return number

    return parse


def positive(value: str) -> float:
    """A finite number above 0 (a rate, a size)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number


def share(value: str) -> float:
    """A share 0..1 (0.1: 10 %)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share 0..1 (0.1: 10 %), got {value!r}") from None
    if not (math.isfinite(number) and 0 <= number <= 1):
        raise argparse.ArgumentTypeError(f"must be a share 0..1 (0.1: 10 %), got {value}")
    return number


def seconds(most: float = YEAR) -> Callable[[str], float]:
    """A number of seconds above 0 and at most `most`."""

    def parse(value: str) -> float:
        number = positive(value)
        if number > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:g} seconds, got {value}")
        return number

    return parse


positive_int = whole(1)
port = whole(1, 65535)


def identifier(value: str) -> str:
    """An id by the rules of docs/protocol.md (1-32 of A-Z a-z 0-9 _ -): a device, a district."""
    try:
        return check_id("id", value)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def degrees(bound: float) -> Callable[[str], float]:
    """A finite number of degrees in -bound..bound (a latitude: 90, a longitude: 180)."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of degrees, got {value!r}") from None
        if not (math.isfinite(number) and -bound <= number <= bound):
            raise argparse.ArgumentTypeError(f"must be -{bound:g}..{bound:g} degrees, got {value}")
        return number

    return parse
