"""Staff switch of the public service state (PUT/GET/DELETE /api/v1/campers/{camper}/service): on outside
a window, off inside one, bounded in time, kept across restarts, and pushed to open location streams at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.contract import Stream
from camperhub.schedule_io import ScheduleRepository
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import MIN, T0, read_events, settings, smp
from tests.api.test_location import URL, Clock, _schedule

pytestmark = pytest.mark.timeout(60)

SWITCH = "/api/v1/campers/van-1/service"


@pytest.fixture
def env(tmp_path: Path):
    """An app at 15:20 local on Monday (between the two windows), a staff and an admin-less token store."""
    clock = Clock(T0 + 80 * MIN)
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([smp(Stream.STATUS, clock.ts_ms - MIN, camper="van-1", state="online", in_service=False)])
    schedules = ScheduleRepository(tmp_path / "schedules.sqlite")
    schedules.save(_schedule())
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    auth = {"Authorization": "Bearer " + tokens.create("maria", "staff")}
    app = create_app(settings(location_refresh_s=3600), store, schedules=schedules, tokens=tokens, clock=clock)
    with TestClient(app) as client:
        yield client, auth, clock, tmp_path


def test_switch_on_between_windows_then_off_inside_one_then_back_to_the_schedule(env) -> None:
    client, auth, clock, _ = env
    assert client.get(URL).json()["state"] == "not_in_service"
    r = client.put(SWITCH, json={"in_service": True, "note": "visita straordinaria"}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["set_by"] == "maria" and body["active"] and body["until_local_time"].startswith("2026-05-05T00:00:00+02:00")
    assert client.get(URL).json()["state"] == "on_the_way"  # in service, no fix: heading for the next visit
    clock.ts_ms = T0 + 130 * MIN  # 16:10, inside colle's window
    assert client.get(URL).json()["state"] == "in_service_at_stop"
    assert client.put(SWITCH, json={"in_service": False, "until": "2026-05-04T17:00:00+02:00"}, headers=auth).status_code == 200
    assert client.get(URL).json()["state"] == "not_in_service"
    clock.ts_ms = T0 + 181 * MIN  # 17:01: the switch has expired, the window runs
    assert client.get(URL).json()["state"] == "in_service_at_stop"
    assert client.get(SWITCH, headers=auth).json()["active"] is False
    assert client.delete(SWITCH, headers=auth).status_code == 204
    assert client.get(SWITCH, headers=auth).status_code == 404
    assert client.delete(SWITCH, headers=auth).status_code == 404


def test_the_switch_needs_a_staff_token_and_a_bounded_future_until(env) -> None:
    client, auth, _, _ = env
    assert client.put(SWITCH, json={"in_service": True}).status_code == 401
    assert client.put(SWITCH, json={"in_service": True}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(SWITCH).status_code == 401 and client.delete(SWITCH).status_code == 401
    r = client.put(SWITCH, json={"in_service": True, "until": "2026-05-04T10:00:00Z"}, headers=auth)
    assert r.status_code == 422 and "not in the future" in r.json()["detail"]
    r = client.put(SWITCH, json={"in_service": True, "until": "2026-05-20"}, headers=auth)
    assert r.status_code == 422 and "at most 7 days" in r.json()["detail"]
    r = client.put(SWITCH, json={"in_service": True, "until": "tomorrow"}, headers=auth)
    assert r.status_code == 422 and "until" in r.json()["detail"]
    r = client.put(SWITCH, json={"in_service": "maybe"}, headers=auth)
    assert r.status_code == 422 and "in_service" in r.json()["detail"]
    r = client.put(SWITCH, json={"in_service": True, "colour": "red"}, headers=auth)
    assert r.status_code == 422 and "unknown parameter" in r.json()["detail"]
    assert client.get(URL).json()["state"] == "not_in_service"  # nothing was switched


def test_the_switch_is_kept_across_restarts(env) -> None:
    client, auth, clock, tmp_path = env
    assert client.put(SWITCH, json={"in_service": True}, headers=auth).status_code == 200
    again = create_app(
        settings(), SqliteStore(tmp_path / "s.sqlite"), schedules=ScheduleRepository(tmp_path / "schedules.sqlite"), clock=clock,
    )
    with TestClient(again) as other:
        assert other.get(URL).json()["state"] == "on_the_way"


def test_an_open_location_stream_gets_the_switch_at_once(env) -> None:
    """The feed's periodic refresh is an hour here: only the staff change can make the second event."""
    client, auth, _, _ = env
    with client.stream("GET", URL + "/stream") as r:
        lines = r.iter_lines()
        [first] = read_events(lines, 1)
        assert first.data["state"] == "not_in_service"
        assert client.put(SWITCH, json={"in_service": True}, headers=auth).status_code == 200
        [second] = read_events(lines, 1)
        assert second.data["state"] == "on_the_way" and second.data["to"]["id"] == "colle"


def test_the_override_expires_on_its_own_in_the_repository(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from camperhub.schedule import ServiceOverride

    repo = ScheduleRepository(tmp_path / "s.sqlite")
    at = datetime(2026, 5, 4, 12, tzinfo=UTC)
    repo.set_override("van-1", ServiceOverride(in_service=False, until_utc=at + timedelta(hours=1), set_by="maria", set_at_utc=at))
    o = repo.override("van-1")
    assert o is not None and o.active(at + timedelta(minutes=59)) and not o.active(at + timedelta(hours=1))
    with pytest.raises(ValueError, match="at most 7 days"):
        ServiceOverride(in_service=True, until_utc=at + timedelta(days=8), set_by="x", set_at_utc=at)
    with pytest.raises(ValueError, match="timezone-aware"):
        ServiceOverride(in_service=True, until_utc=datetime(2026, 5, 5), set_by="x", set_at_utc=at)
    assert repo.clear_override("van-1") and repo.override("van-1") is None
