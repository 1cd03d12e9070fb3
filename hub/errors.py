"""Errors the hub's modules share: ConfigError, raised by hub.sections (the one checker of TOML sections) and
by the owners of the sections (hub.config, hub.modbus.config, hub.modbus.profile), so none has to import
another for it.

Imports nothing of the hub.
"""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key path and the rule."""
