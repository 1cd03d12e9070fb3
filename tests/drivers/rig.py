"""Shared by the driver tests (dual modules): a settable clock and a check that a read is a sensor fault."""


class Clock:
    def __init__(self, ms=0):
        self.ms = ms

    def __call__(self):
        return self.ms


def fault(driver):
    """driver.read() must raise OSError (the app's sensor fault) after its bounded retries; returns the text."""
    before = driver.errors
    try:
        driver.read()
    except OSError as exc:
        assert driver.errors - before == driver.retries + 1, (driver.errors, before)
        return str(exc)
    raise AssertionError("no OSError from %s" % driver.name)


def qualities(readings):
    return [r[2] if len(r) > 2 else "ok" for r in readings]
