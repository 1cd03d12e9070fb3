"""`HOST` or `HOST:PORT` as people type them on a command line, split and checked once for every command.

Imports nothing of the hub; knows nothing of sockets.
"""

from __future__ import annotations

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%")


def host_problem(host: str) -> str | None:
    """Why `host` is no host name or IP address (a typo: a space, a comma, a slash), or None. Lenient on
    purpose (underscores, as container names have them, pass); the resolver judges the rest."""
    if not host or len(host) > 253:
        return f"a host name has 1..253 characters, this one {len(host)}"
    bad = sorted({c for c in host if c not in _HOST_CHARS})
    if bad:
        return f"the host {host!r} has characters no host name or address has: {''.join(bad)!r}"
    return None


def host_port(text: str, example: str) -> tuple[str, int | None]:
    """(host, port or None, not range-checked); ValueError naming what is wrong. A bare IPv6 address (colons
    of its own) is a host without a port; with a port it goes in brackets, `[::1]:1883`, returned without
    them. `example` is shown when the host is missing: "192.168.1.20:502"."""
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not inside or rest[:1] not in ("", ":"):
            port = example.rpartition(":")[2]
            raise ValueError(f"an IPv6 address goes in brackets before the port, e.g. [::1]:{port}")
        host, sep, port = inside, rest[:1], rest[1:]
    else:
        host, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        raise ValueError(f"give HOST or HOST:PORT, e.g. {example}")
    problem = host_problem(host)
    if problem is not None:
        raise ValueError(problem)
    if not sep:
        return host, None
    if not port.isdigit():
        raise ValueError("the port must be a number 1..65535")
    return host, int(port)  # its range is the caller's: a config that takes it may check it with the rest
