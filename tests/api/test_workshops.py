"""Energy endpoints against the real stores: now, summary per Europe/Rome day, series (JSON and CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from camperhub.api.routers.workshops import auto_every
from camperhub.contract import ChargeState, Stream
from camperhub.store import base as store_base
from camperhub.store.base import Store
from tests.api.conftest import T0, now_ms, smp

pytestmark = pytest.mark.timeout(60)
E = Stream.ENERGY


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
        ({"start": "2025-05-04T00:00:00Z", "end": "2026-05-04T00:00:00Z", "every": "1s"}, "more than 5000"),
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


def test_series_without_every_chooses_an_interval_that_keeps_a_few_thousand_points(sqlite_api) -> None:
    client, store = sqlite_api
    store.write([smp(E, T0 + i * 3600_000, pv_power_w=float(i)) for i in range(48)])  # hourly readings over two days
    r = client.get("/api/v1/campers/van-1/energy/series", params={"fields": "pv_power_w", "start": "2026-01-01", "end": "2026-12-31"})
    body = r.json()
    assert r.status_code == 200 and body["every_s"] == 7200 and body["aggregate"] == "mean"  # a year: 2 h, 4,368 intervals
    assert len(body["time"]) == 24 and body["values"]["pv_power_w"][0] == 0.5
    r = client.get("/api/v1/campers/van-1/energy/series", params={"fields": "pv_power_w", "start": "2026-05-04T12:00:00Z", "end": "2026-05-04T12:30:00Z"})
    assert r.json()["every_s"] is None and r.json()["values"]["pv_power_w"] == [0.0]  # up to an hour: raw


def test_auto_every_is_the_smallest_step_within_the_limit() -> None:
    day = datetime(2026, 5, 4, tzinfo=UTC)
    assert auto_every(day, day + timedelta(minutes=59)) is None
    assert auto_every(day, day + timedelta(days=1)) == timedelta(minutes=1)
    assert auto_every(day, day + timedelta(days=7)) == timedelta(minutes=5)  # 2,016 intervals; 2 min would be 5,040
    assert auto_every(day, day + timedelta(days=400)) == timedelta(hours=2)  # 4,800 intervals


# -- /energy/summary ------------------------------------------------------------------


def _minutes(store: Store, start_ms: int, n: int, **fields: object) -> None:
    store.write([smp(E, start_ms + i * MINUTE, **fields) for i in range(n)])


MINUTE = 60_000
MAY4 = 1_777_845_600_000  # 2026-05-04T00:00+02:00, local midnight


def test_summary_per_local_day_with_totals_json_and_csv(api: TestClient, store: Store) -> None:
    _minutes(store, MAY4, 1440, pv_power_w=100.0, load_power_w=50.0, battery_power_w=50.0, shore_power=False)
    r = api.get("/api/v1/campers/van-1/energy/summary", params={"start": "2026-05-04", "end": "2026-05-05"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["day"] for d in body["days"]] == ["2026-05-04", "2026-05-05"] and body["message"] is None
    day, empty = body["days"]
    assert day["start"] == "2026-05-03T22:00:00Z" and day["pv_wh"] == 2400.0 and day["load_wh"] == 1200.0
    assert day["self_sufficiency_pct"] == 100.0 and day["co2_avoided_kg"] == round(2.4 * body["co2"]["kg_per_kwh"], 3)
    assert day["equivalents"]["ebike_km"] == 240.0 and body["equivalents"]["ebike_km"]["wh_each"] == 10.0
    assert empty["coverage_pct"] == 0.0 and empty["pv_wh"] is None and empty["low_coverage"] is True  # a gap, not 0
    assert body["totals"]["pv_wh"] == 2400.0 and body["totals"]["coverage_pct"] == 50.0
    r = api.get("/api/v1/campers/van-1/energy/summary", params={"start": "2026-05-04", "end": "2026-05-05"}, headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv") and [x["day"] for x in rows] == ["2026-05-04", "2026-05-05", "total"]
    assert float(rows[0]["pv_wh"]) == 2400.0 and rows[1]["pv_wh"] == ""


def test_summary_of_a_window_without_data_says_so(api: TestClient, store: Store) -> None:
    _minutes(store, MAY4, 10, pv_power_w=1.0)
    body = api.get("/api/v1/campers/van-1/energy/summary", params={"start": "2025-01-01", "end": "2025-01-03"}).json()
    assert "no energy readings" in body["message"] and len(body["days"]) == 3
    assert body["totals"]["pv_wh"] is None and body["totals"]["coverage_pct"] == 0.0


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"start": "2026-05-05", "end": "2026-05-04"}, "must not be after end"),
        ({"start": "2024-01-01", "end": "2026-05-04"}, "longer than 400 days"),
        ({"start": "2026-05-04T12:00:00Z"}, "is not a Europe/Rome day"),
        ({"start": "2026-02-30"}, "is not a date"),
        ({"colour": "red"}, "colour: unknown parameter"),
    ],
)
def test_absurd_summary_requests_are_422_naming_the_problem(sqlite_api, params: dict[str, str], problem: str) -> None:
    client, store = sqlite_api
    _minutes(store, MAY4, 10, pv_power_w=1.0)
    r = client.get("/api/v1/campers/van-1/energy/summary", params=params)
    assert r.status_code == 422, r.text
    assert problem in r.json()["detail"]


def test_summary_of_an_unknown_camper_is_404(sqlite_api) -> None:
    client, _ = sqlite_api
    r = client.get("/api/v1/campers/nobody/energy/summary")
    assert r.status_code == 404 and "unknown camper" in r.json()["detail"]
