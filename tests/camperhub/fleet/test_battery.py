"""Battery report and summary over real stores (SQLite and InfluxDB) with constructed
histories whose answers are known: a battery losing 2 % of its capacity a month, a
drifting state of charge, a BMS with one weak cell, a monitor without a current field."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from camperhub.contract import Stream
from camperhub.fleet.battery import SummaryCache, battery_report, battery_summary
from camperhub.fleet.battery_model import NOT_ENOUGH, BatterySpec
from camperhub.store.base import Store, StoredSample

CAMPER = "van-bat"
NAMEPLATE_AH = 200.0
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS_PER_MONTH = 30.4375


def write_history(store: Store, start: datetime, step: timedelta, columns: dict[str, np.ndarray], fold: bool = True) -> datetime:
    """Write one sample per ``step`` from ``start`` with the given fields (NaN = absent) and,
    with ``fold``, fold the per-minute rollups as the ingest does; the end of the history.

    Unfolded minutes are read from raw, with the same answers (the store's conformance
    suite checks it): the half-year history skips the fold, which on InfluxDB costs more
    than the rest of the test together."""
    n = len(next(iter(columns.values())))
    t0_ms = int(start.timestamp() * 1000)
    step_ms = int(step / timedelta(milliseconds=1))
    samples = []
    for k in range(n):
        fields: dict[str, object] = {"seq": k + 1}
        for name, col in columns.items():
            v = col[k]
            if isinstance(v, str) or not np.isnan(v):
                fields[name] = int(v) if name == "battery_cycles" else (v if isinstance(v, str) else float(v))
        samples.append(StoredSample(CAMPER, Stream.ENERGY, t0_ms + k * step_ms, fields))
    for i in range(0, n, 5_000):
        store.write(samples[i:i + 5_000])
    while fold and store.rollup(datetime.now(UTC)):
        pass
    return start + n * step


def daily_cycles(days: int, step: timedelta, capacity_ah: Callable[[float], float]) -> dict[str, np.ndarray]:
    """Each day: 2 h full (float), 12 h at -10 A, then +12 A until refilled (bulk, then
    float at 100 %). The SoC is the true one of a battery of ``capacity_ah(day)``."""
    h = step / timedelta(hours=1)
    per_day = int(timedelta(days=1) / step)
    amps, socs, states = [], [], []
    soc = 100.0
    for k in range(days * per_day):
        day, slot = divmod(k, per_day)
        hour = slot * h
        a = 0.0 if hour < 2 else -10.0 if hour < 14 else 12.0
        if a > 0 and soc >= 100.0:
            a = 0.0
        soc = min(100.0, soc + a * h / capacity_ah(day + hour / 24) * 100.0)
        amps.append(a)
        socs.append(soc)
        states.append("float" if soc >= 100.0 else "bulk" if a > 0 else "off")
    return {"battery_current_a": np.array(amps), "battery_soc_pct": np.array(socs), "charge_state": np.array(states, dtype=object)}


def test_capacity_fading_two_percent_a_month(store: Store) -> None:
    step = timedelta(minutes=30)
    days = 183
    cols = daily_cycles(days, step, lambda d: NAMEPLATE_AH * (1 - 0.02 * d / DAYS_PER_MONTH))
    cols["battery_voltage_v"] = 13.2 + 0.008 * cols["battery_current_a"]
    end = write_history(store, START, step, cols, fold=False)
    report = battery_report(store, CAMPER, START, end, nameplate_ah=NAMEPLATE_AH, every=step)
    trend = report.soh_trend_pct_per_month
    assert trend.value == pytest.approx(-2.0, abs=0.15), trend
    assert trend.confidence == "high"
    # last 30 days: months 5.0-6.0 → SoH 88-90 %
    assert report.soh_pct.value == pytest.approx(100 * (1 - 0.02 * (days - 15) / DAYS_PER_MONTH), abs=1.0)
    assert report.capacity_ah.value == pytest.approx(report.soh_pct.value * 2, rel=0.01)
    # 120 Ah discharged a day
    assert report.equivalent_cycles.value == pytest.approx(days * 120 / NAMEPLATE_AH, rel=0.01)
    assert report.dod_histogram.value["half_cycles"] == days
    assert report.days_since_full_reset.value == pytest.approx(0.0, abs=0.5)
    assert report.cell_imbalance_mv.value is None  # no BMS cells in this history
    json.dumps(report.public())


def test_drifting_state_of_charge(store: Store) -> None:
    step = timedelta(minutes=10)
    h = step / timedelta(hours=1)
    n = 10 * 144
    # full for an hour, then a triangle 100 → 30 → 80 → 30 ... at ±10 A (never full again)
    amps = np.zeros(n)
    soc = np.zeros(n)
    s, direction = 100.0, -1
    for k in range(n):
        if k >= 6:
            if s <= 30.0:
                direction = 1
            elif s >= 80.0 and direction == 1:
                direction = -1
            amps[k] = 10.0 * direction
            s += amps[k] * h / NAMEPLATE_AH * 100.0
        soc[k] = s
    days = np.arange(n) * (step / timedelta(days=1))
    device = soc + np.where(np.arange(n) >= 6, 1.0 * (days - days[5]), 0.0)  # +1 point/day from the count
    end = write_history(store, START, step, {"battery_current_a": amps, "battery_soc_pct": device})
    report = battery_report(store, CAMPER, START, end, nameplate_ah=NAMEPLATE_AH, every=step)
    drift = report.soc_drift_pct
    expected = days[-1] - days[5]
    assert drift.value == pytest.approx(expected, abs=1.0), drift
    assert "drift rate +1.0" in (drift.note or "")
    assert report.days_since_full_reset.value == pytest.approx(days[-1] - days[5], abs=0.1)


def test_bms_with_one_weak_cell(store: Store) -> None:
    step = timedelta(hours=1)
    days = 92
    cols = daily_cycles(days, step, lambda d: NAMEPLATE_AH)
    n = len(cols["battery_current_a"])
    months = np.arange(n) * (step / timedelta(days=1)) / DAYS_PER_MONTH
    pack_v = 13.3 + 0.005 * cols["battery_current_a"]
    sag_v = np.where(cols["battery_current_a"] < 0, 0.020 + 0.025 * months, 0.0)  # the weak cell sags more each month
    cols["cell_voltage_max_v"] = pack_v / 4 + 0.004
    cols["cell_voltage_min_v"] = pack_v / 4 - 0.004 - sag_v
    cols["battery_soh_pct"] = np.full(n, 97.0)
    cols["battery_cycles"] = np.floor(np.arange(n) * (step / timedelta(days=1)) * 0.6) + 100
    end = write_history(store, START, step, cols)
    report = battery_report(store, CAMPER, START, end, every=step)
    imb = report.cell_imbalance_mv.value
    assert imb["flagged"] is True
    assert imb["trend_mv_per_month"] == pytest.approx(25.0, rel=0.2)
    p95 = [m["p95_mv"] for m in imb["monthly"]]
    assert p95 == sorted(p95) and p95[-1] > p95[0] + 40
    assert imb["high_soc_median_mv"] == pytest.approx(8.0, abs=1.0)  # balanced at the top: the sag is a load effect

    summary = battery_summary(store, CAMPER, end)
    assert summary.soh_pct == 97.0 and summary.soh_source == "bms"
    assert summary.cycles == float(cols["battery_cycles"][-1]) and summary.cycles_source == "bms"
    assert summary.soc_pct == pytest.approx(cols["battery_soc_pct"][-1])
    assert summary.days_since_full_reset is not None and summary.days_since_full_reset < 1.0


def test_no_current_field_is_not_enough_data(store: Store) -> None:
    step = timedelta(minutes=10)
    cols = daily_cycles(3, step, lambda d: NAMEPLATE_AH)
    del cols["battery_current_a"]
    end = write_history(store, START, step, cols)
    report = battery_report(store, CAMPER, START, end, every=step)
    for name in ("equivalent_cycles", "capacity_ah", "soh_pct", "soh_trend_pct_per_month", "soc_drift_pct",
                 "internal_resistance_mohm"):
        fig = getattr(report, name)
        assert fig.value is None, name
        assert fig.reason and fig.reason.startswith(NOT_ENOUGH), name
    # what SoC alone supports is still there
    assert report.dod_histogram.value["half_cycles"] == 3
    assert report.days_since_full_reset.known
    out = report.public()
    assert out["equivalent_cycles"] == {"value": None, "reason": report.equivalent_cycles.reason,
                                        "method": report.equivalent_cycles.method}


def test_summary_cache_serves_and_learns_from_the_report(store: Store) -> None:
    step = timedelta(minutes=10)
    cols = daily_cycles(4, step, lambda d: 180.0)
    end = write_history(store, START, step, cols)
    cache = SummaryCache()
    first = battery_summary(store, CAMPER, end, cache)
    assert first.soh_pct is None and first.cycles is None  # no BMS, no report yet: unknown, not 0
    battery_report(store, CAMPER, START, end, spec=BatterySpec(nameplate_ah=NAMEPLATE_AH), every=step, cache=cache)
    later = battery_summary(store, CAMPER, end + timedelta(seconds=1), cache)
    assert later.soh_pct == pytest.approx(90.0, abs=0.5) and later.soh_source == "estimate"
    assert later.cycles == pytest.approx(4 * 120 / NAMEPLATE_AH, rel=0.01)
    assert battery_summary(store, CAMPER, end + timedelta(seconds=2), cache) is later  # within the TTL
    assert later.last_full_reset is not None and later.days_since_full_reset is not None


def test_summary_of_an_unknown_camper_is_empty(store: Store) -> None:
    s = battery_summary(store, "nobody", START)
    assert s.soc_pct is None and s.soh_pct is None and s.days_since_full_reset is None


def test_bad_windows_are_refused_with_a_clear_message(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        battery_report(store, CAMPER, datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="before it starts"):
        battery_report(store, CAMPER, START, START - timedelta(days=1))
    with pytest.raises(ValueError, match="whole number of minutes"):
        battery_report(store, CAMPER, START, START + timedelta(days=1), every=timedelta(seconds=30))


def test_coarse_report_takes_resistance_from_the_last_days_at_one_minute(store: Store) -> None:
    """A report at 5-min intervals still finds the pack's 8 mΩ from per-minute load steps."""
    n = 2 * 1440
    rng = np.random.default_rng(5)
    amps = np.where((np.arange(n) // 7) % 2 == 0, -3.0, -33.0) + rng.normal(0, 0.3, n)
    amps[::97] = 20.0  # some charging too
    soc = 90.0 + np.cumsum(amps) / 60.0 / NAMEPLATE_AH * 100.0 * 0.01  # nearly steady
    cols = {"battery_current_a": amps, "battery_voltage_v": 13.25 + 0.008 * amps, "battery_soc_pct": soc}
    end = write_history(store, START, timedelta(minutes=1), cols, fold=False)
    report = battery_report(store, CAMPER, START, end, every=timedelta(minutes=5))
    r = report.internal_resistance_mohm
    assert r.value == pytest.approx(8.0, rel=0.05), r
    assert "per-minute means of the last 2 days" in (r.note or "")
    assert report.every_s == 300


def test_summary_finds_the_last_full_charge_to_the_hour(store: Store) -> None:
    step = timedelta(hours=1)
    n = 10 * 24
    soc = np.full(n, 70.0)
    soc[100] = 100.0  # full at hour 100 (day 4, 04:00)
    end = write_history(store, START, step, {"battery_soc_pct": soc, "battery_current_a": np.full(n, -1.0)})
    s = battery_summary(store, CAMPER, end)
    assert s.last_full_reset == START + timedelta(hours=101)  # the end of that hour
    assert s.days_since_full_reset == pytest.approx((end - START - timedelta(hours=101)) / timedelta(days=1), abs=0.01)


def test_summary_stops_looking_after_35_days(store: Store) -> None:
    step = timedelta(hours=6)
    n = 40 * 4
    soc = np.full(n, 60.0)
    soc[0] = 100.0
    end = write_history(store, START, step, {"battery_soc_pct": soc})
    s = battery_summary(store, CAMPER, end)
    assert s.last_full_reset is None and s.days_since_full_reset is None
    assert s.full_reset_looked_back_days == pytest.approx(35.0)
    report = battery_report(store, CAMPER, START, end)  # the report searches its whole window
    assert report.days_since_full_reset.value == pytest.approx(40 - 0.25, abs=0.01)
    assert report.every_s == 900  # a 40-day window: 15-minute means


def test_report_of_a_camper_without_data_is_not_enough_data(store: Store) -> None:
    report = battery_report(store, "nobody", START, START + timedelta(days=3))
    assert report.intervals == 0 and report.coverage_pct == 0.0
    out = report.public()
    json.dumps(out)
    assert all(out[name]["value"] is None and out[name]["reason"].startswith(NOT_ENOUGH) for name in report.FIGURES)


def test_summary_cache_searches_only_what_came_since(store: Store) -> None:
    step = timedelta(hours=6)
    soc = np.full(40 * 4, 60.0)
    end = write_history(store, START, step, {"battery_soc_pct": soc})
    cache = SummaryCache(ttl=timedelta(0))
    first = battery_summary(store, CAMPER, end, cache)
    assert first.last_full_reset is None and first.full_reset_looked_back_days == pytest.approx(35.0)
    # a full charge arrives a day later: the incremental search finds it
    write_history(store, end + timedelta(days=1), step, {"battery_soc_pct": np.array([100.0, 80.0])})
    now = end + timedelta(days=2)
    later = battery_summary(store, CAMPER, now, cache)
    assert later.last_full_reset == end + timedelta(days=1, hours=1)
    again = battery_summary(store, CAMPER, now + timedelta(hours=3), cache)
    assert again.last_full_reset == later.last_full_reset
    assert again.full_reset_looked_back_days == pytest.approx((now + timedelta(hours=3) - later.last_full_reset) / timedelta(days=1), abs=0.01)
