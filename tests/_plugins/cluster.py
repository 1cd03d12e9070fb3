"""Pytest fixture for issue 15's RabbitMQ cluster (simulators/rabbitmq.py), secure like the `mosquitto` fixture.

- rabbit_cluster: one three-node cluster for the whole session (it takes about 20 s to start on two cores),
  stopped at the end of the session. Secure: TLS-only MQTT and AMQP listeners with the broker certificate of
  a store of its own (`.store`: site CLUSTER_SITE, hubs `main` and CLUSTER_HUBS, boards CLUSTER_BOARDS), the
  store's users and topic permissions (hub.trust.rabbit), no guest, no anonymous client. Tests share it: use
  queue names and boards of your own, and restart a node you killed (`cluster.restart(i)`).

A missing rabbitmq-server fails the test with ServiceUnavailable's message (which names the Debian package),
as for mosquitto (tests/_plugins/services.py): the suite never skips because a server is not installed.

Imports simulators.rabbitmq and the trust fixtures' provision_site; knows nothing of what the tests send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simulators.rabbitmq import RabbitCluster
from simulators.services import ServiceError, ServiceUnavailable
from tests._plugins.trust import provision_site

if TYPE_CHECKING:
    from collections.abc import Iterator

CLUSTER_SITE = "city"
CLUSTER_BOARDS = tuple(f"c{i:02d}" for i in range(1, 13))
CLUSTER_HUBS = ("h2", "h3")


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A started, secure three-node RabbitMQ cluster for the session; `.store` is its provisioning store."""
    root = tmp_path_factory.mktemp("rabbit-cluster")
    store = provision_site(root / "store", CLUSTER_BOARDS, CLUSTER_SITE, hubs=CLUSTER_HUBS)
    cluster = RabbitCluster(root / "cluster", store=store)
    try:
        cluster.start()
    except (ServiceUnavailable, ServiceError) as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
