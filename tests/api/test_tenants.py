"""Public endpoints against the real stores: campers, rate limits (energy: tests/api/test_workshops.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.contract import Stream
from camperhub.store.base import Store
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import MIN, T0, settings, smp

pytestmark = pytest.mark.timeout(60)
E = Stream.ENERGY


# -- /campers -----------------------------------------------------------------------


def test_campers_lists_each_with_its_latest_status(api: TestClient, store: Store) -> None:
    assert api.get("/api/v1/campers").json() == {"campers": []}
    store.write([
        smp(Stream.STATUS, T0, camper="van-1", state="online", mode="live", in_service=True),
        smp(E, T0 + 5000, camper="van-1", pv_power_w=120.0),
        smp(Stream.STATUS, T0 - MIN, camper="van-2", state="offline", mode="normal", in_service=False),
    ])
    r = api.get("/api/v1/campers")
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=10"
    by = {c["camper"]: c for c in r.json()["campers"]}
    assert by["van-1"]["state"] == "online" and by["van-1"]["mode"] == "live" and by["van-1"]["in_service"] is True
    assert by["van-1"]["last_seen"] == {"utc": "2026-05-04T12:00:05Z", "local": "2026-05-04T14:00:05+02:00"}
    assert by["van-1"]["status_time"]["utc"] == "2026-05-04T12:00:00Z"
    assert by["van-2"]["state"] == "offline" and by["van-2"]["in_service"] is False
    assert by["van-2"]["last_seen"]["local"] == "2026-05-04T13:59:00+02:00"


def test_campers_answers_304_while_nothing_changed(sqlite_api) -> None:
    client, store = sqlite_api
    store.write([smp(E, T0, pv_power_w=1.0)])  # energy only: state unknown
    first = client.get("/api/v1/campers")
    assert first.json()["campers"][0]["state"] == "unknown"
    tag = first.headers["etag"]
    again = client.get("/api/v1/campers", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    store.write([smp(Stream.STATUS, T0 + 1000, state="online")])
    changed = client.get("/api/v1/campers", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag


# -- rate limit ---------------------------------------------------------------------------


def test_public_endpoints_are_rate_limited_per_client(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "api.sqlite")
    with TestClient(create_app(settings(rate_burst=3, rate_per_s=0.01), store)) as client:
        assert [client.get("/api/v1/campers").status_code for _ in range(3)] == [200] * 3
        r = client.get("/api/v1/campers")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 90
        assert "too many requests" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200  # operations are not limited
        assert "camperhub_api_rate_limited_total 1.0" in client.get("/metrics").text
