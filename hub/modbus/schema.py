"""Small checkers for parsed TOML tables, shared by profile.py and config.py.

Each checker takes the key path it is looking at and raises SchemaError(path, rule) on bad input, so the
callers turn it into their own error type with a message that starts with the key path. Pure: standard
library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class SchemaError(ValueError):
    """A value at `path` breaks `rule`."""

    def __init__(self, path: str, rule: str) -> None:
        self.path = path
        self.rule = rule
        super().__init__(f"{path}: {rule}")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def table(path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SchemaError(path, f"must be a table, got {type(value).__name__}")
    return value


def known_keys(path: str, value: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    allowed = required + optional
    for key in value:
        if key not in allowed:
            raise SchemaError(join(path, str(key)), f"unknown key (known keys: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise SchemaError(join(path, key), "required")


def string(path: str, value: object, *, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str):
        raise SchemaError(path, f"must be a string, got {type(value).__name__} {value!r}")
    if not value:
        raise SchemaError(path, "must not be empty")
    if choices and value not in choices:
        raise SchemaError(path, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def boolean(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(path, f"must be true or false, got {type(value).__name__} {value!r}")
    return value


def integer(path: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(path, f"must be an integer, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise SchemaError(path, f"must be {lo}..{hi}, got {value}")
    return value


def number(path: str, value: object, lo: float = -math.inf, hi: float = math.inf, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(path, f"must be a number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise SchemaError(path, f"must be finite, got {value!r}")
    if positive and result <= 0:
        raise SchemaError(path, f"must be positive, got {value!r}")
    if not lo <= result <= hi:
        raise SchemaError(path, f"must be {lo:g}..{hi:g}, got {value!r}")
    return result
