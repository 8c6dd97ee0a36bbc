"""Workshop session routes and recaps over the app on both stores: kiosk key or staff token,
idempotent start, 409 stop, public recap by link without any location."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.contract import Stream
from camperhub.store.base import Store
from camperhub.workshops.sessions import SessionRepository, SessionSettings
from tests.api.conftest import settings, smp
from tests.workshops.test_report import CAMPER, PV_W, START, seed

KEY = "kiosk-key-for-tests-0123456789"
BASE = f"/api/v1/campers/{CAMPER}/workshop/sessions"


class Clock:
    def __init__(self) -> None:
        self.now = START + timedelta(minutes=30)

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def env(store: Store, tmp_path: Path) -> Iterator[tuple[TestClient, Clock, dict[str, str]]]:
    seed(store)
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    staff = tokens.create("maria", "staff")
    clock = Clock()
    app = create_app(settings(), store, tokens=tokens, clock=clock)
    app.state.sessions = SessionRepository(tmp_path / "sessions.sqlite")
    app.state.session_settings = SessionSettings(kiosk_key=KEY, sessions_path=tmp_path / "unused.sqlite")
    with TestClient(app) as client:
        yield client, clock, {"Authorization": f"Bearer {staff}"}


KIOSK = {"X-Kiosk-Key": KEY}


def test_kiosk_starts_idempotently_and_stops_then_recap_is_public(env) -> None:  # type: ignore[no-untyped-def]
    client, clock, _ = env
    r = client.post(BASE, headers=KIOSK)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["open"] and s["started_by"] == "kiosk" and s["started"] == "2026-05-04T06:30:00Z"
    assert s["recap_url"] == f"/recap/{s['share_token']}"
    clock.now += timedelta(minutes=5)
    again = client.post(BASE, headers=KIOSK)
    assert again.status_code == 200 and again.json()["id"] == s["id"]  # the open one, not a new one
    clock.now = START + timedelta(minutes=150)
    stopped = client.post(f"{BASE}/current/stop", headers=KIOSK)
    assert stopped.status_code == 200 and stopped.json()["stopped"] == "2026-05-04T08:30:00Z"
    conflict = client.post(f"{BASE}/current/stop", headers=KIOSK)
    assert conflict.status_code == 409 and "no open workshop session" in conflict.json()["detail"]
    listed = client.get(BASE, headers=KIOSK).json()
    assert listed["current"] is None and [x["id"] for x in listed["sessions"]] == [s["id"]]
    # the recap, by its link alone (no key, no token): two hours of the seeded readings
    data = client.get(s["recap_json_url"])
    assert data.status_code == 200 and data.json()["pv_wh"] == pytest.approx(PV_W * 2)
    assert data.headers["referrer-policy"] == "no-referrer"
    assert "camper" not in data.json() and not any(k in data.text for k in ('"lat"', '"lon"', "45.80", "8.81"))
    page = client.get(s["recap_url"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Riepilogo del laboratorio" in page.text and "600 Wh" in page.text and CAMPER not in page.text
    assert "script-src" not in page.headers["content-security-policy"] and "<script" not in page.text
    assert 'lang="en"' in client.get(s["recap_url"] + "?lang=en").text
    assert 'lang="en"' in client.get(s["recap_url"], headers={"Accept-Language": "fr, en;q=0.8"}).text


def test_staff_token_also_works_and_marks_api(env) -> None:  # type: ignore[no-untyped-def]
    client, _, staff = env
    r = client.post(BASE, headers=staff)
    assert r.status_code == 201 and r.json()["started_by"] == "api"
    assert client.post(f"{BASE}/current/stop", headers=staff).json()["stopped_by"] == "api"


def test_without_key_or_token_nothing_is_started_or_listed(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    for method, path in (("post", BASE), ("post", f"{BASE}/current/stop"), ("get", BASE)):
        r = getattr(client, method)(path)
        assert r.status_code == 401 and "kiosk key" in r.json()["detail"], (path, r.text)
    wrong = client.post(BASE, headers={"X-Kiosk-Key": "not-the-key-at-all-0000"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "the kiosk key is not valid"
    bad_token = client.post(BASE, headers={"Authorization": "Bearer nope"})
    assert bad_token.status_code == 401 and "not valid" in bad_token.json()["detail"]
    assert client.get(BASE, headers=KIOSK).json()["sessions"] == []


def test_an_api_without_a_kiosk_key_refuses_every_key(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    client.app.state.session_settings = SessionSettings(kiosk_key=None)
    r = client.post(BASE, headers=KIOSK)
    assert r.status_code == 401 and "no kiosk key configured" in r.json()["detail"]


def test_unknown_camper_bad_id_and_bad_links(env) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = env
    assert client.post("/api/v1/campers/ghost/workshop/sessions", headers=KIOSK).status_code == 404
    r = client.post("/api/v1/campers/Bad%20Id/workshop/sessions", headers=KIOSK)
    assert r.status_code == 422 and "does not match" in r.json()["detail"]
    missing = client.get("/api/v1/recaps/" + "A" * 24)
    assert missing.status_code == 404 and "no workshop recap" in missing.json()["detail"]
    assert client.get("/recap/" + "A" * 24).status_code == 404
    assert client.get("/api/v1/recaps/short").status_code == 422
    assert client.get(BASE + "?limit=0", headers=KIOSK).status_code == 422


def test_a_stored_button_press_shows_up_and_is_not_applied_twice(env, store: Store) -> None:  # type: ignore[no-untyped-def]
    client, clock, _ = env
    press_ms = int((START + timedelta(minutes=10)).timestamp() * 1000)
    store.write([smp(Stream.EVENT, press_ms, camper=CAMPER, seq=77, kind="button")])
    listed = client.get(BASE, headers=KIOSK).json()
    assert listed["current"]["started_by"] == "button" and listed["current"]["started"] == "2026-05-04T06:10:00Z"
    store.write([smp(Stream.EVENT, press_ms, camper=CAMPER, seq=77, kind="button")])  # delivered again
    again = client.get(BASE, headers=KIOSK).json()
    assert again["current"] is not None and len(again["sessions"]) == 1
    # the kiosk stops what the button started
    clock.now = START + timedelta(minutes=60)
    assert client.post(f"{BASE}/current/stop", headers=KIOSK).json()["stopped_by"] == "kiosk"
