"""Pytest fixtures that start the real servers from simulators/services.py.

Fixtures:
- mosquitto: a broker of its own for each test (tmp_path), stopped afterwards: the site's provisioned broker
  (TLS, passwords, ACL, client ids tied to users) configured from the session's store (tests/_plugins/
  trust.py: `test_store`; clients log in with `login`).
- plain_mosquitto: a plain broker (one loopback listener, anonymous clients): only for tests of the plain
  mode or of the broker itself, which say why.
- mosquitto_factory / influxd_factory: start more servers (extra config, crash and outage tests); all
  of them are stopped after the test. mosquitto_factory's brokers are provisioned like `mosquitto` unless
  given `plain=True` (or a `store=` of their own).
- influxd: one influxd for the session; influxd_database: a new, unique database in it for each test.
- victoria_metrics: one victoria-metrics for the session; tests use unique measurement names.

A missing binary fails the test with ServiceUnavailable's message (which names the Debian package): the
suite never skips because a server is not installed. Tests that stop a session server must restart it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pytest

from simulators.services import Influxd, Mosquitto, Service, ServiceError, ServiceUnavailable, VictoriaMetrics

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from hub.trust.store import TrustStore

S = TypeVar("S", bound=Service)


def start_or_fail(service: S) -> S:
    """service.start(), turning a missing binary or a failed start into a test failure with a clear text."""
    try:
        return service.start()
    except (ServiceUnavailable, ServiceError) as exc:
        pytest.fail(str(exc), pytrace=False)


@contextlib.contextmanager
def running(service: S) -> Iterator[S]:
    """Start service (or fail the test), yield it, and stop it afterwards."""
    start_or_fail(service)
    try:
        yield service
    finally:
        service.stop()


class ServiceFactory(Generic[S]):
    """Creates services of one kind, each in its own folder under root; close() stops them all.

    `defaults` are constructor options every service gets unless the call gives its own."""

    def __init__(self, kind: type[S], root: Path, **defaults: Any) -> None:
        self.kind = kind
        self.root = root
        self.defaults = defaults
        self.services: list[S] = []

    def __call__(self, *, start: bool = True, plain: bool = False, **options: Any) -> S:
        """A new service (started unless start=False); options go to its constructor (port, extra_config...).
        plain=True: none of the defaults (a plain broker)."""
        workdir = self.root / f"{self.kind.name}-{len(self.services)}"
        service = self.kind(workdir, **({} if plain else self.defaults) | options)
        self.services.append(service)
        return start_or_fail(service) if start else service

    def close(self) -> None:
        """Stop every service created here."""
        for service in self.services:
            service.stop()


@pytest.fixture
def mosquitto(tmp_path: Path, test_store: TrustStore) -> Iterator[Mosquitto]:
    """A started provisioned broker (the session store's policy, Qala's site config) in tmp_path/mosquitto."""
    with running(Mosquitto(tmp_path / "mosquitto", store=test_store.root)) as broker:
        yield broker


@pytest.fixture
def plain_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started plain broker (anonymous, no TLS): for tests of the plain mode or of the broker itself."""
    with running(Mosquitto(tmp_path / "plain-mosquitto")) as broker:
        yield broker


@pytest.fixture
def mosquitto_factory(tmp_path: Path, test_store: TrustStore) -> Iterator[ServiceFactory[Mosquitto]]:
    """mosquitto_factory(extra_config=[...], port=..., start=True, plain=False) -> Mosquitto (provisioned
    from the session store unless plain=True or store= is given); all stopped afterwards."""
    factory = ServiceFactory(Mosquitto, tmp_path, store=test_store.root)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def influxd_factory(tmp_path: Path) -> Iterator[ServiceFactory[Influxd]]:
    """influxd_factory(settings={...}, start=True) -> Influxd of the test's own; all stopped afterwards."""
    factory = ServiceFactory(Influxd, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """One influxd for the whole session. Use influxd_database (or unique names) to keep tests apart."""
    with running(Influxd(tmp_path_factory.mktemp("influxd"))) as server:
        yield server


_database_numbers = itertools.count()


@pytest.fixture
def influxd_database(influxd: Influxd, request: pytest.FixtureRequest) -> str:
    """The name of a new database in the session influxd, unique to this test."""
    stem = re.sub(r"\W+", "_", request.node.name)[:40].strip("_")
    name = f"t{next(_database_numbers)}_{stem}"
    influxd.create_database(name)
    return name


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """One victoria-metrics for the whole session. Tests write measurements with unique names."""
    with running(VictoriaMetrics(tmp_path_factory.mktemp("victoria-metrics"))) as server:
        yield server
