"""Fixtures of the operator page's tests: a headless chromium tab (`page`) and hub processes killed afterwards."""

from tests.hub.conftest import hub_processes  # noqa: F401 - a fixture: HubProcess objects killed after the test
from tests.ui.browser import page  # noqa: F401 - a fixture: a headless chromium tab
