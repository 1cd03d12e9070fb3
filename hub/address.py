"""`HOST` or `HOST:PORT` as people type them on a command line, split and checked once for every command.

Imports nothing of the hub; knows nothing of sockets.
"""

from __future__ import annotations


def host_port(text: str, example: str) -> tuple[str, int | None]:
    """(host, port or None, not range-checked); ValueError naming what is wrong. A bare IPv6 address (colons
    of its own) is a host without a port. `example` is shown when the host is missing: "192.168.1.20:502"."""
    host, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        raise ValueError(f"give HOST or HOST:PORT, e.g. {example}")
    if not sep:
        return host, None
    if not port.isdigit():
        raise ValueError("the port must be a number 1..65535")
    return host, int(port)  # its range is the caller's: a config that takes it may check it with the rest
