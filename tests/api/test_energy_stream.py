"""``GET /api/v1/campers/{camper}/energy/stream``: the current reading at once, live readings
from the Broadcaster, newer readings found in the store, ``Last-Event-ID``; on both stores."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.events import Broadcaster
from camperhub.api.routers import workshops
from camperhub.api.views import sample_view
from camperhub.contract import Stream
from camperhub.store.base import Store
from tests.api.conftest import T0, read_events, settings, smp

pytestmark = pytest.mark.timeout(60)
URL = "/api/v1/campers/van-1/energy/stream"


def _energy(ts: int, seq: int, camper: str = "van-1", **fields) -> tuple:
    return (camper, "energy", ts, sample_view(camper, "energy", ts, {"seq": seq, **fields}))


def test_current_reading_at_once_then_live_readings_and_last_event_id(store: Store) -> None:
    store.write([
        smp(Stream.ENERGY, T0 - 60_000, seq=6, pv_power_w=10.0),
        smp(Stream.ENERGY, T0, seq=7, pv_power_w=200.0, load_power_w=100.0, battery_power_w=100.0, battery_soc_pct=80.0, shore_power=False),
    ])
    with TestClient(create_app(settings(), store)) as client:
        b: Broadcaster = client.app.state.broadcaster
        with client.stream("GET", URL) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            [now] = read_events(lines, 1)
            assert now.event == "energy" and now.data["seq"] == 7 and now.data["time"] == "2026-05-04T12:00:00Z"
            assert now.data["fields"]["pv_power_w"] == 200.0
            assert now.data["flow"] == {"pv_w": 200.0, "load_w": 100.0, "battery_w": 100.0, "shore_w": 0.0, "shore_on": False, "soc_pct": 80.0}
            b.publish_threadsafe(*_energy(T0 - 5000, 5, pv_power_w=1.0))  # a late backlog reading: time only moves forward
            b.publish_threadsafe(*_energy(T0 + 1000, 8, pv_power_w=50.0, load_power_w=300.0, battery_power_w=-100.0, shore_power=True))
            b.publish_threadsafe(*_energy(T0 + 1000, 99, camper="van-2", pv_power_w=1.0))  # another camper: not sent
            b.publish_threadsafe("van-1", "status", T0 + 1500, sample_view("van-1", "status", T0 + 1500, {"seq": 3, "state": "online"}))
            b.publish_threadsafe(*_energy(T0 + 2000, 9, pv_power_w=60.0))
            upd = read_events(lines, 2)
            assert [e.data["seq"] for e in upd] == [8, 9] and all(e.event == "energy" for e in upd)
            assert upd[0].data["flow"]["shore_w"] == 150.0 and upd[0].data["flow"]["battery_w"] == -100.0
            assert upd[1].data["flow"]["load_w"] is None  # not reported: not known, never 0
        b.publish_threadsafe(*_energy(T0 + 3000, 10, pv_power_w=70.0))
        # a reconnect with Last-Event-ID gets only what it missed, not the current reading again
        with client.stream("GET", URL, headers={"Last-Event-ID": upd[0].id}) as r:
            again = read_events(r.iter_lines(), 2)
            assert [e.data["seq"] for e in again] == [9, 10]
        # an id of a previous process: the current reading (the newest, live one)
        with client.stream("GET", URL, headers={"Last-Event-ID": "0000.5"}) as r:
            [cur] = read_events(r.iter_lines(), 1)
            assert cur.data["seq"] == 10 and cur.data["flow"]["pv_w"] == 70.0
        assert b.subscribers == 0


def test_a_newer_reading_in_the_store_is_sent(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker feeds the Broadcaster: the stream finds new readings in the store."""
    monkeypatch.setattr(workshops, "ENERGY_STREAM_STORE_POLL_S", 0.2)
    store.write([smp(Stream.ENERGY, T0, seq=1, pv_power_w=100.0)])
    with TestClient(create_app(settings(), store)) as client:
        with client.stream("GET", URL) as r:
            lines = r.iter_lines()
            assert read_events(lines, 1)[0].data["seq"] == 1
            store.write([smp(Stream.ENERGY, T0 + 60_000, seq=2, pv_power_w=321.0, load_power_w=21.0)])
            [new] = read_events(lines, 1)
            assert new.data["seq"] == 2 and new.data["flow"]["pv_w"] == 321.0 and new.data["local_time"] == "2026-05-04T14:01:00+02:00"


def test_a_camper_without_energy_readings_gets_the_first_live_one(store: Store) -> None:
    store.write([smp(Stream.STATUS, T0, seq=1, state="online")])
    with TestClient(create_app(settings(), store)) as client:
        with client.stream("GET", URL) as r:
            assert r.status_code == 200
            client.app.state.broadcaster.publish_threadsafe(*_energy(T0 + 1000, 4, pv_power_w=12.0))
            [first] = read_events(r.iter_lines(), 1)
            assert first.data["seq"] == 4 and first.data["flow"]["pv_w"] == 12.0


def test_unknown_or_invalid_camper(store: Store) -> None:
    store.write([smp(Stream.ENERGY, T0, seq=1, pv_power_w=1.0)])
    with TestClient(create_app(settings(), store)) as client:
        r = client.get("/api/v1/campers/nobody/energy/stream")
        assert r.status_code == 404 and r.json()["detail"] == "unknown camper 'nobody'"
        r = client.get("/api/v1/campers/NO/energy/stream")
        assert r.status_code == 422 and "does not match" in r.json()["detail"]
        assert client.app.state.broadcaster.subscribers == 0
