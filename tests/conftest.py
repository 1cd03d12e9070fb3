"""Registers the suite's pytest plugins; fixtures live in tests/_plugins, not here.

- tests._plugins.services: real mosquitto, influxd and victoria-metrics (simulators/services.py).
- tests._plugins.trust: a provisioned site store and the broker it configures (issue 13).
- tests._plugins.cluster: a secure three-node RabbitMQ cluster for the session (issue 15).
- tests._plugins.micropython: runs dual modules (MICROPYTHON_HEAP = "...") again inside `micropython`.
- pytester: for testing those plugins.
"""

pytest_plugins = ["pytester", "tests._plugins.services", "tests._plugins.trust", "tests._plugins.cluster",
                  "tests._plugins.micropython"]
