"""The energy analyses on constructed series with known answers, on both real stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from camperhub.contract import Stream
from camperhub.store.base import Store, StoredSample
from camperhub.workshops import analysis as an
from camperhub.workshops.equivalents import ITALY_GRID_CO2_KG_PER_KWH, KETTLE_WH, PHONE_CHARGE_WH

pytestmark = pytest.mark.timeout(120)
CAMPER = "van-1"
STEP_S = 60  # one reading a minute: a day is 1,440 samples (23 h: 1,380; 25 h: 1,500)


def _day(store: Store, day: date, skip: tuple[int, int] | None = None, **fields: object) -> int:
    """One reading a minute over the Europe/Rome ``day`` (minus the hours ``skip`` = (from, to) after
    local midnight); the number of readings written."""
    start, end = an.day_window(day)
    t0 = int(start.timestamp() * 1000)
    n = int((end - start).total_seconds()) // STEP_S
    samples = []
    for i in range(n):
        if skip and skip[0] * 60 <= i < skip[1] * 60:
            continue
        samples.append(StoredSample(CAMPER, Stream.ENERGY, t0 + i * STEP_S * 1000, {"seq": len(samples) + 1, **fields}))
    store.write(samples)
    return len(samples)


def test_a_day_of_constant_100_w_pv_and_50_w_load(store: Store) -> None:
    day = date(2026, 5, 4)
    _day(store, day, pv_power_w=100.0, load_power_w=50.0, battery_power_w=50.0, battery_soc_pct=70.0, shore_power=False)
    t = an.daily_totals(store, CAMPER, day, day)[0]
    assert t.day == day and t.coverage_pct == pytest.approx(100.0)
    assert (t.start, t.end) == (datetime(2026, 5, 3, 22, tzinfo=UTC), datetime(2026, 5, 4, 22, tzinfo=UTC))
    assert t.pv_wh == pytest.approx(2400.0) and t.load_wh == pytest.approx(1200.0)
    assert t.battery_charge_wh == pytest.approx(1200.0) and t.battery_discharge_wh == pytest.approx(0.0)
    assert t.shore_wh == pytest.approx(0.0) and t.self_sufficiency_pct == pytest.approx(100.0)
    assert t.self_consumption_pct == pytest.approx(100.0)  # all of it used or stored
    assert t.peak_pv_w == pytest.approx(100.0) and t.peak_load_w == pytest.approx(50.0)
    assert t.sunny_hours == pytest.approx(24.0)  # 100 W is above the 48 W sunshine threshold
    assert t.co2_avoided_kg == pytest.approx(2.4 * ITALY_GRID_CO2_KG_PER_KWH)
    eq = {e.key: e for e in t.equivalents}
    assert eq["phone_charges"].count == pytest.approx(2400.0 / PHONE_CHARGE_WH)
    assert eq["kettles_boiled"].count == pytest.approx(2400.0 / KETTLE_WH) and eq["kettles_boiled"].assumption
    assert t.battery_soc_min_pct == t.battery_soc_max_pct == pytest.approx(70.0)
    # the same window through window_totals, and the power frame: one row a minute
    w = an.window_totals(store, CAMPER, t.start, t.end)
    assert w.pv_wh == pytest.approx(2400.0) and w.day is None
    frame = an.power_frame(store, CAMPER, t.start, t.end)
    assert len(frame) == 1440 and list(frame.columns) == list(an.POWER_COLUMNS)
    assert frame["pv_w"].eq(100.0).all() and frame["shore_w"].eq(0.0).all()


def test_without_a_battery_reading_the_unused_pv_is_not_self_consumed(store: Store) -> None:
    day = date(2026, 5, 4)
    _day(store, day, pv_power_w=100.0, load_power_w=50.0)
    t = an.daily_totals(store, CAMPER, day, day)[0]
    assert t.self_consumption_pct == pytest.approx(50.0)
    assert t.battery_charge_wh is None and t.shore_wh is None and t.self_sufficiency_pct is None  # unknown, not 0


def test_a_six_hour_gap_is_a_gap_with_its_coverage(store: Store) -> None:
    day = date(2026, 5, 4)
    _day(store, day, skip=(6, 12), pv_power_w=100.0, load_power_w=50.0, shore_power=False)
    t = an.daily_totals(store, CAMPER, day, day)[0]
    assert t.coverage_pct == pytest.approx(75.0) and t.low_coverage
    assert t.pv_wh == pytest.approx(1800.0) and t.load_wh == pytest.approx(900.0)  # 18 h of data, not 24
    assert t.sunny_hours == pytest.approx(18.0)
    start, end = an.day_window(day)
    assert len(an.power_frame(store, CAMPER, start, end)) == 18 * 60  # the gap is absent rows, not zeros


def test_a_day_on_shore_power(store: Store) -> None:
    # night-like: no sun, 60 W of load, the battery charged at 40 W: the socket gave 100 W
    day = date(2026, 5, 4)
    _day(store, day, pv_power_w=0.0, load_power_w=60.0, battery_power_w=40.0, shore_power=True)
    t = an.daily_totals(store, CAMPER, day, day)[0]
    assert t.shore_wh == pytest.approx(2400.0) and t.load_wh == pytest.approx(1440.0)
    assert t.self_sufficiency_pct == pytest.approx(0.0)
    assert t.self_consumption_pct is None and t.sunny_hours == pytest.approx(0.0)  # no PV: nothing to share
    assert t.pv_wh == pytest.approx(0.0) and t.co2_avoided_kg == pytest.approx(0.0)


def test_half_the_load_from_the_sun_on_shore_power(store: Store) -> None:
    day = date(2026, 5, 4)
    _day(store, day, pv_power_w=30.0, load_power_w=60.0, battery_power_w=0.0, shore_power=True)
    t = an.daily_totals(store, CAMPER, day, day)[0]
    assert t.shore_wh == pytest.approx(720.0) and t.self_sufficiency_pct == pytest.approx(50.0)


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)])
def test_dst_change_days_have_23_and_25_hours(store: Store, day: date, hours: int) -> None:
    n = _day(store, day, pv_power_w=100.0, load_power_w=50.0)
    assert n == hours * 60
    before, t, after = an.daily_totals(store, CAMPER, day - timedelta(days=1), day + timedelta(days=1))
    assert (t.end - t.start) == timedelta(hours=hours)
    assert t.coverage_pct == pytest.approx(100.0) and t.pv_wh == pytest.approx(100.0 * hours)
    assert before.coverage_pct == 0.0 and before.pv_wh is None and after.pv_wh is None  # no data: None, not 0


def test_a_window_with_no_data_or_an_unknown_camper_has_none_values(store: Store) -> None:
    start = datetime(2026, 5, 4, tzinfo=UTC)
    for camper in (CAMPER, "nobody"):
        t = an.window_totals(store, camper, start, start + timedelta(days=1))
        assert t.coverage_pct == 0.0 and t.pv_wh is None and t.self_sufficiency_pct is None and t.equivalents == ()
        assert an.power_frame(store, camper, start, start + timedelta(hours=1)).empty


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [
        (datetime(2026, 5, 5, tzinfo=UTC), datetime(2026, 5, 4, tzinfo=UTC), "before it starts"),
        (datetime(2026, 5, 4, tzinfo=UTC), datetime(2026, 5, 4, tzinfo=UTC), "before it starts"),
        (datetime(2020, 1, 1, tzinfo=UTC), datetime(2026, 5, 4, tzinfo=UTC), "longer than 400 days"),
        (datetime(2026, 5, 4), datetime(2026, 5, 5), "time zone"),
    ],
)
def test_bad_windows_are_refused_with_a_message(store: Store, start: datetime, end: datetime, problem: str) -> None:
    with pytest.raises(an.AnalysisError, match=problem):
        an.window_totals(store, CAMPER, start, end)


def test_bad_day_ranges_are_refused_with_a_message(store: Store) -> None:
    with pytest.raises(an.AnalysisError, match="before the first"):
        an.daily_totals(store, CAMPER, date(2026, 5, 5), date(2026, 5, 4))
    with pytest.raises(an.AnalysisError, match="more than 400"):
        an.daily_totals(store, CAMPER, date(2024, 1, 1), date(2026, 1, 1))


def test_long_windows_read_hours() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert an.read_every(t, t + timedelta(days=35)) == timedelta(minutes=1)
    assert an.read_every(t, t + timedelta(days=36)) == timedelta(hours=1)
