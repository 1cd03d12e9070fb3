"""Control: setpoints from the hub to actuators, acknowledged, limited, audited, fail-safe.

    command.py  the pure life cycle of one command (pending -> sent -> applied | rejected | timed_out)
    limits.py   pure limit checks: type, min/max, rate of change, relay minimum on/off times
    rules.py    pure rule evaluation (threshold + hysteresis + hold time) and daily schedules
    service.py  the I/O: MQTT cmd/ack and Modbus write/read-back transports, audit Readings, rule driving
    api.py      the HTTP API (aiohttp.web) with its OpenAPI document
docs/control.md describes the whole.
"""
