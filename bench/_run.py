"""The entry point every benchmark shares: Ctrl-C and SIGTERM unwind through the `with` blocks that stop
every process the benchmark started (a shell starts background jobs with SIGINT ignored, so the handler is
installed explicitly)."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(main: Callable[[], int]) -> NoReturn:
    """Run main() and exit with its code; 130 if interrupted."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
