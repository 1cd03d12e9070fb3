"""Level-gated console logger: the only module of the firmware that prints.

Lines look like `qala W mqtt: connect failed: ...`: a level letter (D I W E), then the message. `%` arguments
are formatted only when the level is enabled, so a debug call costs no string on a quiet board.
"""

DEBUG = 10
INFO = 20
WARN = 30
ERROR = 40
LEVELS = {"debug": DEBUG, "info": INFO, "warn": WARN, "error": ERROR}

level = INFO


def log(lvl, msg, args=()):
    if lvl < level:
        return
    try:
        if args:
            try:
                msg = msg % args
            except (TypeError, ValueError):
                msg = "%s %r" % (msg, args)
        print("qala", "DIWE"[lvl // 10 - 1], msg)
    except MemoryError:  # a full heap must not turn a log line into a dead task: the template alone
        print("qala", "DIWE"[lvl // 10 - 1], msg)


def debug(msg, *args):
    log(DEBUG, msg, args)


def info(msg, *args):
    log(INFO, msg, args)


def warn(msg, *args):
    log(WARN, msg, args)


def error(msg, *args):
    log(ERROR, msg, args)


def why(exc):
    """A one-line reason for an exception: `OSError: [Errno 111] ECONNREFUSED`."""
    text = str(exc)
    name = type(exc).__name__
    return "%s: %s" % (name, text) if text else name
