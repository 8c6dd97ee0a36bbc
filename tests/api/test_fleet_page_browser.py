"""The fleet staff page /fleet in headless Chromium (Debian's chromium + chromium-driver, via selenium).

The app runs under uvicorn on a loopback port (helpers of tests/api/test_page_browser.py)
over a SQLite store with two campers: van-1 online with two hours of battery readings
and an open alert, van-2 whose agent went offline. The browser must refuse a bad token,
sign in with a good one (kept in sessionStorage, never in a URL or a cookie), list the
campers, show van-1's charts of voltage, current and temperature and its alert, sign
out, and never send a request off loopback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.contract import Stream
from camperhub.fleet.alerts_rules import Alert, AlertKind, Transition
from camperhub.fleet.alerts_store import AlertRepository
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import settings, smp
from tests.api.test_page_browser import Server, _requested_urls, _text, browser  # noqa: F401  (browser: fixture)

pytestmark = pytest.mark.timeout(120)
MIN = 60_000


def seed_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SqliteStore, TokenStore, str]:
    """Two campers as described above; the staff token."""
    monkeypatch.setenv("CAMPERHUB_ALERTS_PATH", str(tmp_path / "alerts.sqlite"))
    monkeypatch.setenv("CAMPERHUB_AUDIT_PATH", str(tmp_path / "audit.sqlite"))
    store = SqliteStore(tmp_path / "store.sqlite")
    now_ms = int(time.time() * 1000)
    store.write([
        smp(Stream.ENERGY, now_ms - k * MIN, camper="van-1", seq=1000 - k, battery_soc_pct=90.0, battery_voltage_v=13.1 + (k % 10) / 100,
            battery_current_a=-3.0 + (k % 20) / 2, battery_temp_c=18.0 + (k % 30) / 10)
        for k in range(120)
    ])
    store.write([smp(Stream.STATUS, now_ms - MIN, camper="van-1", state="online", mode="normal", queue_depth=2)])
    store.write([smp(Stream.STATUS, now_ms - 300 * MIN, camper="van-2", state="offline", queue_depth=40)])
    now = datetime.now(UTC)
    alert = Alert(id="a1", camper="van-1", kind=AlertKind.BATTERY_OVER_TEMP, severity="warning", state="open", opened_at=now,
                  updated_at=now, value=47.0, unit="°C", message="battery at 47 °C for 5 min")
    AlertRepository(tmp_path / "alerts.sqlite").apply("van-1", {}, [Transition("open", alert, True)])
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    return store, tokens, tokens.create("maria", "staff")


@pytest.fixture
def fleet_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, str]]:
    store, tokens, token = seed_fleet(tmp_path, monkeypatch)
    with Server(create_app(settings(), store, tokens=tokens)) as server:
        yield server, token


def sign_in(driver: webdriver.Chrome, token: str) -> None:
    box = driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()


def _cells(driver: webdriver.Chrome) -> dict[str, list[str]]:
    return driver.execute_script(
        "const out = {}; document.querySelectorAll('#fleet-rows tr').forEach(tr => {"
        " out[tr.dataset.camper] = Array.from(tr.children).map(c => c.innerText.trim()); }); return out;"
    )


def test_the_fleet_page_in_headless_chromium(fleet_served: tuple[Server, str], browser: webdriver.Chrome) -> None:  # noqa: F811
    server, token = fleet_served
    browser.set_window_size(1280, 900)
    wait = WebDriverWait(browser, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    base = f"http://127.0.0.1:{server.port}"
    browser.get(base + "/fleet")
    assert browser.find_element(By.ID, "sign-in").is_displayed() and not browser.find_element(By.ID, "fleet").is_displayed()

    # 1. a token we never issued is refused, and nothing is kept
    sign_in(browser, "x" * 43)
    wait.until(lambda d: "refused" in _text(d, "#sign-in-error"))
    assert browser.execute_script("return sessionStorage.length") == 0
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"][0]["message"].endswith("401 (Unauthorized)")  # the refusal; drained

    # 2. the staff token: the table lists both campers
    sign_in(browser, token)
    wait.until(lambda d: len(_cells(d)) == 2)
    cells = _cells(browser)
    assert cells["van-1"][:2] == ["van-1", "online"] and cells["van-1"][3] == "normal" and cells["van-1"][4] == "2"
    assert cells["van-1"][5] == "90 %" and cells["van-1"][7] == "1 (warning)"
    assert cells["van-1"][2].endswith("s ago") or cells["van-1"][2].endswith("min ago")
    assert cells["van-2"][1] == "offline" and cells["van-2"][4] == "40" and cells["van-2"][5] == "—"
    assert browser.execute_script("return sessionStorage.getItem('camperhub.fleet.token')") == token
    assert browser.execute_script("return document.cookie") == ""
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""

    # 3. van-1's detail: three charts with lines, and its open alert
    browser.find_element(By.CSS_SELECTOR, "#fleet-rows tr[data-camper='van-1'] button").click()
    wait.until(lambda d: d.execute_script("return document.querySelectorAll('#detail .chart svg polyline').length") >= 3)
    for field in ("battery_voltage_v", "battery_current_a", "battery_temp_c"):
        points = browser.execute_script(f"return document.querySelector('#chart-{field} svg').dataset.points")
        assert int(points) >= 100, (field, points)  # 120 minutes of readings at 1-minute means
        assert browser.execute_script(f"return document.querySelector('#chart-{field} svg title').textContent") == field.replace("_", " ")
    wait.until(lambda d: "battery at 47 °C" in _text(d, "#alerts"))
    assert "warning · battery over temp" in _text(browser, "#alerts")
    urls = _requested_urls(browser)  # (the log is drained on each read: keep what was read)
    browser.find_element(By.CSS_SELECTOR, ".range button[data-hours='168']").click()
    wait.until(lambda d: urls.extend(_requested_urls(d)) or sum("/series" in u for u in urls) >= 2)
    assert browser.find_element(By.CSS_SELECTOR, ".range button[data-hours='168']").get_attribute("aria-pressed") == "true"

    # 4. nothing left loopback; the token never appeared in a URL; no script error
    urls += _requested_urls(browser)
    assert any(u.endswith("/static/fleet.js") for u in urls) and any("/api/v1/fleet/van-1/series" in u for u in urls)
    off = [u for u in urls if urlsplit(u).hostname != "127.0.0.1"]
    assert not off, f"requests off loopback: {off}"
    assert not [u for u in urls if token in u]
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems

    # 5. sign out: the token is forgotten and the form is back
    browser.find_element(By.ID, "sign-out").click()
    wait.until(lambda d: d.find_element(By.ID, "sign-in").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('camperhub.fleet.token')") is None
    assert not browser.find_element(By.ID, "fleet").is_displayed()


def test_a_reload_keeps_the_session_of_the_tab(fleet_served: tuple[Server, str], browser: webdriver.Chrome) -> None:  # noqa: F811
    server, token = fleet_served
    browser.get(f"http://127.0.0.1:{server.port}/fleet")
    sign_in(browser, token)
    WebDriverWait(browser, 15).until(lambda d: len(_cells(d)) == 2)
    browser.refresh()
    WebDriverWait(browser, 15).until(lambda d: len(_cells(d)) == 2)
    assert browser.find_element(By.ID, "fleet").is_displayed() and not browser.find_element(By.ID, "sign-in").is_displayed()
