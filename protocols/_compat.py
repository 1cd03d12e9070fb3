"""The only place in protocols/ that knows which interpreter it runs on.

`const` is MicroPython's compile-time constant marker; under CPython it is the identity function.
`IS_MICROPYTHON` lets callers pick cheaper code paths, never different behaviour.
"""

import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const  # type: ignore[import-not-found]
except ImportError:

    def const(value: int) -> int:
        return value


__all__ = ["IS_MICROPYTHON", "const"]
