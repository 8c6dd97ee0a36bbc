"""A workshop recap in headless Chromium (helpers of test_page_browser.py, imported, not copied).

The app runs under uvicorn on 127.0.0.1 over a SQLite store seeded with a
workshop's readings and a position; the kiosk starts and stops a session over
HTTP, and the browser opens the recap by its share link: figures, an
accessible chart, the browser's language, no script errors, no coordinates, a
print layout that prints to A4, and no request off loopback.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from camperhub.api.app import create_app
from camperhub.store.sqlite import SqliteStore
from camperhub.workshops.sessions import SessionRepository, SessionSettings
from tests.api.conftest import settings
from tests.api.test_page_browser import Server, _requested_urls, browser  # noqa: F401  (browser: fixture)
from tests.workshops.test_report import CAMPER, PV_W, START, seed

KEY = "kiosk-key-for-browser-tests-42"


class Clock:
    now = START + timedelta(minutes=30)

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Clock]]:
    store = SqliteStore(tmp_path / "store.sqlite")
    seed(store)
    clock = Clock()
    app = create_app(settings(), store, clock=clock)
    app.state.sessions = SessionRepository(tmp_path / "sessions.sqlite")
    app.state.session_settings = SessionSettings(kiosk_key=KEY)
    with Server(app) as server:
        yield server, clock


def _post(url: str) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(url, method="POST", headers={"X-Kiosk-Key": KEY})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_recap_in_headless_chromium(served, browser: webdriver.Chrome) -> None:  # noqa: F811
    server, clock = served
    base = f"http://127.0.0.1:{server.port}"
    session = _post(f"{base}/api/v1/campers/{CAMPER}/workshop/sessions")
    clock.now = START + timedelta(minutes=150)
    _post(f"{base}/api/v1/campers/{CAMPER}/workshop/sessions/current/stop")

    # the browser prefers French, then English: the recap (Italian and English) answers in English
    browser.get(base + session["recap_url"])
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Workshop recap"
    pv = browser.find_element(By.CSS_SELECTOR, '.figure[data-key="pv"] .value').text
    assert pv == f"{PV_W * 2:.0f} Wh"
    chart = browser.find_element(By.CSS_SELECTOR, "svg.chart.power")
    assert chart.get_attribute("role") == "img" and chart.size["width"] > 200
    assert browser.execute_script("return document.querySelector('svg.chart.power title').textContent") == "Solar power and consumption"
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart.power polyline.pv")) == 1

    # Italian by the link's ?lang=
    browser.get(base + session["recap_url"] + "?lang=it")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Riepilogo del laboratorio"
    assert "08:30 – 10:30" in browser.find_element(By.CSS_SELECTOR, ".period").text
    source = browser.page_source
    assert CAMPER not in source and not re.search(r"45\.8\d|8\.8\d", source)  # no id, no coordinates

    # print: three figures a row, and Chromium prints it as an A4 handout
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    columns = browser.execute_script("return getComputedStyle(document.querySelector('.figures')).gridTemplateColumns")
    assert len(columns.split()) == 3
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True})["data"])
    assert pdf.startswith(b"%PDF")

    # nothing left loopback; no script errors (the page has no script at all)
    urls = _requested_urls(browser)
    assert any(session["share_token"] in u for u in urls)
    off = [u for u in urls if urlsplit(u).hostname != "127.0.0.1"]
    assert not off, f"requests off loopback: {off}"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert browser.execute_script("return document.scripts.length") == 0

    # a link that is not one: a clear 404
    browser.get(base + "/recap/" + "Z" * 24)
    assert "no workshop recap has this link" in browser.find_element(By.TAG_NAME, "body").text


def test_kiosk_start_stop_control_in_headless_chromium(served, browser: webdriver.Chrome) -> None:  # noqa: F811
    from selenium.webdriver.support.ui import WebDriverWait

    server, clock = served
    base = f"http://127.0.0.1:{server.port}"
    wait = WebDriverWait(browser, 10)
    # a visitor without the kiosk key sees no control
    browser.get(f"{base}/workshop?camper={CAMPER}&lang=it")
    assert browser.find_elements(By.CSS_SELECTOR, "#session-slot button") == []
    # the kiosk is set up once with its key in the address's fragment (kept in localStorage, removed from the address)
    browser.get(f"{base}/workshop?camper={CAMPER}&lang=it#kiosk-key={KEY}")
    button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#session-slot button.session-button"))
    wait.until(lambda d: button.text == "Inizia il laboratorio")
    assert "kiosk-key" not in browser.current_url
    assert browser.find_element(By.CSS_SELECTOR, "#session-slot .session-state").text == "Nessun laboratorio in corso"
    button.click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#session-slot .session-state").text == "Laboratorio in corso dalle 08:30")
    assert button.text == "Termina il laboratorio"
    clock.now = START + timedelta(minutes=150)
    button.click()
    recap = wait.until(lambda d: next((a for a in d.find_elements(By.CSS_SELECTOR, "#session-slot a.session-recap") if a.is_displayed()), None))
    assert recap.text == "Riepilogo dell'ultimo laboratorio"
    recap.click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text in ("Workshop recap", "Riepilogo del laboratorio"))
    assert browser.find_element(By.CSS_SELECTOR, '.figure[data-key="pv"] .value').text == f"{PV_W * 2:.0f} Wh"
    urls = _requested_urls(browser)
    assert any(u.endswith("/workshop/session.js") for u in urls)
    off = [u for u in urls if urlsplit(u).hostname != "127.0.0.1"]
    assert not off, f"requests off loopback: {off}"
    # no error of the control (the kiosk page's own parts are tested in test_workshop_page_browser.py)
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "session" in e["message"]]
