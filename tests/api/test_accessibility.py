"""WCAG 2.1 AA on the pages as Chromium renders them, checked by axe-core (tests/fixtures/axe.py).

The tenants' page in Italian (the default), Arabic (right to left) and Chinese at
a phone's width; the workshop kiosk in Italian and English at a tablet's size.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from camperhub.api.app import create_app
from tests.api.conftest import settings
from tests.api.test_page_browser import Server, browser, served  # noqa: F401  (fixtures)
from tests.api.test_workshop_page_browser import seed as seed_kiosk
from tests.fixtures.axe import axe_violations, describe

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("lang", ["it", "ar", "zh"])
def test_the_tenants_page_meets_wcag_aa(served, browser: webdriver.Chrome, lang: str) -> None:  # noqa: F811
    server, _ = served
    browser.get(f"http://127.0.0.1:{server.port}/?lang={lang}")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "live-note").is_displayed())  # the script ran
    found = axe_violations(browser)
    assert not found, describe(found)


def test_the_check_finds_what_it_should(served, browser: webdriver.Chrome) -> None:  # noqa: F811
    """The same check on the same page, spoiled: pale text, an unlabelled button, an image without text."""
    server, _ = served
    browser.get(f"http://127.0.0.1:{server.port}/?lang=it")
    # styles through the CSSOM: the page's Content-Security-Policy refuses inline style attributes
    browser.execute_script(
        "const m = document.querySelector('main');"
        "m.insertAdjacentHTML('beforeend', '<p id=\"pale\">pallido</p><button></button><img src=\"/static/icon.svg\">');"
        "const p = document.getElementById('pale'); p.style.color = '#bbb'; p.style.backgroundColor = '#fff';"
    )
    found = {v["id"] for v in axe_violations(browser)}
    assert {"color-contrast", "button-name", "image-alt"} <= found, found


@pytest.mark.parametrize("lang", ["it", "en"])
def test_the_workshop_kiosk_meets_wcag_aa(tmp_path, browser: webdriver.Chrome, lang: str) -> None:  # noqa: F811
    browser.set_window_size(1280, 800)
    with Server(create_app(settings(), seed_kiosk(tmp_path, datetime.now(UTC)))) as server:
        browser.get(f"http://127.0.0.1:{server.port}/workshop?lang={lang}")
        WebDriverWait(browser, 10).until(
            lambda d: len(d.execute_script("return document.getElementById('curve-pv').getAttribute('d') || ''")) > 10
        )
        found = axe_violations(browser)
    assert not found, describe(found)


def test_the_fleet_page_meets_wcag_aa(tmp_path, browser: webdriver.Chrome, monkeypatch) -> None:  # noqa: F811
    """The staff page signed out (the form) and signed in with a camper's charts and alerts open."""
    from tests.api.test_fleet_page_browser import seed_fleet, sign_in

    store, tokens, token = seed_fleet(tmp_path, monkeypatch)
    browser.set_window_size(1280, 900)
    with Server(create_app(settings(), store, tokens=tokens)) as server:
        browser.get(f"http://127.0.0.1:{server.port}/fleet")
        found = axe_violations(browser)
        assert not found, describe(found)
        sign_in(browser, token)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.querySelectorAll('#fleet-rows tr').length") == 2)
        browser.find_element(By.CSS_SELECTOR, "#fleet-rows tr[data-camper='van-1'] button").click()
        WebDriverWait(browser, 10).until(
            lambda d: d.execute_script("return document.querySelectorAll('#detail .chart svg polyline').length") >= 3
            and d.execute_script("return document.querySelectorAll('#alerts li').length") == 1
        )
        found = axe_violations(browser)
    assert not found, describe(found)
