"""The operator page (hub/ui) in a real headless chromium against a real hub process (secure mode: the
session store's TLS broker, influxd), checked by what a person sees on it.

- Served by the hub's API without a token: GET / redirects to /ui/, the files carry a strict
  Content-Security-Policy (only this origin's own script, no inline code) and nosniff, nothing is fetched
  from elsewhere, and loading them does not count as wrong tokens for the API's throttle. In the browser: the
  token prompt; a wrong token shows the API's 401 text; the read token shows the devices table; its
  setpoint is refused with the API's 403 text; the token lives in sessionStorage only, never in the URL.
- The whole page with districts and alerts (needs the alerts, districts and detectors of issue 17): two
  boards provisioned with a district (`qala provision board --district`), one real firmware board with a
  fan, one publisher sending a pm25 far outside its range; the district's coverage row, the out_of_range
  alert, its Acknowledge refused for the read token (403 text) and done with the control token, the devices
  with their district and last values, and a setpoint applied by the board.

Each test keeps a screenshot in test-artifacts/ (its path is printed; `pytest -s` shows it).
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from hub.control.api import UI_FILES, UI_FOLDER
from protocols import payloads, topics
from simulators.services import free_port
from tests._plugins.trust import OBSERVERS, SITE, provision_site
from tests.control.live import ACTUATORS
from tests.firmware.boards import Board, board_config
from tests.hub.conftest import REPO, HubProcess, Publisher, v1_table, wait_until, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Influxd, Mosquitto
    from tests._plugins.services import ServiceFactory
    from tests.ui.browser import Page

pytestmark = [pytest.mark.integration]

READ = "ui-read-token-0123456789"
CONTROL = "ui-control-token-0123456789"
FAN_CAPS: dict[str, object] = {"actuators": {"fan1": {"kind": "pwm", "unit": "%", "min": 0, "max": 100,
                                                      "failsafe": 20}}, "failsafe_after": 5}
READ_403 = "this token has the read role: POST /v1/setpoints needs the control role (api.control_token)"


def request(port: int, path: str, token: str | None = None, method: str = "GET",
            body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def api_json(port: int, path: str, token: str = READ) -> tuple[int, Any]:
    try:
        status, _, body = request(port, path, token)
    except OSError:
        return 0, None
    return status, json.loads(body) if body else None


def start_hub(tmp: Path, broker: Mosquitto, influxd: Influxd, database: str, procs: list[HubProcess]) -> tuple[
        int, HubProcess]:
    """A hub process with both API tokens on a free port: (port, hub)."""
    port = free_port()
    path = write_config(tmp, broker, v1_table(influxd, database),
                        api={"control_token": CONTROL, "read_token": READ, "port": port})
    hub = HubProcess(path)
    procs.append(hub)
    hub.start()
    return port, hub


def wait_for_device(port: int, hub: HubProcess, device: str) -> dict[str, Any]:
    """The device as GET /v1/devices lists it, once it does (fails with the hub's log otherwise)."""
    found: dict[str, Any] = {}

    def listed() -> bool:
        assert hub.alive(), f"the hub exited:\n{hub.log()[-3000:]}"
        status, body = api_json(port, "/v1/devices")
        for d in body["devices"] if status == 200 else ():
            if d["device"] == device:
                found.update(d)
                return True
        return False
    wait_until(listed, 60, what=f"{device} in GET /v1/devices")
    return found


def check_static_files(port: int) -> None:
    """The page's files: no token, strict CSP, nosniff, nothing from elsewhere, no inline code."""
    status, headers, _ = request(port, "/")
    assert (status, headers.get("Location")) == (302, "/ui/")
    for path, name in [("/ui/", "index.html"), *((f"/ui/{n}", n) for n in UI_FILES)]:
        status, headers, body = request(port, path)
        assert status == 200, (path, body)
        assert headers["Content-Type"].startswith(UI_FILES[name]), headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "unsafe" not in csp
        assert body == (UI_FOLDER / name).read_bytes()
        text = body.decode()
        assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9]", text.replace("http://www.w3.org/2000/svg", "")), (
            f"{name} refers to another site: the page must ship everything it needs")
    html = (UI_FOLDER / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script: the CSP refuses it"
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler: the CSP refuses it"
    status, headers, body = request(port, "/ui/nothing.js")
    assert status == 404
    assert "no such file of the operator page" in json.loads(body)["error"]
    # static files never count as wrong tokens: many loads, then a right token is answered at once
    for _ in range(30):
        assert request(port, "/ui/", token="not-a-token")[0] == 200
    started = time.monotonic()
    assert api_json(port, "/v1/devices")[0] == 200
    assert time.monotonic() - started < 1


def sign_in(page: Page, token: str) -> None:
    page.wait(lambda: page.visible("#token"), 10, "the token prompt")
    page.type("#token", token + "\n")


def keep_screenshot(page: Page, name: str) -> None:
    path = page.screenshot(name)
    print(f"screenshot: {path.relative_to(REPO)}")


def no_script_errors(page: Page) -> None:
    """Nothing refused by the CSP and no script error (refused API calls are logged too: those are fine)."""
    errors = [e for e in page.console_errors() if "Failed to load resource" not in e]
    assert errors == []


def test_the_page_loads_without_a_token_and_shows_the_api_refusals(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str,
    hub_processes: list[HubProcess], page: Page,
) -> None:
    port, hub = start_hub(tmp_path, mosquitto, influxd, influxd_database, hub_processes)
    publisher = Publisher(mosquitto)
    publisher.publish(topics.build(SITE, "dev-0001", topics.STATUS),
                      payloads.encode_status("online", int(time.time() * 1000), 1, "1.0.0", FAN_CAPS), retain=True)
    wait_for_device(port, hub, "dev-0001")
    check_static_files(port)
    assert "wrong token" not in hub.log()

    page.open(f"http://127.0.0.1:{port}/")
    assert page.driver.current_url == f"http://127.0.0.1:{port}/ui/"
    page.wait(lambda: page.visible("#token"), 10, "the token prompt")
    assert page.text("label[for=token]") == "Token"
    assert not page.visible("#board")

    sign_in(page, "a-wrong-token-0123456789")
    page.wait(lambda: page.text("#login-error") == "wrong token", 15, "the 401 text 'wrong token'")
    assert not page.visible("#board")

    sign_in(page, READ)
    rows = page.wait(lambda: [r for r in page.rows("#devices") if r[0] == "dev-0001"], 15,
                     "dev-0001 in the devices table")
    assert "fan1" in rows[0][-1]
    assert page.visible("#token") is False
    assert READ not in page.driver.current_url
    assert page.driver.execute_script("return sessionStorage.getItem('qala.token')") == READ
    assert page.driver.execute_script("return localStorage.length") == 0

    page.type("#sp-device", "dev-0001")
    page.type("#sp-actuator", "fan1")
    page.type("#sp-value", "50\n")
    page.wait(lambda: page.text("#setpoint-result") == f"Refused: {READ_403}", 15, "the setpoint's 403 text")
    keep_screenshot(page, "operator-page-read-token")
    no_script_errors(page)

    page.click("#signout")
    page.wait(lambda: page.visible("#token"), 10, "the token prompt again")
    assert page.driver.execute_script("return sessionStorage.getItem('qala.token')") is None
    publisher.client.disconnect()


def provision_with_district(root: Path, device: str, district: str, lat: float, lon: float) -> None:
    """`qala provision board DEVICE --district ... --lat ... --lon ...` into the store at root."""
    done = subprocess.run(
        [sys.executable, "-m", "hub", "provision", "board", device, "--store", str(root), "--no-wifi",
         "--district", district, "--lat", str(lat), "--lon", str(lon), "--out", str(root.parent / f"{device}.json")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def open_alerts(port: int, token: str = READ) -> list[dict[str, Any]]:
    status, body = api_json(port, "/v1/alerts?state=open", token)
    assert status == 200, f"GET /v1/alerts?state=open answered {status}: {body}"
    return list(body["alerts"])


@pytest.mark.micropython
@pytest.mark.slow
def test_districts_alerts_devices_and_a_setpoint_as_an_operator_sees_them(
    tmp_path: Path, mosquitto_factory: ServiceFactory[Mosquitto], influxd: Influxd, influxd_database: str,
    hub_processes: list[HubProcess], page: Page,
) -> None:
    root = tmp_path / "store"
    provision_site(root, devices=(), hubs=OBSERVERS[:4])
    provision_with_district(root, "t1", "esil", 51.128, 71.430)
    provision_with_district(root, "dev-0002", "esil", 51.131, 71.441)
    broker = mosquitto_factory(store=root)
    port, hub = start_hub(tmp_path, broker, influxd, influxd_database, hub_processes)
    cfg = board_config(broker, "t1", actuators=ACTUATORS)
    cfg["sensors"] = {"air1": {"driver": "sim", "interval": 1, "quantities": ["pm25"]}}
    board = Board(tmp_path / "board", cfg).start()
    try:
        run_the_operator_page(page, port, hub, broker)
    finally:
        board.stop()


def acknowledge(page: Page) -> None:
    """Click the Acknowledge button of dev-0002's out_of_range alert (again if a refresh replaced the row)."""
    def click() -> bool:
        for row in page.elements("#alerts tbody tr"):
            cells = [c.text for c in row.find_elements(page.by.CSS_SELECTOR, "td")]
            if cells[1:3] == ["out_of_range", "dev-0002"]:
                row.find_element(page.by.CSS_SELECTOR, "button").click()
                return True
        return False
    page.wait(click, 10, "an Acknowledge button for dev-0002's out_of_range alert")


def run_the_operator_page(page: Page, port: int, hub: HubProcess, broker: Mosquitto) -> None:
    wait_for_device(port, hub, "t1")
    publisher = Publisher(broker)
    publisher.publish(topics.build(SITE, "dev-0002", topics.STATUS), payloads.encode_status(
        "online", int(time.time() * 1000), 1, "1.0.0", {"sensors": {"air1": {"driver": "sim", "q": ["pm25"]}}}),
        retain=True)
    seq = 0

    def out_of_range_alert() -> bool:
        nonlocal seq
        seq += 1
        publisher.telemetry("dev-0002", seq, int(time.time() * 1000), 5000.0)  # pm25's range is 0..1000
        assert hub.alive(), f"the hub exited:\n{hub.log()[-3000:]}"
        return any(a["kind"] == "out_of_range" and a["device"] == "dev-0002" for a in open_alerts(port))
    wait_until(out_of_range_alert, 90, interval=1, what="an out_of_range alert for dev-0002 in GET /v1/alerts")
    try:
        operate(page, port)
    finally:
        publisher.client.disconnect()


def operate(page: Page, port: int) -> None:
    """What an operator does on the page once the hub has t1 (fan1, pm25) and dev-0002's open alert, both in
    district esil, and what they see."""
    page.open(f"http://127.0.0.1:{port}/")
    sign_in(page, READ)
    esil = page.wait(lambda: [r for r in page.rows("#districts") if r[0] == "esil"], 20, "district esil")[0]
    assert int(esil[1]) == 2, esil  # expected: t1 and dev-0002
    assert esil[4].endswith("%"), esil
    assert int(esil[6]) >= 1, esil  # open alerts
    assert esil[5] == "\u2014" or int(esil[5]) < 100, esil  # the AQI: dev-0002's implausible 5000 ug/m3 is not air

    def alert_row() -> list[str] | None:
        for row in page.rows("#alerts"):
            if row[1] == "out_of_range" and row[2] == "dev-0002":
                return row
        return None
    row = page.wait(alert_row, 20, "the out_of_range alert of dev-0002")
    assert (row[3], row[4], row[-2], row[-1]) == ("pm25", "esil", "firing", "Acknowledge"), row
    acknowledge(page)
    page.wait(lambda: "needs the control role" in page.text("#message"), 15, "the acknowledge's 403 text")
    assert "Cannot acknowledge alert a-" in page.text("#message")

    devices = page.wait(lambda: {r[0]: r for r in page.rows("#devices") if r[0] in ("t1", "dev-0002")}, 20,
                        "t1 and dev-0002 in the devices table")
    assert devices["t1"][1] == "esil", devices
    assert "pm25" in devices["t1"][4], devices
    assert "pm25 5000 (range)" in devices["dev-0002"][4], devices  # what it reads, marked implausible

    page.click("#signout")
    sign_in(page, CONTROL)
    page.wait(alert_row, 20, "the alert again, with the control token")
    acknowledge(page)
    page.wait(lambda: re.search(r"Alert a-[0-9a-f]{12} acknowledged\.", page.text("#message")), 15,
              "the acknowledgement")
    page.wait(lambda: (alert_row() or ["acknowledged"])[-2].startswith("acknowledged"), 20,
              "the alert acknowledged (or gone from the open alerts)")

    page.type("#sp-device", "t1")
    page.type("#sp-actuator", "fan1")
    page.type("#sp-value", "70\n")
    page.wait(lambda: re.search(r"t1\.fan1 = 70: applied", page.text("#setpoint-result")), 60,
              "the setpoint applied")
    page.wait(lambda: "fan1 = 70" in {r[0]: r for r in page.rows("#devices")}["t1"][5], 20,
              "fan1 = 70 in the devices table")
    keep_screenshot(page, "operator-page-control-token")
    no_script_errors(page)
