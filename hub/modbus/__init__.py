"""The hub's Modbus side: device profiles, bus arbiters, the poller, and `qala modbus probe`.

Layers, each in its own module (pure ones first): profile (TOML profiles -> frozen dataclasses), config
(the `[modbus]` part of hub.toml), plan (merging registers into reads, decoding reads into values), probe
(ranking byte-order/offset interpretations), bus (one arbiter per physical bus, the only module that talks
to pymodbus), poller (per-device schedules, retries, offline back-off, quality flags) and cli.
"""
