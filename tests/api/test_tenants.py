"""Public endpoints against the real stores: campers, energy now, energy series (JSON and CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.contract import ChargeState, Stream
from camperhub.store import base as store_base
from camperhub.store.base import Store
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import MIN, T0, now_ms, settings, smp

pytestmark = pytest.mark.timeout(60)
E = Stream.ENERGY


@pytest.fixture
def sqlite_api(tmp_path: Path):
    store = SqliteStore(tmp_path / "api.sqlite")
    with TestClient(create_app(settings(), store)) as client:
        yield client, store


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


# -- /energy/now ----------------------------------------------------------------------


def test_energy_now_gives_the_latest_fields_with_units_and_age(api: TestClient, store: Store) -> None:
    ts = now_ms() - 10_000
    store.write([
        smp(E, ts - 5000, pv_power_w=50.0),
        smp(E, ts, seq=99, pv_power_w=200.5, battery_voltage_v=13.3, charge_state=ChargeState.BULK, shore_power=False),
    ])
    r = api.get("/api/v1/campers/van-1/energy/now")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seq"] == 99 and 9 <= body["age_s"] < 60
    assert body["fields"] == {
        "pv_power_w": {"value": 200.5, "unit": "W"},
        "battery_voltage_v": {"value": 13.3, "unit": "V"},
        "charge_state": {"value": "bulk", "unit": None},
        "shore_power": {"value": False, "unit": None},
    }
    assert body["time"].endswith("Z") and body["local_time"][-6:] in ("+01:00", "+02:00")
    assert r.headers["cache-control"] == "public, max-age=10"


def test_energy_now_404_for_an_unknown_camper_or_one_without_energy(api: TestClient, store: Store) -> None:
    r = api.get("/api/v1/campers/nobody/energy/now")
    assert r.status_code == 404 and r.json() == {"detail": "unknown camper 'nobody'"}
    store.write([smp(Stream.STATUS, T0, state="online")])
    r = api.get("/api/v1/campers/van-1/energy/now")
    assert r.status_code == 404 and "no energy readings" in r.json()["detail"]


def test_a_camper_id_that_cannot_be_one_is_422(sqlite_api) -> None:
    client, _ = sqlite_api
    for bad in ("Van-1", "van_1", "x" * 33):
        r = client.get(f"/api/v1/campers/{bad}/energy/now")
        assert r.status_code == 422 and "does not match" in r.json()["detail"], bad


# -- /energy/series -----------------------------------------------------------------


def _fill(store: Store) -> None:
    store.write([smp(E, T0 + i * 10_000, pv_power_w=float(i), battery_soc_pct=50.0 + i) for i in range(12)])  # two minutes


def test_series_raw_and_aggregated_json(api: TestClient, store: Store) -> None:
    _fill(store)
    r = api.get("/api/v1/campers/van-1/energy/series", params={"fields": "pv_power_w,battery_soc_pct,load_power_w", "start": "2026-05-04T12:00:00Z", "end": "2026-05-04T12:02:00Z"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["units"] == {"pv_power_w": "W", "battery_soc_pct": "%", "load_power_w": "W"}
    assert body["time"][:2] == ["2026-05-04T12:00:00Z", "2026-05-04T12:00:10Z"] and len(body["time"]) == 12
    assert body["values"]["pv_power_w"] == [float(i) for i in range(12)]
    assert body["values"]["load_power_w"] == [None] * 12  # never reported: null, not zero
    assert body["every_s"] is None and body["aggregate"] is None
    # the same window given in Europe/Rome local time with its offset; every in minutes
    r = api.get("/api/v1/campers/van-1/energy/series", params={"fields": "pv_power_w", "start": "2026-05-04T14:00:00+02:00", "end": "2026-05-04T14:02:00+02:00", "every": "1m", "aggregate": "max"})
    body = r.json()
    assert r.status_code == 200 and body["start"] == "2026-05-04T12:00:00Z" and body["every_s"] == 60
    assert body["time"] == ["2026-05-04T12:00:00Z", "2026-05-04T12:01:00Z"] and body["values"]["pv_power_w"] == [5.0, 11.0]


def test_series_as_csv(api: TestClient, store: Store) -> None:
    _fill(store)
    r = api.get(
        "/api/v1/campers/van-1/energy/series",
        params={"fields": "pv_power_w", "start": "2026-05-04", "end": "2026-05-05", "every": "30s", "aggregate": "mean"},
        headers={"Accept": "text/csv"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["time", "pv_power_w"]
    assert rows[1] == ["2026-05-04T12:00:00Z", "1.0"] and len(rows) == 5  # (0+1+2)/3 in the first 30 s


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"fields": "pv_power_w,bogus"}, "'bogus' not energy fields"),
        ({"fields": "seq"}, "not energy fields"),
        ({"colour": "red"}, "colour: unknown parameter"),
        ({"start": "2026-05-04T13:00:00Z", "end": "2026-05-04T12:00:00Z"}, "must be before end"),
        ({"start": "2026-05-04T12:00:00"}, "has no UTC offset"),
        ({"start": "yesterday"}, "start: 'yesterday' is not an ISO 8601 time"),
        ({"start": "2025-05-04T00:00:00Z", "end": "2026-05-04T00:00:00Z", "every": "1s"}, "more than 100000"),
        ({"start": "2025-01-01T00:00:00Z", "end": "2026-05-04T00:00:00Z", "every": "1d"}, "longer than 400 days"),
        ({"every": "1.5m"}, "every: '1.5m' is not a whole number"),
        ({"every": "0s"}, "is not a whole number"),
        ({"fields": "charge_state", "every": "1m"}, "aggregate=mean is undefined for charge_state"),
        ({"aggregate": "median"}, "aggregate"),
    ],
)
def test_absurd_series_requests_are_422_naming_the_problem(sqlite_api, params: dict[str, str], problem: str) -> None:
    client, store = sqlite_api
    _fill(store)
    r = client.get("/api/v1/campers/van-1/energy/series", params=params)
    assert r.status_code == 422, r.text
    assert problem in r.json()["detail"]


def test_a_raw_series_beyond_max_rows_is_422(sqlite_api, monkeypatch: pytest.MonkeyPatch) -> None:
    client, store = sqlite_api
    _fill(store)
    monkeypatch.setattr(store_base, "MAX_ROWS", 5)
    r = client.get("/api/v1/campers/van-1/energy/series", params={"start": "2026-05-04T12:00:00Z", "end": "2026-05-04T12:02:00Z"})
    assert r.status_code == 422 and "every=" in r.json()["detail"]
    r = client.get("/api/v1/campers/van-1/energy/series", params={"start": "2026-05-04T12:00:00Z", "end": "2026-05-04T12:02:00Z", "every": "1m"})
    assert r.status_code == 200 and len(r.json()["time"]) == 2


def test_series_of_an_unknown_camper_is_404(sqlite_api) -> None:
    client, _ = sqlite_api
    assert client.get("/api/v1/campers/nobody/energy/series").status_code == 404


def test_series_defaults_to_the_last_24_hours(sqlite_api) -> None:
    client, store = sqlite_api
    ts = now_ms() - 3600_000
    store.write([smp(E, ts, pv_power_w=10.0), smp(E, ts - 2 * 86400_000, pv_power_w=99.0)])
    body = client.get("/api/v1/campers/van-1/energy/series").json()
    assert body["values"]["pv_power_w"] == [10.0]
    end = datetime.fromisoformat(body["end"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - end).total_seconds()) < 30


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
