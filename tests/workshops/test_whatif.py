"""The what-if replay: invariants on generated frames (hypothesis), known answers, bad input,
and the read from a real store (both backends)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camperhub.contract import Stream
from camperhub.store.base import Store
from camperhub.workshops import whatif as w
from tests.api.conftest import smp

#: Monday 2026-06-01, 00:00 Europe/Rome (22:00 UTC the day before)
MONDAY = datetime(2026, 5, 31, 22, 0, tzinfo=UTC)
DT_H = 1 / 60


def frame(pv_w, load_w, soc_pct=None, start: datetime = MONDAY) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    n = len(load_w)
    idx = pd.date_range(start, periods=n, freq="1min", name="time")
    soc = [np.nan] * n if soc_pct is None else [soc_pct] + [np.nan] * (n - 1)
    return pd.DataFrame({"pv_w": pv_w, "load_w": load_w, "battery_soc_pct": soc}, index=idx, dtype="float64")


def window(f: pd.DataFrame) -> tuple[datetime, datetime]:
    return f.index[0].to_pydatetime(), (f.index[-1] + pd.Timedelta(minutes=1)).to_pydatetime()


# -- generated frames ---------------------------------------------------------------------
@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    """Per-minute frames with day-like PV, bursty loads, gaps (missing rows) and a start SoC."""
    n = draw(st.integers(1, 240))
    power = st.floats(0, 1200, allow_nan=False, allow_infinity=False)
    pv = draw(st.lists(power, min_size=n, max_size=n))
    load = draw(st.lists(st.floats(0, 3500, allow_nan=False, allow_infinity=False), min_size=n, max_size=n))
    soc = draw(st.floats(0, 100))
    offset_min = draw(st.integers(0, 364 * 24 * 60))
    f = frame(pv, load, soc, MONDAY + timedelta(minutes=offset_min))
    keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    keep[0] = True
    return f.loc[np.array(keep)]


batteries = st.floats(0.2, 20.0).map(lambda kwh: w.Battery(kwh))
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(f=frames(), add_a=st.floats(-400, 2000), add_b=st.floats(-400, 2000), battery=batteries)
def test_more_panel_never_lowers_self_sufficiency(f: pd.DataFrame, add_a: float, add_b: float, battery: w.Battery) -> None:
    lo, hi = sorted((add_a, add_b))
    start, end = window(f)
    small = w.run_whatif(f, start, end, w.Scenario(add_pv_w=lo, battery=battery)).scenario
    big = w.run_whatif(f, start, end, w.Scenario(add_pv_w=hi, battery=battery)).scenario
    if small.self_sufficiency_pct is not None:
        assert big.self_sufficiency_pct >= small.self_sufficiency_pct
    assert big.shore_wh <= small.shore_wh
    assert big.empty_hours <= small.empty_hours


@fast
@given(f=frames(), kwh_a=st.floats(0.1, 30), kwh_b=st.floats(0.1, 30), add_pv=st.floats(0, 1000), hob=st.booleans())
def test_bigger_battery_never_adds_empty_hours(f: pd.DataFrame, kwh_a: float, kwh_b: float, add_pv: float, hob: bool) -> None:
    lo, hi = sorted((kwh_a, kwh_b))
    loads = (w.APPLIANCES["induction-hob"],) if hob else ()
    start, end = window(f)
    small = w.run_whatif(f, start, end, w.Scenario(add_pv_w=add_pv, battery=w.Battery(lo), loads=loads)).scenario
    big = w.run_whatif(f, start, end, w.Scenario(add_pv_w=add_pv, battery=w.Battery(hi), loads=loads)).scenario
    assert big.empty_hours <= small.empty_hours
    assert big.shore_wh <= small.shore_wh


@fast
@given(f=frames(), add_pv=st.floats(-400, 2000), battery=batteries)
def test_energy_is_accounted_for(f: pd.DataFrame, add_pv: float, battery: w.Battery) -> None:
    start, end = window(f)
    r = w.run_whatif(f, start, end, w.Scenario(add_pv_w=add_pv, battery=battery))
    for o in (r.baseline, r.scenario):
        assert o.pv_used_wh + o.curtailed_wh == pytest.approx(o.pv_available_wh, rel=1e-9, abs=1e-6)
        # the load is met by the sun directly, by the battery (its start energy plus what the sun put in) or by shore
        assert o.load_wh - o.shore_wh <= o.pv_used_wh + o.usable_kwh * 1000 + 1e-6
        assert o.self_sufficiency_pct is None or 0 <= o.self_sufficiency_pct <= 100
        floor = 100 * (1 - battery.usable_frac) if o is r.scenario else 100 * (1 - w.CAMPER.battery.usable_frac)
        assert floor - 1e-9 <= o.soc_min_pct <= min(o.soc_start_pct, o.soc_end_pct) + 1e-9
        assert o.soc_end_pct <= 100 + 1e-9
    assert r.minutes_replayed == len(f)


# -- known answers ------------------------------------------------------------------------
def test_night_with_a_small_battery_runs_empty() -> None:
    """10 h of 100 W in the dark from a full 0.5 kWh battery (90 % usable, 96 % out): 432 Wh delivered."""
    f = frame([0.0] * 600, [100.0] * 600, soc_pct=100.0)
    r = w.run_whatif(f, *window(f), w.Scenario(battery=w.Battery(0.5)))
    o = r.scenario
    delivered_wh = 0.5 * 1000 * 0.9 * 0.96
    minutes_served = delivered_wh / (100 * DT_H)  # 259.2: the 260th minute runs out part-way
    assert o.empty_hours == pytest.approx((600 - math.floor(minutes_served)) / 60)
    assert o.shore_wh == pytest.approx(1000 - delivered_wh)
    assert o.self_sufficiency_pct == pytest.approx(100 * delivered_wh / 1000)
    assert o.soc_end_pct == pytest.approx(10.0)
    assert r.soc_start_source == "measured" and r.pv_source == "measured"


def test_a_big_enough_battery_gives_full_self_sufficiency() -> None:
    f = frame([0.0] * 600, [100.0] * 600, soc_pct=100.0)
    o = w.run_whatif(f, *window(f), w.Scenario(battery=w.Battery(10.0))).scenario
    assert o.self_sufficiency_pct == 100.0
    assert o.empty_hours == 0.0 and o.shore_wh == 0.0


def test_surplus_beyond_a_full_battery_is_curtailed_and_the_mppt_clips() -> None:
    f = frame([1000.0] * 60, [100.0] * 60, soc_pct=100.0)
    o = w.run_whatif(f, *window(f), w.Scenario()).baseline
    # 1000 W offered, the 30 A controller passes ~399 W; the load takes 100 W, the full battery nothing
    assert o.pv_available_wh == pytest.approx(1000.0)
    assert o.pv_used_wh == pytest.approx(100.0)
    assert o.curtailed_wh == pytest.approx(900.0)


def test_a_load_above_the_inverter_limit_draws_shore_power_without_emptying_the_battery() -> None:
    f = frame([0.0] * 60, [4000.0] * 60, soc_pct=100.0)
    big = w.Battery(50.0)
    o = w.run_whatif(f, *window(f), w.Scenario(battery=big)).scenario
    assert o.shore_wh == pytest.approx(1000.0)  # 4 kW for an hour, 3 kW from the battery side
    assert o.empty_hours == 0.0


def test_the_induction_hob_runs_on_weekday_afternoons_only() -> None:
    week = pd.date_range(MONDAY, MONDAY + timedelta(days=7), freq="1min", inclusive="left")
    added = w.appliance_w(week, w.APPLIANCES["induction-hob"])
    local = week.tz_convert("Europe/Rome")
    on = added > 0
    assert on.sum() == 5 * 60  # Monday to Friday, 15:00-16:00
    assert set(local[on].hour) == {15} and set(local[on].day_of_week) == {0, 1, 2, 3, 4}
    assert added.max() == pytest.approx(2000 / w.INVERTER_EFF)


def test_the_hob_lowers_self_sufficiency_on_a_weekday() -> None:
    f = frame([0.0] * 1440, [50.0] * 1440, soc_pct=50.0)
    r = w.run_whatif(f, *window(f), w.Scenario(loads=(w.parse_appliance("induction-hob"),)))
    assert r.scenario.added_load_wh == pytest.approx(2000 / w.INVERTER_EFF)
    assert r.scenario.self_sufficiency_pct < r.baseline.self_sufficiency_pct
    assert r.added_loads == ("induction-hob",)


def test_custom_loads_parse_and_wrap_around_midnight() -> None:
    a = w.parse_appliance("300@09:00-12:00")
    assert (a.watts, a.start.hour, a.end.hour) == (300.0, 9, 12)
    night = w.parse_appliance("50@22:00-06:00")
    day = pd.date_range(MONDAY, MONDAY + timedelta(days=1), freq="1min", inclusive="left")
    assert (w.appliance_w(day, night) > 0).sum() == 8 * 60
    assert (w.appliance_w(day, w.parse_appliance("25")) > 0).sum() == 24 * 60
    week = pd.date_range(MONDAY, MONDAY + timedelta(days=7), freq="1min", inclusive="left")
    assert (w.appliance_w(week, w.parse_appliance("2000@12:00-13:00/mon-fri")) > 0).sum() == 5 * 60
    assert (w.appliance_w(week, w.parse_appliance("2000@12:00-13:00")) > 0).sum() == 7 * 60
    for bad in ("toaster", "300@25:00-26:00", "0@09:00-10:00", "300@09:00-09:00", "300@09:00-10:00/sun"):
        with pytest.raises(w.WhatIfError):
            w.parse_appliance(bad)


def test_gaps_are_skipped_and_missing_pv_comes_from_the_model() -> None:
    f = frame([200.0] * 120, [100.0] * 120, soc_pct=50.0, start=datetime(2026, 6, 1, 10, 0, tzinfo=UTC))
    f.iloc[30:60, f.columns.get_loc("pv_w")] = np.nan  # PV not reported for half an hour
    f = f.drop(f.index[90:120])  # nothing at all for the last half hour
    start, _ = window(f)
    r = w.run_whatif(f, start, start + timedelta(hours=2), w.Scenario())
    assert r.minutes_replayed == 90 and r.coverage_pct == pytest.approx(75.0)
    assert r.pv_source == "measured+model" and r.minutes_pv_modelled == 30
    assert r.baseline.load_wh == pytest.approx(90 * 100 * DT_H)
    # a June late morning: the model's sun fills the gap with daylight, not zero
    assert r.baseline.pv_available_wh > 60 * 200 * DT_H


def test_while_the_real_battery_was_full_the_modelled_sun_stands_in() -> None:
    """A June noon with the real battery full: the controller took only the 60 W the van used."""
    noon = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
    f = frame([60.0] * 60, [60.0] * 60, soc_pct=100.0, start=noon)
    f["battery_soc_pct"] = 100.0  # a reading every minute
    raised = w.run_whatif(f, *window(f), w.Scenario(loads=(w.parse_appliance("500"),)))
    plain = w.run_whatif(f, *window(f), w.Scenario(loads=(w.parse_appliance("500"),)), raise_full=False)
    assert raised.minutes_pv_raised == 60 and plain.minutes_pv_raised == 0
    assert plain.baseline.pv_available_wh == pytest.approx(60.0)
    assert raised.baseline.pv_available_wh > 3 * 60.0  # a June noon gives a 400 Wp roof far more than 60 W
    assert raised.scenario.shore_wh <= plain.scenario.shore_wh
    # the SoC reading holds for SOC_HOLD_MIN minutes only: later minutes are left as measured
    g = frame([60.0] * 60, [60.0] * 60, soc_pct=100.0, start=noon)
    g = g.drop(g.index[1 : w.SOC_HOLD_MIN + 1])
    assert w.run_whatif(g, noon, noon + timedelta(hours=1), w.Scenario()).minutes_pv_raised == 1


def test_model_sun_replaces_the_measured_pv() -> None:
    night = datetime(2026, 1, 15, 23, 0, tzinfo=UTC)  # midnight in Varese
    f = frame([500.0] * 60, [100.0] * 60, soc_pct=50.0, start=night)
    r = w.run_whatif(f, *window(f), w.Scenario(), model_sun=True)
    assert r.pv_source == "model" and r.baseline.pv_available_wh == 0.0


def test_bad_questions_get_a_clear_error() -> None:
    f = frame([0.0] * 10, [10.0] * 10)
    start, end = window(f)
    with pytest.raises(w.WhatIfError, match="before it starts"):
        w.run_whatif(f, end, start, w.Scenario())
    with pytest.raises(w.WhatIfError, match="longer than"):
        w.run_whatif(f, start, start + timedelta(days=500), w.Scenario())
    with pytest.raises(w.NoDataError, match="no load readings"):
        w.run_whatif(f, end + timedelta(days=1), end + timedelta(days=2), w.Scenario())
    with pytest.raises(w.WhatIfError, match="cannot remove"):
        w.run_whatif(f, start, end, w.Scenario(add_pv_w=-500))
    with pytest.raises(w.WhatIfError, match="capacity_kwh"):
        w.Battery(0)
    with pytest.raises(w.WhatIfError, match="time zone"):
        w.run_whatif(f, start.replace(tzinfo=None), end, w.Scenario())
    r = w.run_whatif(f, start, end, w.Scenario())  # no SoC reading: 50 % assumed, and said
    assert r.soc_start_source == "assumed" and r.baseline.soc_start_pct == pytest.approx(50.0)


def test_panels_removed_down_to_none_is_allowed() -> None:
    f = frame([300.0] * 60, [100.0] * 60, soc_pct=50.0, start=datetime(2026, 6, 1, 10, 0, tzinfo=UTC))
    r = w.run_whatif(f, *window(f), w.Scenario(add_pv_w=-400))
    assert r.scenario.pv_kwp == 0 and r.scenario.pv_available_wh == 0.0
    assert r.baseline.pv_used_wh > 0


# -- from a real store ----------------------------------------------------------------------
def test_whatif_reads_the_camper_from_the_store(store: Store) -> None:
    t0 = int(datetime(2026, 5, 4, 10, 0, tzinfo=UTC).timestamp() * 1000)
    samples = [
        smp(Stream.ENERGY, t0 + k * 20_000, camper="van-w", pv_power_w=300.0, load_power_w=120.0, battery_soc_pct=60.0)
        for k in range(3 * 60 * 3)  # every 20 s for three hours
    ]
    store.write(samples)
    start = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    r = w.whatif_from_store(store, "van-w", start, start + timedelta(hours=5), w.Scenario(add_pv_w=200))
    assert r.minutes_replayed == 180 and r.coverage_pct == pytest.approx(60.0)
    assert r.baseline.load_wh == pytest.approx(360.0)
    assert r.baseline.pv_available_wh == pytest.approx(900.0)
    assert r.scenario.pv_available_wh == pytest.approx(1350.0)
    assert r.pv_source == "measured" and r.soc_start_source == "measured"
    with pytest.raises(w.NoDataError):
        w.whatif_from_store(store, "van-w", start + timedelta(days=1), start + timedelta(days=2), w.Scenario())


def test_a_battery_in_amp_hours_and_its_usable_share() -> None:
    b = w.Battery.from_ah(300)
    assert b.capacity_kwh == pytest.approx(3.84)
    assert replace(b, usable_frac=0.8).usable_wh == pytest.approx(3072.0)
