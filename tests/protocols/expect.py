"""Assertion helpers that work under CPython and MicroPython alike (no pytest in the interpreter)."""

from protocols.errors import ProtocolError


def refused(fn, *args, field=None, contains=None):
    """Call fn(*args); it must raise ProtocolError (and nothing else), optionally naming `field`."""
    try:
        fn(*args)
    except ProtocolError as exc:
        if field is not None:
            assert exc.field == field, "expected field %r, got %r (%s)" % (field, exc.field, exc)
        if contains is not None:
            assert contains in str(exc), "expected %r in %r" % (contains, str(exc))
        return exc
    raise AssertionError("no ProtocolError from %r%r" % (fn, args))


def close(a, b, tol=1e-6):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
