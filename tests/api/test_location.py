"""GET /location and /location/stream: the privacy-filtered public view over real stores, the live
listener (real Mosquitto) and the schedule repository. A raw position never leaves the API."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.events import Broadcaster
from camperhub.api.location import LocationHub
from camperhub.api.views import sample_view
from camperhub.contract import Stream, encode_envelope, topic
from camperhub.schedule import Schedule
from camperhub.schedule_io import ScheduleRepository
from camperhub.settings import MqttClientSettings
from camperhub.store.base import Store
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import MIN, T0, read_events, settings, smp
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

pytestmark = pytest.mark.timeout(60)

URL = "/api/v1/campers/van-1/location"
#: Between the two stops, about 1.6 km from each: a raw position that must never be shown.
RAW_LAT, RAW_LON = 45.81723, 8.82851
#: Inside the first stop's geofence, but not its published position.
NEAR_A_LAT, NEAR_A_LON = 45.80695, 8.81297


def _schedule(camper: str = "van-1") -> Schedule:
    return Schedule.model_validate({
        "camper": camper,
        "stops": [
            {"id": "piazza", "name": "Piazza", "neighbourhood": "Bustecche", "address": "via A 1", "lat": 45.8068, "lon": 8.8128, "radius_m": 120},
            {"id": "colle", "name": "Colle", "neighbourhood": "San Fermo", "address": "via B 2", "lat": 45.8276, "lon": 8.8442, "radius_m": 120},
        ],
        # Monday 2026-05-04 is T0's day (T0 = 14:00 local)
        "visits": [
            {"stop": "piazza", "weekday": "mon", "start": "13:00", "end": "15:00", "services": ["maintenance_desk"]},
            {"stop": "colle", "weekday": "mon", "start": "16:00", "end": "18:00", "services": ["energy_workshop"]},
        ],
    })


class Clock:
    def __init__(self, ts_ms: int) -> None:
        self.ts_ms = ts_ms

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.ts_ms / 1000, UTC)


def _app(store: Store, tmp_path: Path, clock: Clock, with_schedule: bool = True, **kw):
    """The app over ``store``; GET /location computes its view on every request unless ``location_fresh_s``
    is given (these tests write to the store and read at once; the server copy has its own test)."""
    schedules = ScheduleRepository(tmp_path / "schedules.sqlite")
    if with_schedule:
        schedules.save(_schedule())
    return create_app(settings(**{"location_fresh_s": 0, **kw}), store, schedules=schedules, clock=clock)


def _pos(ts: int, lat: float, lon: float, **kw) -> object:
    return smp(Stream.POSITION, ts, lat=lat, lon=lon, fix=3, **kw)


def test_at_a_stop_on_the_way_and_not_in_service(store: Store, tmp_path: Path) -> None:
    clock = Clock(T0)
    with TestClient(_app(store, tmp_path, clock)) as client:
        r = client.get(URL)
        assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=5"
        v = r.json()
        # in the window, no position: per schedule
        assert v["state"] == "in_service_at_stop" and v["stop"]["id"] == "piazza" and v["confirmed"] is False
        assert v["services"] == ["maintenance_desk"] and v["until_local"] == "15:00"
        assert v["until_utc"] == "2026-05-04T13:00:00Z" and v["until_local_time"] == "2026-05-04T15:00:00+02:00"
        assert v["as_of_utc"] == "2026-05-04T12:00:00Z" and v["as_of_local_time"] == "2026-05-04T14:00:00+02:00"
        # a fix inside the geofence confirms it; the public position is the stop's, not the fix
        store.write([_pos(T0 - 30_000, NEAR_A_LAT, NEAR_A_LON)])
        r = client.get(URL)
        v = r.json()
        assert v["confirmed"] is True and (v["stop"]["lat"], v["stop"]["lon"]) == (45.8068, 8.8128)
        assert str(NEAR_A_LAT) not in r.text and str(NEAR_A_LON) not in r.text
        # 15:20, between the windows, switched on, driving: on the way to the next stop
        clock.ts_ms = T0 + 80 * MIN
        store.write([
            smp(Stream.STATUS, clock.ts_ms - MIN, state="online", in_service=True),
            _pos(clock.ts_ms - 60_000, RAW_LAT - 0.001, RAW_LON - 0.001, speed_kmh=28.0),
            _pos(clock.ts_ms - 5_000, RAW_LAT, RAW_LON, speed_kmh=32.0),
        ])
        r = client.get(URL)
        v = r.json()
        assert v["state"] == "on_the_way" and v["to"]["id"] == "colle" and v["services"] == ["energy_workshop"], v
        assert v["scheduled_start_local"] == "16:00" and v["eta_uncertainty_min"] >= 1
        eta = datetime.fromisoformat(v["eta_utc"].replace("Z", "+00:00"))
        assert timedelta(minutes=2) < eta - clock() < timedelta(minutes=10)
        assert v["eta_local"] == eta.astimezone(datetime.fromisoformat(v["eta_local_time"]).tzinfo).strftime("%H:%M")
        for raw in (RAW_LAT, RAW_LON, RAW_LAT - 0.001):
            assert str(raw) not in r.text
        # switched off outside a window: not in service, only the next stop
        store.write([smp(Stream.STATUS, clock.ts_ms - 1000, state="online", in_service=False)])
        v = client.get(URL).json()
        assert v["state"] == "not_in_service" and v["next_stop"]["id"] == "colle" and v["next_start_local"] == "16:00"
        assert v["next_start_utc"] == "2026-05-04T14:00:00Z" and v["next_date_local"] == "2026-05-04"
        assert "to" not in v and "stop" not in v


def test_the_view_is_computed_once_per_second_of_the_clock_and_dropped_on_a_staff_change(tmp_path: Path) -> None:
    clock = Clock(T0 + 80 * MIN)  # 15:20, between the windows
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([smp(Stream.STATUS, clock.ts_ms - MIN, state="online", in_service=False)])
    with TestClient(_app(store, tmp_path, clock, location_fresh_s=1.0)) as client:
        assert client.get(URL).json()["state"] == "not_in_service"
        store.write([smp(Stream.STATUS, clock.ts_ms - 1000, state="online", in_service=True)])
        assert client.get(URL).json()["state"] == "not_in_service"  # the copy of this second
        clock.ts_ms += 999
        assert client.get(URL).json()["state"] == "not_in_service"
        clock.ts_ms += 1
        assert client.get(URL).json()["state"] == "on_the_way"  # a second later: computed again
        store.write([smp(Stream.STATUS, clock.ts_ms - 500, state="online", in_service=False)])
        client.app.state.schedules.save(_schedule())
        LocationHub.of(client.app.state.broadcaster).reload("van-1")  # what a staff PUT does
        assert client.get(URL).json()["state"] == "not_in_service"
        assert client.get("/api/v1/campers/nobody/location").status_code == 404  # unknown campers are not cached
        assert client.get("/api/v1/campers/nobody/location").status_code == 404


def test_a_camper_without_a_schedule_and_unknown_campers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    with TestClient(_app(store, tmp_path, Clock(T0), with_schedule=False)) as client:
        assert client.get(URL).json()["detail"] == "unknown camper 'van-1' (no schedule, nothing stored)"
        assert client.get("/api/v1/campers/NOPE/location").status_code == 422
        store.write([smp(Stream.STATUS, T0 - MIN, state="online", in_service=False), _pos(T0 - 5000, RAW_LAT, RAW_LON)])
        v = client.get(URL).json()
        assert v["state"] == "not_in_service" and v["next_stop"] is None
        store.write([smp(Stream.STATUS, T0 - 1000, state="online", in_service=True)])
        r = client.get(URL)
        assert r.json()["state"] == "in_service" and "no stop" in r.json()["note"]
        assert str(RAW_LAT) not in r.text and str(RAW_LON) not in r.text


def _live(b: Broadcaster, stream: str, ts: int, seq: int, **fields) -> None:
    b.publish_threadsafe("van-1", stream, ts, sample_view("van-1", stream, ts, {"seq": seq, **fields}))


def _raw_events(lines, n: int) -> tuple[list, list[str]]:
    """The next n events and the raw lines they came in."""
    seen: list[str] = []

    def tee():
        for line in lines:
            seen.append(line)
            yield line

    return read_events(tee(), n), seen


def test_stream_sends_changes_only_never_a_raw_position_and_honours_last_event_id(tmp_path: Path) -> None:
    clock = Clock(T0 + 80 * MIN)  # 15:20: between the windows
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([smp(Stream.STATUS, clock.ts_ms - MIN, state="online", in_service=False)])
    with TestClient(_app(store, tmp_path, clock)) as client:
        b: Broadcaster = client.app.state.broadcaster
        raw_lines: list[str] = []
        with client.stream("GET", URL + "/stream") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            [first], raw = _raw_events(lines, 1)
            raw_lines += raw
            assert first.event == "location" and first.data["state"] == "not_in_service" and first.data["next_stop"]["id"] == "colle"
            # switched on and driving: positions between the stops
            _live(b, "status", clock.ts_ms - 2000, 2, state="online", in_service=True)
            _live(b, "position", clock.ts_ms - 1500, 3, lat=RAW_LAT, lon=RAW_LON, fix=3, speed_kmh=30.0)
            # the same again a little later: the view does not change, nothing is sent
            _live(b, "position", clock.ts_ms - 1000, 4, lat=RAW_LAT, lon=RAW_LON, fix=3, speed_kmh=30.0)
            _live(b, "status", clock.ts_ms - 500, 5, state="online", in_service=False)
            events, raw = _raw_events(lines, 3)
            raw_lines += raw
            states = [e.data["state"] for e in events]
            # status on (no fix yet: on the way without ETA), the fix (ETA), switched off again
            assert states == ["on_the_way", "on_the_way", "not_in_service"], states
            assert events[0].data.get("eta_local") is None and events[1].data["eta_local"] is not None
            last_id = events[2].id
        text = "\n".join(raw_lines)
        assert str(RAW_LAT) not in text and str(RAW_LON) not in text and "30.0" not in text
        # reconnect with Last-Event-ID: the view it names is still current, so nothing until a change
        with client.stream("GET", URL + "/stream", headers={"Last-Event-ID": last_id}) as r:
            lines = r.iter_lines()
            _live(b, "status", clock.ts_ms, 6, state="online", in_service=True)
            [again] = read_events(lines, 1)
            assert again.data["state"] == "on_the_way" and again.data["eta_local"] is not None  # the live fix is remembered
        # an unknown id: the current view at once
        with client.stream("GET", URL + "/stream", headers={"Last-Event-ID": "junk"}) as r:
            [cur] = read_events(r.iter_lines(), 1)
            assert cur.data["state"] == "on_the_way"
        assert b.subscribers == 0


def test_stream_recomputes_as_time_passes(tmp_path: Path) -> None:
    """No message at all: the periodic refresh notices that a window started (and a schedule saved meanwhile)."""
    clock = Clock(T0 + 80 * MIN)
    store = SqliteStore(tmp_path / "s.sqlite")
    with TestClient(_app(store, tmp_path, clock, location_refresh_s=0.1)) as client:
        with client.stream("GET", URL + "/stream") as r:
            lines = r.iter_lines()
            [first] = read_events(lines, 1)
            assert first.data["state"] == "not_in_service"
            clock.ts_ms = T0 + 115 * MIN  # 15:55: inside the next window's grace margin
            [second] = read_events(lines, 1)
            assert second.data["state"] == "in_service_at_stop" and second.data["stop"]["id"] == "colle"
            client.app.state.schedules.save(_schedule().model_copy(update={"visits": _schedule().visits[:1]}))
            [third] = read_events(lines, 1)
            assert third.data["state"] == "not_in_service" and third.data["next_stop"]["id"] == "piazza"


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_live_positions_from_the_broker_reach_the_stream_only_filtered(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Real Mosquitto: the camper publishes its status and raw positions between the stops; the
    stream says "on the way to Colle" and never carries the coordinates."""
    camper = mosquitto.add_camper("van-1")
    api_user = mosquitto.add_service("camperhub-api", "api")
    clock = Clock(T0 + 80 * MIN)
    schedules = ScheduleRepository(tmp_path / "schedules.sqlite")
    schedules.save(_schedule())
    app = create_app(
        settings(live=True), SqliteStore(tmp_path / "live.sqlite"), schedules=schedules, clock=clock,
        mqtt=MqttClientSettings(mqtt_url=mosquitto.url(api_user)),
    )
    with TestClient(app) as client, MqttTestClient(mosquitto, camper) as van:
        assert client.app.state.live.subscribed.wait(10)
        van.connect()
        van.publish(topic("van-1", "status"), encode_envelope("van-1", "status", [{"seq": 1, "ts": clock.ts_ms - 3000, "state": "online", "in_service": True}]))
        b: Broadcaster = client.app.state.broadcaster
        _wait(lambda: b.latest("van-1", "status") is not None)
        with client.stream("GET", URL + "/stream") as r:
            lines = r.iter_lines()
            [first], raw = _raw_events(lines, 1)
            assert first.data["state"] == "on_the_way" and first.data.get("eta_local") is None
            positions = [
                {"seq": i, "ts": clock.ts_ms - 2000 + 500 * i, "lat": RAW_LAT + 0.0001 * i, "lon": RAW_LON, "fix": 3, "speed_kmh": 31.0}
                for i in range(1, 4)
            ]
            van.publish(topic("van-1", "position"), encode_envelope("van-1", "position", positions))
            [upd], raw2 = _raw_events(lines, 1)
            assert upd.data["state"] == "on_the_way" and upd.data["to"]["id"] == "colle" and upd.data["eta_local"] is not None
        text = json.dumps([first.data, upd.data]) + "\n".join(raw + raw2)
        for p in positions:
            assert str(p["lat"]) not in text
        assert str(RAW_LON) not in text
