"""The one error type of the wire contract.

Every decoder and validator in protocols/ raises ProtocolError, and nothing else, for bad input. The message
names the field (a dotted path such as `r.co2` or `caps.actuators.fan1.max`) and the problem, so that a log
line tells an operator exactly what a board sent wrong.
"""


class ProtocolError(ValueError):
    """Bad input at the wire contract: `field` names where, `problem` says what."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__("%s: %s" % (field, problem) if field else problem)


def describe(value: object) -> str:
    """A short, bounded rendering of a bad value for error messages (never the whole payload)."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return text
