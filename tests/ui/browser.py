"""A real headless browser for the operator page's tests: Debian's `chromium` driven by `chromium-driver`
through selenium (PyPI, the dev extra), each test with a fresh profile in its own temporary folder.

Missing pieces fail the test (never skip it) with what to install. Screenshots go to test-artifacts/ at the
repository root (git ignores it), where CI and people find them after a run.

Imports selenium and pytest; knows nothing of the hub.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
INSTALL = "install the Debian packages 'chromium' and 'chromium-driver' (scripts/setup does)"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # without these the closed network refuses the browser's own background connections, slowly
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1800",
)


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; fails the test naming the packages when either is missing."""
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None:
        pytest.fail(f"chromium not found on PATH: {INSTALL}")
    if driver is None:
        pytest.fail(f"chromedriver not found on PATH: {INSTALL}")
    return chromium, driver


class Page:
    """One browser tab: open a URL, read what a person sees, type, click, keep a screenshot."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        from selenium.webdriver.common.by import By  # noqa: PLC0415 - imported once selenium is known to exist

        self.by = By

    def open(self, url: str) -> None:
        self.driver.get(url)

    def element(self, css: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def elements(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(self.by.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        """The visible text of the first element matching css ('' when there is none or it is hidden)."""
        found = self.elements(css)
        return str(found[0].text) if found else ""

    def visible(self, css: str) -> bool:
        found = self.elements(css)
        return bool(found) and bool(found[0].is_displayed())

    def rows(self, table: str) -> list[list[str]]:
        """The visible text of each cell of each body row of a table (header cells of rows included)."""
        return [[str(c.text) for c in row.find_elements(self.by.CSS_SELECTOR, "th, td")]
                for row in self.elements(f"{table} tbody tr")]

    def type(self, css: str, text: str, *, clear: bool = True) -> None:
        field = self.element(css)
        if clear:
            field.clear()
        field.send_keys(text)

    def click(self, css: str) -> None:
        self.element(css).click()

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """check()'s first truthy result within timeout s; fails naming `what` and the page's text otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):  # an element replaced between finding and reading it
                result = check()
                if result:
                    return result
            if time.monotonic() > deadline:
                body = self.text("body")
                pytest.fail(f"the page did not show {what} within {timeout:g} s; it shows:\n{body}")
            time.sleep(0.1)

    def screenshot(self, name: str) -> Path:
        """Keep what the browser shows as test-artifacts/<name>.png (the whole page); its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.set_window_size(1400, 900)
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        self.driver.set_window_size(1400, max(900, min(height + 40, 6000)))
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        """The browser console's SEVERE messages (a CSP refusal, a script error) since the last call."""
        return [str(e["message"]) for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A headless chromium tab (fresh profile in tmp_path); quit after the test."""
    chromium, driver_path = find_browser()
    try:
        from selenium import webdriver  # noqa: PLC0415 - a missing selenium fails the test with a message
        from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    except ImportError:
        pytest.fail("selenium not importable: it is in the dev extra; scripts/setup installs requirements.lock")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield Page(driver)
    finally:
        driver.quit()
