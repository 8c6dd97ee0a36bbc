"""The tenants' page ``/`` server-side: the schedule without JavaScript, languages, catalogues, accessibility hooks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.pages import i18n
from camperhub.api.pages.mapsvg import layout
from camperhub.contract import Stream
from camperhub.schedule_io import ScheduleRepository, load_schedule_yaml
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import settings, smp

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "firmware-config" / "demo" / "schedule.yaml"
PAGES = ROOT / "api" / "pages"
#: Monday 2026-05-04, 10:00 in Europe/Rome: the demo camper is at Bustecche (09:00-12:00).
NOW = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
CAMPER = "varese-1"


def seed(tmp_path: Path, *, at_stop: bool = True, in_service: bool = True) -> tuple[SqliteStore, ScheduleRepository]:
    repo = ScheduleRepository(tmp_path / "schedules.sqlite")
    repo.save(load_schedule_yaml(DEMO))
    store = SqliteStore(tmp_path / "store.sqlite")
    samples = [smp(Stream.STATUS, NOW_MS - 60_000, camper=CAMPER, state="online", in_service=in_service)]
    if at_stop:
        samples += [smp(Stream.POSITION, NOW_MS - k * 10_000, camper=CAMPER, lat=45.8069, lon=8.8129, fix=3, speed_kmh=0.0) for k in (1, 2, 3)]
    store.write(samples)
    return store, repo


@pytest.fixture
def page(tmp_path: Path) -> Iterator[TestClient]:
    store, repo = seed(tmp_path)
    with TestClient(create_app(settings(), store, schedules=repo, clock=lambda: NOW)) as client:
        yield client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


def test_the_schedule_and_the_state_are_in_the_html_without_javascript(page: TestClient) -> None:
    r = page.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    body = r.text
    text = text_of(body)
    # Italian by default; the camper at its stop until the end of the visit, with today's services
    assert '<html lang="it" dir="ltr">' in body
    assert "A Bustecche fino alle 12:00" in text
    assert "Servizi di oggi a Bustecche" in text
    assert "Sportello riparazioni e manutenzione" in text and "Aiuto con moduli e pratiche" in text
    # seven days from today, local times, translated services, a day without visits
    for day in ("lunedì 4 maggio 2026", "martedì 5 maggio 2026", "domenica 10 maggio 2026"):
        assert day in text
    assert "09:00 –12:00" in text or "09:00–12:00" in text.replace(" –", "–")
    assert "Laboratorio sull'energia" in text and "Nessuna visita." in text
    # the map: every stop labelled, the camper's stop highlighted, never the camper's own coordinates
    for name in ("Bustecche", "San Fermo", "Bobbiate", "Valle Olona", "Biumo Inferiore", "Giubiano"):
        assert f">{name}</text>" in body
    assert re.search(r'<g class="stop here at_stop" data-stop="bustecche"', body)
    assert "45.8069" not in body and "8.8129" not in body
    # assets are the app's own: nothing from another host, and the CSP says so
    assert not re.search(r'(src|href)="(https?:)?//', body)
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert page.get("/static/page.css").status_code == 200
    assert page.get("/static/page.js").status_code == 200


def test_language_from_query_then_cookie_then_accept_language(page: TestClient) -> None:
    r = page.get("/", headers={"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8"})
    assert '<html lang="fr" dir="ltr">' in r.text and "À Bustecche jusqu'à 12:00" in text_of(r.text)
    assert r.headers["content-language"] == "fr" and "Accept-Language" in r.headers["vary"]
    # an unsupported first choice falls through to the next supported one; nothing supported: Italian
    assert '<html lang="es"' in page.get("/", headers={"Accept-Language": "de-DE, es;q=0.5"}).text
    assert '<html lang="it"' in page.get("/", headers={"Accept-Language": "de, ja;q=0.8"}).text
    assert '<html lang="it"' in page.get("/", headers={"Accept-Language": "en;q=0, fr;q=0"}).text
    # ?lang= wins and is remembered in a cookie, which then wins over the browser
    r = page.get("/?lang=uk", headers={"Accept-Language": "fr"})
    assert '<html lang="uk"' in r.text and "На зупинці Bustecche до 12:00" in text_of(r.text)
    assert "lang=uk" in r.headers["set-cookie"] and "samesite=lax" in r.headers["set-cookie"].lower()
    assert '<html lang="uk"' in page.get("/", headers={"Accept-Language": "fr"}).text
    page.cookies.clear()
    r = page.get("/?lang=xx", headers={"Accept-Language": "ro"})
    assert '<html lang="ro"' in r.text and "set-cookie" not in r.headers


def test_the_language_switch_is_links_that_work_without_javascript(page: TestClient) -> None:
    body = page.get("/?lang=en").text
    nav = re.search(r'<nav aria-label="Language">(.*?)</nav>', body, re.S)
    assert nav is not None
    links = re.findall(r'<a href="\?lang=(\w+)&amp;camper=varese-1" lang="\1" hreflang="\1" dir="(\w+)"', nav.group(1))
    assert [c for c, _ in links] == list(i18n.LANGUAGES)
    assert dict(links)["ar"] == "rtl"
    assert 'data-lang="en" aria-current="true"' in nav.group(1)


def test_arabic_is_right_to_left(page: TestClient) -> None:
    r = page.get("/?lang=ar")
    assert '<html lang="ar" dir="rtl">' in r.text
    assert "في Bustecche حتى" in text_of(r.text)


@pytest.mark.parametrize("code", i18n.LANGUAGES)
def test_every_language_renders_its_own_words(page: TestClient, code: str) -> None:
    body = page.get(f"/?lang={code}").text
    tr = i18n.translations(code)
    assert f'<html lang="{code}"' in body
    assert tr.gettext("Where is the camper?") in body.replace("&#39;", "'")
    assert tr.gettext("Repairs and maintenance desk") in body


def test_the_state_part_for_the_script(page: TestClient) -> None:
    r = page.get("/?part=state&lang=es")
    data = r.json()
    assert (data["lang"], data["kind"], data["stop"]) == ("es", "at_stop", "bustecche")
    assert "En Bustecche hasta las 12:00" in data["html"]
    assert page.get("/?part=nope").status_code == 422
    assert page.get("/?camper=Not_A_Camper").status_code == 422


def test_not_in_service_names_the_next_stop_in_words(tmp_path: Path) -> None:
    store, repo = seed(tmp_path, at_stop=False, in_service=False)
    sunday = datetime(2026, 5, 10, 10, 0, tzinfo=UTC)
    with TestClient(create_app(settings(), store, schedules=repo, clock=lambda: sunday)) as client:
        text = text_of(client.get("/?lang=en").text)
    assert "Not in service; next stop Bustecche on Monday, May 11, 2026 at 9:00" in text
    assert "Services today at" not in text


def test_without_a_schedule_the_page_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    repo = ScheduleRepository(tmp_path / "none.sqlite")
    with TestClient(create_app(settings(), store, schedules=repo, clock=lambda: NOW)) as client:
        r = client.get("/?lang=it")
    assert r.status_code == 200 and "Nessun calendario pubblicato per ora." in r.text
    assert "<svg" not in r.text


def test_landmarks_labels_and_keyboard_hooks(page: TestClient) -> None:
    body = page.get("/").text
    assert '<a class="skip" href="#main">' in body and '<main id="main" tabindex="-1">' in body
    assert "<header" in body and "<footer>" in body and '<nav aria-label="Lingua">' in body
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    # every section is labelled by its heading, the live state is announced politely
    for section in re.findall(r"<section ([^>]*)>", body):
        label = re.search(r'aria-labelledby="([\w-]+)"', section)
        assert label is not None and f'id="{label.group(1)}"' in body
    assert '<div id="state" aria-live="polite"' in body
    # the map is an image with a name and a text alternative; tables have column and row headers
    assert re.search(r'<svg id="map"[^>]*role="img"[^>]*aria-labelledby="map-title map-desc"', body)
    assert '<th scope="col">' in body and '<th scope="row">' in body
    css = page.get("/static/page.css").text
    assert ":focus-visible" in css and "outline: 3px" in css


def test_map_tiles_only_when_a_tile_url_is_configured(tmp_path: Path) -> None:
    stops = [("a", "A", 45.80, 8.78), ("b", "B", 45.83, 8.85)]
    plain = layout(stops)
    assert plain.tiles == [] and len(plain.points) == 2
    assert all(0 < p.x < plain.width and 0 < p.y < plain.height for p in plain.points)
    assert plain.points[0].y > plain.points[1].y  # north is up
    tiled = layout(stops, "http://127.0.0.1:9/{z}/{x}/{y}.png")
    assert tiled.tiles and all(re.fullmatch(r"http://127\.0\.0\.1:9/\d+/\d+/\d+\.png", t.href) for t in tiled.tiles)
    store, repo = seed(tmp_path)
    cfg = settings(tile_url="https://tiles.example.org/{z}/{x}/{y}.png")
    with TestClient(create_app(cfg, store, schedules=repo, clock=lambda: NOW)) as client:
        r = client.get("/")
    assert '<image href="https://tiles.example.org/' in r.text
    assert "img-src 'self' https://tiles.example.org" in r.headers["content-security-policy"]


# -- catalogues ------------------------------------------------------------------------------
_BRACES = re.compile(r"\{(\w+)\}")
_PERCENT = re.compile(r"%\((\w+)\)s")


def _catalogue(code: str):
    with i18n.po_path(code).open("rb") as fh:
        return read_po(fh, locale=i18n.babel_locale(code))


def _source_messages() -> set[str]:
    """Every message the code and templates use (Babel's extractors: Python ``N_``/``_``, Jinja2 ``_``)."""
    # the tenants' page only (domain ``messages``); the workshop pages (kiosk, recaps, handouts) use ``workshop``
    method_map = [("router.py", "python"), ("i18n.py", "python"), ("mapsvg.py", "python"),
                  ("templates/index.html", "jinja2"), ("templates/_state.html", "jinja2")]
    options = {"templates/index.html": {"extensions": "jinja2.ext.i18n"}, "templates/_state.html": {"extensions": "jinja2.ext.i18n"}}
    found = extract_from_dir(str(PAGES), method_map, options_map=options, keywords={"_": None, "N_": None, "gettext": None})
    return {msg for _, _, msg, _, _ in found if isinstance(msg, str)}


def test_the_code_uses_only_messages_of_the_catalogue() -> None:
    used = _source_messages()
    known = {m.id for m in _catalogue("it") if m.id}
    assert len(used) > 25
    assert used == known, f"missing from the catalogue: {sorted(used - known)}; unused: {sorted(known - used)}"


@pytest.mark.parametrize("code", i18n.LANGUAGES)
def test_every_catalogue_is_complete_and_compiles(code: str) -> None:
    catalog = _catalogue(code)
    source = {m.id for m in _catalogue("it") if m.id}
    ids = {m.id for m in catalog if m.id}
    assert ids == source, f"{code}: missing {sorted(source - ids)}, extra {sorted(ids - source)}"
    for m in catalog:
        if not m.id:
            continue
        assert m.string, f"{code}: untranslated {m.id!r}"
        assert not m.fuzzy, f"{code}: fuzzy {m.id!r}"
        for pattern in (_BRACES, _PERCENT):
            assert sorted(pattern.findall(m.string)) == sorted(pattern.findall(m.id)), f"{code}: placeholders of {m.id!r}"
    assert not [e for e in catalog.check() if e[1]], f"{code}: {[e for e in catalog.check() if e[1]]}"
    compiled = i18n.compile_catalogue(code)
    assert compiled[:4] in (b"\xde\x12\x04\x95", b"\x95\x04\x12\xde")
    tr = i18n.translations(code)
    for m in catalog:
        if m.id:
            assert tr.gettext(m.id) == m.string
    if code != "en":
        assert tr.gettext("Where is the camper?") != "Where is the camper?"


def test_accept_language_parsing() -> None:
    assert i18n.parse_accept_language("en;q=0.5, ar, zh-Hans-CN;q=0.8") == ["ar", "zh-Hans-CN", "en"]
    assert i18n.negotiate(None, None, "zh-Hans-CN") == "zh"
    assert i18n.negotiate(None, "sq", "fr") == "sq"
    assert i18n.negotiate("ar", "sq", "fr") == "ar"
    assert i18n.negotiate("<script>", None, "*") == "it"


def test_on_the_way_gives_an_arrival_estimate_in_local_time(tmp_path: Path) -> None:
    store, repo = seed(tmp_path, at_stop=False)
    # inside the Bustecche window, but 2-3 km away from every stop, driving
    store.write([smp(Stream.POSITION, NOW_MS - k * 20_000, camper=CAMPER, lat=45.83, lon=8.77, fix=3, speed_kmh=30.0) for k in (1, 2)])
    with TestClient(create_app(settings(), store, schedules=repo, clock=lambda: NOW)) as client:
        text = text_of(client.get("/?lang=it").text)
        data = client.get("/?part=state&lang=en").json()
    assert re.search(r"In viaggio verso Bustecche, arrivo verso le 10:\d\d \(± \d+ min\)", text)
    assert data["kind"] == "on_the_way" and data["stop"] == "bustecche"
    assert "45.83" not in text and "8.77" not in text
