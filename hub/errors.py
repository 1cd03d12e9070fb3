"""Errors the hub's modules share: ConfigError, raised by hub.config and by the sections it hands to other
modules (hub.modbus.config), so neither has to import the other for it.

Imports nothing of the hub.
"""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key path and the rule."""
