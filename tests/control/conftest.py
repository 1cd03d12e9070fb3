"""Fixtures the control tests share with the hub tests."""

from tests.hub.conftest import hub_processes  # noqa: F401 - a fixture: HubProcess objects killed after the test
