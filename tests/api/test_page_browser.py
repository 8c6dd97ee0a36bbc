"""The tenants' page in headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

The app runs under uvicorn on a free 127.0.0.1 port in a thread, over a SQLite
store with a status and positions and the demo schedule. The browser must see
the camper and the stops, switch language by the page's links, lay Arabic out
right to left, follow a live change, and never send a request off loopback.
No browser is downloaded: a missing chromium fails the test (install it with
scripts/install-system-deps.sh).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from camperhub.api.app import create_app
from camperhub.api.views import sample_view
from tests.api.conftest import settings
from tests.api.test_page import CAMPER, NOW, NOW_MS, seed

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = "chromedriver"


def _which(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or (f"/usr/lib/chromium/{name}" if Path(f"/usr/lib/chromium/{name}").exists() else None)
        if path:
            return path
    pytest.fail(f"{' or '.join(names)} not found: install Debian's chromium and chromium-driver (scripts/install-system-deps.sh)")


class Server:
    """uvicorn in a thread on an already bound loopback socket; ``stop`` joins it."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3, ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="page-uvicorn", daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, object]]:
    store, repo = seed(tmp_path)
    app = create_app(settings(), store, schedules=repo, clock=lambda: NOW)
    with Server(app) as server:
        yield server, app


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _which(*CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-default-apps", "--window-size=390,844"):
        options.add_argument(arg)
    # the browser's own languages: French first (the page must pick it up from Accept-Language)
    options.add_experimental_option("prefs", {"intl.accept_languages": "fr-FR,fr,en"})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = webdriver.ChromeService(executable_path=_which(DRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _requested_urls(driver: webdriver.Chrome) -> list[str]:
    """URLs of every request the page made since the last call (DevTools Network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.append(msg["params"].get("request", {}).get("url") or msg["params"].get("url"))
    return urls


def _text(driver: webdriver.Chrome, css: str) -> str:
    """An element's rendered text, read in one step: the live update may swap the element at any moment
    (a WebElement read in two steps could go stale in between)."""
    return str(driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css))


def _state_text(driver: webdriver.Chrome) -> str:
    return _text(driver, "#state-text")


def test_the_page_in_headless_chromium(served, browser: webdriver.Chrome) -> None:
    server, app = served
    base = f"http://127.0.0.1:{server.port}"
    wait = WebDriverWait(browser, 10, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    urls: list[str] = []

    # 1. the browser's language (French), the camper at its stop, every stop on the map and in the schedule
    browser.get(base + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    assert _state_text(browser).startswith("À Bustecche jusqu'à 12:00")
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#map .stop text")]
    assert sorted(labels) == sorted(["Bustecche", "San Fermo", "Bobbiate", "Valle Olona", "Biumo Inferiore", "Giubiano"])
    here = browser.find_elements(By.CSS_SELECTOR, "#map .stop.here")
    assert [e.get_attribute("data-stop") for e in here] == ["bustecche"]
    assert "Guichet réparations et entretien" in _text(browser, "#state")
    rows = browser.find_elements(By.CSS_SELECTOR, ".week tbody tr")
    assert len(rows) == 14  # the demo week: Monday to Saturday, Sunday none
    # the script ran (same origin, allowed by the CSP) and says so
    wait.until(lambda d: d.find_element(By.ID, "live-note").is_displayed())
    # the keyboard reaches the skip link first, and it is visible when focused
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    active = browser.switch_to.active_element
    assert active.get_attribute("class") == "skip" and active.is_displayed()
    assert browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", active) != "none"

    # 2. the language switch: Italian, then Arabic right to left
    browser.find_element(By.CSS_SELECTOR, 'nav a[data-lang="it"]').click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "it")
    assert _state_text(browser).startswith("A Bustecche fino alle 12:00")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Dov'è il camper?"
    urls += _requested_urls(browser)
    browser.get(base + "/")  # the choice is remembered (cookie) over the browser's French
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "it"

    browser.find_element(By.CSS_SELECTOR, 'nav a[data-lang="ar"]').click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ar")
    assert browser.execute_script("return getComputedStyle(document.documentElement).direction") == "rtl"
    assert browser.execute_script("return getComputedStyle(document.getElementById('state-text')).direction") == "rtl"
    assert _state_text(browser).startswith("في Bustecche حتى")
    # right to left for real: the heading's text ends at the right edge of main, not the left
    h1 = browser.find_element(By.TAG_NAME, "h1").rect
    main = browser.find_element(By.TAG_NAME, "main").rect
    assert h1["x"] + h1["width"] > main["x"] + main["width"] - 40

    # 3. a live change: a position away from every stop; the stream tells the page, which re-renders its state
    browser.find_element(By.CSS_SELECTOR, 'nav a[data-lang="it"]').click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "it")
    wait.until(lambda d: d.find_element(By.ID, "live-note").is_displayed())
    time.sleep(0.5)  # let the event stream connect
    fields = {"lat": 45.8300, "lon": 8.7700, "fix": 3, "speed_kmh": 30.0}
    app.state.broadcaster.publish_threadsafe(CAMPER, "position", NOW_MS - 5_000, sample_view(CAMPER, "position", NOW_MS - 5_000, {"seq": 99, **fields}))
    wait.until(lambda d: _state_text(d).startswith("In viaggio verso Bustecche, arrivo verso le"))
    here = browser.find_elements(By.CSS_SELECTOR, "#map .stop.here.on_the_way")
    assert [e.get_attribute("data-stop") for e in here] == ["bustecche"]

    # 4. nothing left loopback: every request the page made went to 127.0.0.1
    urls += _requested_urls(browser)
    assert any(u.endswith("/static/page.css") for u in urls) and any(u.endswith("/static/page.js") for u in urls)
    assert any("/location/stream" in u for u in urls)
    off = [u for u in urls if urlsplit(u).hostname != "127.0.0.1"]
    assert not off, f"requests off loopback: {off}"
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems
