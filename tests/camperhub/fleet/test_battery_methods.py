"""Pure battery figures on constructed pandas frames with known answers (no store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from camperhub.fleet import battery_capacity as cap
from camperhub.fleet import battery_methods as bm
from camperhub.fleet.battery import report_from_frame
from camperhub.fleet.battery_model import NOT_ENOUGH, BatteryReport, BatterySpec, Figure

STEP = timedelta(minutes=1)
T0 = pd.Timestamp("2026-03-01T00:00:00Z")


def frame(n: int, step: timedelta = STEP, start: pd.Timestamp = T0, **cols: object) -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq=step, tz="UTC", name="time")
    return pd.DataFrame({k: (np.full(n, v, dtype="float64") if np.isscalar(v) else v) for k, v in cols.items()}, index=idx)


def test_equivalent_cycles_counts_discharge_only() -> None:
    # 60 min at -20 A (20 Ah out), 60 min at +30 A (in): 20 Ah / 200 Ah = 0.1 cycles
    f = frame(120, battery_current_a=np.r_[np.full(60, -20.0), np.full(60, 30.0)])
    fig = bm.equivalent_cycles(f, STEP, 200.0, window_n=120)
    assert fig.value == pytest.approx(0.1)
    assert fig.confidence == "high"
    assert fig.unit == "cycles"


def test_equivalent_cycles_low_coverage_lowers_confidence() -> None:
    f = frame(30, battery_current_a=-10.0)
    fig = bm.equivalent_cycles(f, STEP, 100.0, window_n=120)
    assert fig.confidence == "low" and "gaps" in (fig.note or "")


def test_turning_points_ignore_small_reversals() -> None:
    soc = np.array([100, 90, 80, 81, 70, 60, 75, 90, 89.5, 95, 50], dtype=float)
    assert bm.turning_points(soc, hysteresis=2.0) == [100, 60, 95, 50]


def test_dod_histogram_of_known_half_cycles() -> None:
    down = np.linspace(100, 40, 61)  # a 60-point discharge
    up = np.linspace(40, 90, 51)
    down2 = np.linspace(90, 75, 16)  # a 15-point one
    soc = np.r_[down, up[1:], down2[1:]]
    fig = bm.dod_histogram(frame(len(soc), battery_soc_pct=soc))
    assert fig.value["half_cycles"] == 2
    counts = dict(zip((b[0] for b in fig.value["bins_pct"]), fig.value["counts"]))
    assert counts[60] == 1 and counts[10] == 1 and sum(counts.values()) == 2
    assert fig.value["max_dod_pct"] == pytest.approx(60.0)


def test_internal_resistance_from_load_steps() -> None:
    r_ohm = 0.008
    rng = np.random.default_rng(3)
    amps = np.where((np.arange(400) // 10) % 2 == 0, -2.0, -30.0) + rng.normal(0, 0.2, 400)
    volts = 13.2 + r_ohm * amps  # steady SoC: OCV constant
    f = frame(400, battery_current_a=amps, battery_voltage_v=volts, battery_soc_pct=60.0)
    fig = bm.internal_resistance(f, STEP)
    assert fig.value == pytest.approx(8.0, rel=0.02)
    assert fig.unit == "mΩ" and fig.confidence == "high"


def test_internal_resistance_skips_steps_across_gaps() -> None:
    f = frame(2, battery_current_a=np.array([-2.0, -30.0]), battery_voltage_v=np.array([13.2, 13.0]), battery_soc_pct=60.0)
    f.index = pd.DatetimeIndex([T0, T0 + timedelta(minutes=5)], name="time")
    assert not bm.internal_resistance(f, STEP).known


def test_time_at_thresholds() -> None:
    temp = np.r_[np.full(120, 50.0), np.full(60, 20.0), np.full(30, -5.0)]
    amps = np.r_[np.zeros(180), np.full(30, 5.0)]
    f = frame(210, battery_temp_c=temp, battery_current_a=amps, battery_soc_pct=np.r_[np.full(90, 97.0), np.full(120, 50.0)])
    assert bm.time_at(f, STEP, "battery_temp_c", above=bm.HOT_C).value == pytest.approx(2.0)
    cold = bm.time_at(f, STEP, "battery_temp_c", below=bm.COLD_C)
    assert cold.value == pytest.approx(0.5) and "charging below 0 °C: 0.5 h" in (cold.note or "")
    assert bm.time_at(f, STEP, "battery_soc_pct", above=bm.HIGH_SOC_PCT).value == pytest.approx(1.5)


def test_time_at_without_the_field_is_not_enough_data() -> None:
    fig = bm.time_at(frame(10, battery_soc_pct=50.0), STEP, "battery_temp_c", above=bm.HOT_C)
    assert fig.value is None and fig.reason and fig.reason.startswith(NOT_ENOUGH)


def test_cell_imbalance_flags_a_growing_spread() -> None:
    step = timedelta(hours=1)
    n = 24 * 120
    grow_v = np.linspace(0.010, 0.090, n)
    f = frame(n, step, cell_voltage_max_v=3.35, cell_voltage_min_v=3.35 - grow_v, battery_soc_pct=95.0)
    fig = bm.cell_imbalance(f)
    assert fig.value["flagged"] is True
    assert fig.value["trend_mv_per_month"] == pytest.approx(80 / (n / 24 / bm.DAYS_PER_MONTH), rel=0.15)
    ok = bm.cell_imbalance(frame(n, step, cell_voltage_max_v=3.35, cell_voltage_min_v=3.34, battery_soc_pct=95.0))
    assert ok.value["flagged"] is False and ok.value["latest_p95_mv"] == pytest.approx(10.0, abs=0.5)


def _cycle_frame(cap_ah: float, days: int, step: timedelta = timedelta(minutes=10)) -> pd.DataFrame:
    """Each day: full for 2 h, 12 h at -10 A, 10 h at +12 A (refills 120 Ah exactly)."""
    per_day = int(timedelta(days=1) / step)
    h = step / timedelta(hours=1)
    amps = np.r_[np.zeros(int(2 / h)), np.full(int(12 / h), -10.0), np.full(per_day - int(2 / h) - int(12 / h), 12.0)]
    amps = np.tile(amps, days)
    soc = np.clip(100.0 + np.cumsum(amps * h) / cap_ah * 100.0, None, 100.0)
    return frame(len(amps), step, battery_current_a=amps, battery_soc_pct=soc)


def test_capacity_from_a_discharge_after_full_reset() -> None:
    step = timedelta(minutes=10)
    f = _cycle_frame(180.0, 3, step)
    ms = cap.capacity_measurements(f, step)
    assert len(ms) == 3
    assert all(m.capacity_ah == pytest.approx(180.0, rel=0.01) for m in ms)
    capacity, soh = cap.capacity_and_soh(ms, 200.0)
    assert capacity.value == pytest.approx(180.0, rel=0.01) and soh.value == pytest.approx(90.0, abs=0.5)


def test_capacity_needs_a_big_enough_swing() -> None:
    step = timedelta(minutes=10)
    f = _cycle_frame(400.0, 2, step)  # 120 Ah of 400: a 30-point swing
    assert cap.capacity_measurements(f, step) == []
    capacity, soh = cap.capacity_and_soh([], 200.0)
    assert not capacity.known and soh.reason and soh.reason.startswith(NOT_ENOUGH)


def test_soc_drift_on_a_frame() -> None:
    step = timedelta(minutes=10)
    n = 6 * 144
    amps = np.r_[np.zeros(6), np.full(n - 6, -1.0)]
    true = 100.0 + np.cumsum(np.r_[0.0, amps[1:]] * step / timedelta(hours=1)) / 200.0 * 100.0
    days = np.arange(n) * (step / timedelta(days=1))
    f = frame(n, step, battery_current_a=amps, battery_soc_pct=np.minimum(100.0, true) - np.where(np.arange(n) > 5, 0.5 * days, 0.0))
    fig = cap.soc_drift(f, step, 200.0, "nameplate")
    assert fig.value == pytest.approx(-0.5 * days[-1], abs=0.2)
    assert "drift rate -0.50 points/day" in (fig.note or "")


def test_soc_drift_without_a_full_reset() -> None:
    f = frame(100, battery_current_a=-1.0, battery_soc_pct=np.linspace(80, 70, 100))
    fig = cap.soc_drift(f, STEP, 200.0, "nameplate")
    assert fig.value is None and "full-charge reset" in (fig.reason or "")


def test_figure_json_shapes() -> None:
    known = Figure(value=1.5, unit="h", method="m", confidence="high", note="n").public()
    assert known == {"value": 1.5, "unit": "h", "method": "m", "confidence": "high", "note": "n"}
    missing = Figure.missing("no battery_temp_c").public()
    assert missing == {"value": None, "reason": "not enough data: no battery_temp_c"}


def test_report_from_an_empty_frame_is_all_not_enough_data() -> None:
    empty = frame(0, battery_current_a=np.array([]))
    start = datetime(2026, 3, 1, tzinfo=UTC)
    report = report_from_frame(empty, "van-1", start, start + timedelta(days=1), BatterySpec())
    out = report.public()
    json.dumps(out)  # JSON-serialisable for the API
    for name in BatteryReport.FIGURES:
        assert out[name]["value"] is None, name
        assert out[name]["reason"].startswith(NOT_ENOUGH), name


def test_battery_spec_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="nameplate_ah"):
        BatterySpec(nameplate_ah=0)
