"""Battery figures from a frame of per-interval means (pure pandas, no I/O): cycles, depth of
discharge, internal resistance, time at stressful conditions, cell imbalance.

The frame (what camperhub/fleet/battery.py reads from the store): indexed by tz-aware UTC
interval start, one row per interval of length ``step`` holding the *mean* of each field
over that interval (per-minute rollups by default); intervals without data are absent, so
a gap is never integrated as a zero. Columns are contract field names (battery_current_a,
positive = charging; battery_voltage_v; battery_soc_pct; battery_temp_c;
cell_voltage_min_v/max_v; ...); a column of NaN means "never reported".

Capacity, state of health, state-of-charge drift: camperhub/fleet/battery_capacity.py.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from camperhub.fleet.battery_model import Confidence, Figure

#: Above this SoC a LiFePO4 cell ages faster when it sits there (calendar ageing grows with
#: state of charge); long hours at the top mean the charger should float lower.
HIGH_SOC_PCT = 95.0
#: LiFePO4 datasheets allow charging at 0-45 °C; above 45 °C ageing speeds up markedly.
HOT_C = 45.0
#: Below 0 °C charging a LiFePO4 cell plates lithium (permanent capacity loss).
COLD_C = 0.0
#: A current counts as charging above this (A): noise and the BMS's own draw stay below it.
CHARGING_A = 0.5
#: Hysteresis of the turning points of SoC (percentage points): smaller reversals are
#: sensor noise or a passing cloud, not a cycle.
DOD_HYSTERESIS_PCT = 2.0
#: Depth-of-discharge histogram bins (percentage points).
DOD_BINS_PCT = tuple(range(0, 101, 10))
#: A load step for internal resistance: |ΔI| at least this (A). A healthy 200 Ah LiFePO4
#: pack has 2-10 mΩ, so 10 A moves the voltage 20-100 mV, well above the 1-10 mV resolution
#: of charge controllers and battery monitors.
STEP_MIN_A = 10.0
#: ... while SoC stays within this (points): the open-circuit voltage must not move.
STEP_MAX_SOC_PCT = 0.5
#: Plausible resistance window (mΩ): outside it the step was something else (charger
#: regulation, a reading straddling a device reset).
R_RANGE_MOHM = (0.3, 100.0)
#: Imbalance (max - min cell, mV) that needs a look: LiFePO4 cells of a balanced pack stay
#: within about 10-30 mV; 50 mV that recurs (95th percentile of a month) means a weak or
#: drifting cell that the balancer does not keep up with.
IMBALANCE_FLAG_MV = 50.0
#: ... or an imbalance growing this fast (mV/month, over at least three months).
IMBALANCE_TREND_FLAG_MV_PER_MONTH = 5.0
#: SoC at and above which imbalance is read "at high SoC": the LiFePO4 curve is steep
#: there, so a cell that fills first shows.
IMBALANCE_HIGH_SOC_PCT = 90.0
DAYS_PER_MONTH = 30.4375


def step_hours(step: timedelta) -> float:
    return step / timedelta(hours=1)


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column, NaN when absent from the frame (never reported)."""
    if name not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    return pd.to_numeric(frame[name], errors="coerce").astype("float64")


def coverage_confidence(covered: float) -> Confidence:
    """Confidence of a figure that sums over the window, from the share of it with data."""
    return "high" if covered >= 0.9 else "medium" if covered >= 0.5 else "low"


def window_intervals(start: pd.Timestamp, end: pd.Timestamp, step: timedelta) -> int:
    return max(1, int((end - start) / step))


def month_key(index: pd.DatetimeIndex) -> pd.Index:
    """Calendar month (UTC) of each time, as 'YYYY-MM'."""
    return pd.Index(index.strftime("%Y-%m"))


def linear_trend(x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
    """Least-squares slope of y over x and its standard error (None with fewer than 3 points)."""
    slope, intercept = np.polyfit(x, y, 1)
    if len(x) < 3:
        return float(slope), None
    resid = y - (slope * x + intercept)
    sxx = float(np.sum((x - x.mean()) ** 2))
    se = float(np.sqrt(np.sum(resid**2) / (len(x) - 2) / sxx)) if sxx > 0 else None
    return float(slope), se


# --- cycles -----------------------------------------------------------------------------

def equivalent_cycles(frame: pd.DataFrame, step: timedelta, nameplate_ah: float, window_n: int) -> Figure:
    """Equivalent full cycles = Σ discharge Ah / nameplate Ah.

    Only the discharge side is summed (not ½ Σ|I|dt): charge Ah include the charger's
    losses and the float top-up, discharge Ah are what the cells delivered. Per-interval
    means net out charge and discharge inside one interval (a load running under the sun),
    so the figure is a slight underestimate of the cells' throughput.
    """
    method = "Σ discharge Ah (negative battery_current_a × interval) / nameplate Ah"
    current = column(frame, "battery_current_a").dropna()
    if current.empty:
        return Figure.missing("no battery_current_a in the window", method)
    discharge_ah = float((-current.clip(upper=0.0)).sum() * step_hours(step))
    covered = len(current) / window_n
    note = f"{discharge_ah:.0f} Ah discharged; current present in {covered:.0%} of the window"
    bms = column(frame, "battery_cycles").dropna()
    if len(bms) >= 2:
        note += f"; the BMS counter moved by {bms.iloc[-1] - bms.iloc[0]:.0f}"
    if covered < 0.9:
        note += " (gaps are not counted: the true figure is higher)"
    return Figure(value=round(discharge_ah / nameplate_ah, 2), unit="cycles", method=method,
                  confidence=coverage_confidence(covered), note=note)


# --- depth of discharge -----------------------------------------------------------------

def turning_points(soc_pct: np.ndarray, hysteresis: float = DOD_HYSTERESIS_PCT) -> list[float]:
    """The series' first value, then its alternating peaks and valleys that reverse by at
    least ``hysteresis``, then the last extreme reached."""
    x = soc_pct[~np.isnan(soc_pct)]
    if len(x) == 0:
        return []
    # only local extrema (and the ends) can be turning points: thin the loop's input
    d = np.diff(x)
    keep = np.ones(len(x), dtype=bool)
    if len(d) >= 2:
        sd = np.sign(d)
        nz = np.flatnonzero(sd)
        inner = np.zeros(len(x), dtype=bool)
        if len(nz) >= 2:
            changes = nz[1:][sd[nz[1:]] != sd[nz[:-1]]]  # where the direction flips
            inner[changes] = True
        keep[1:-1] = inner[1:-1]
    cand = x[keep].tolist()
    points = [cand[0]]
    direction, cur = 0, cand[0]
    for v in cand[1:]:
        if direction == 0:
            if abs(v - points[0]) >= hysteresis:
                direction, cur = (1 if v > points[0] else -1), v
        elif direction == 1:
            if v > cur:
                cur = v
            elif cur - v >= hysteresis:
                points.append(cur)
                direction, cur = -1, v
        else:
            if v < cur:
                cur = v
            elif v - cur >= hysteresis:
                points.append(cur)
                direction, cur = 1, v
    if direction != 0:
        points.append(cur)
    return points


def dod_histogram(frame: pd.DataFrame) -> Figure:
    """Histogram of the depths of the discharge half-cycles of SoC.

    Simple half-cycles, not rainflow: SoC is reduced to its turning points (reversals
    smaller than DOD_HYSTERESIS_PCT ignored) and every falling leg peak → valley is one
    half-cycle of depth peak − valley. A short recharge inside a long discharge therefore
    splits it into two shallower half-cycles (rainflow would pair the big one out).
    """
    method = f"SoC turning points (hysteresis {DOD_HYSTERESIS_PCT:g} points); each falling leg is one half-cycle"
    soc = column(frame, "battery_soc_pct").to_numpy()
    if np.isnan(soc).all():
        return Figure.missing("no battery_soc_pct in the window", method)
    points = turning_points(soc)
    depths = [a - b for a, b in zip(points, points[1:]) if a > b]
    if not depths:
        return Figure.missing("SoC never fell by more than the hysteresis", method)
    counts, _ = np.histogram(np.clip(depths, 0, 100), bins=DOD_BINS_PCT)
    value = {
        "bins_pct": [[lo, hi] for lo, hi in zip(DOD_BINS_PCT, DOD_BINS_PCT[1:])],
        "counts": [int(c) for c in counts],
        "half_cycles": len(depths),
        "mean_dod_pct": round(float(np.mean(depths)), 1),
        "max_dod_pct": round(float(np.max(depths)), 1),
    }
    conf: Confidence = "high" if len(depths) >= 20 else "medium" if len(depths) >= 5 else "low"
    return Figure(value=value, unit="half-cycles per DoD bin (%)", method=method, confidence=conf,
                  note="depths from the device's SoC: as good as its state-of-charge estimate (see soc_drift_pct)")


# --- internal resistance ----------------------------------------------------------------

def internal_resistance(frame: pd.DataFrame, step: timedelta) -> Figure:
    """R = ΔV / ΔI between consecutive intervals where the current steps by at least
    STEP_MIN_A while SoC moves less than STEP_MAX_SOC_PCT (the open-circuit voltage stays
    put, so the voltage change is the current through the resistance; V = OCV + R·I with
    I positive charging). Steps while the charger regulates voltage (absorption, float)
    are left out: there the charger, not the battery, sets V. The median of the steps,
    with their interquartile range.

    With per-minute means this is a DC resistance including the polarisation of the first
    minute: larger than a datasheet's 1 kHz AC figure; compare a pack only with itself.
    """
    method = (f"median of ΔV/ΔI over consecutive intervals with |ΔI| ≥ {STEP_MIN_A:g} A and |ΔSoC| < "
              f"{STEP_MAX_SOC_PCT:g} points, outside absorption/float")
    v, i = column(frame, "battery_voltage_v"), column(frame, "battery_current_a")
    if v.isna().all() or i.isna().all():
        return Figure.missing("needs battery_voltage_v and battery_current_a", method)
    t = frame.index.to_series()
    consecutive = (t.diff() == pd.Timedelta(step)).to_numpy()
    d_i, d_v = i.diff().to_numpy(), v.diff().to_numpy()
    soc = column(frame, "battery_soc_pct")
    steady = (soc.diff().abs() < STEP_MAX_SOC_PCT).to_numpy() | soc.isna().to_numpy()
    regulated = np.zeros(len(frame), dtype=bool)
    if "charge_state" in frame.columns:
        cs = frame["charge_state"].astype("object")
        reg = cs.isin(["absorption", "float", "equalize"]).to_numpy()
        regulated = reg | np.roll(reg, 1)
    ok = consecutive & steady & ~regulated & (np.abs(d_i) >= STEP_MIN_A) & ~np.isnan(d_v)
    r_mohm = d_v[ok] / d_i[ok] * 1000.0
    r_mohm = r_mohm[(r_mohm >= R_RANGE_MOHM[0]) & (r_mohm <= R_RANGE_MOHM[1])]
    if len(r_mohm) == 0:
        return Figure.missing(f"no load step of ≥ {STEP_MIN_A:g} A at steady SoC between consecutive intervals", method)
    median = float(np.median(r_mohm))
    q1, q3 = (float(q) for q in np.percentile(r_mohm, [25, 75]))
    spread = (q3 - q1) / median if median > 0 else np.inf
    conf: Confidence = "high" if len(r_mohm) >= 20 and spread < 0.3 else "medium" if len(r_mohm) >= 5 and spread < 0.6 else "low"
    return Figure(value=round(median, 2), unit="mΩ", method=method, confidence=conf,
                  note=f"{len(r_mohm)} steps, interquartile range {q1:.2f}-{q3:.2f} mΩ")


# --- time at stressful conditions -------------------------------------------------------

def time_at(frame: pd.DataFrame, step: timedelta, field: str, above: float | None = None, below: float | None = None) -> Figure:
    """Hours with the interval mean of ``field`` above / below a threshold, and their share
    of the hours with that field reported. Interval means smooth short peaks: a few minutes
    at 46 °C inside a cooler interval are not counted."""
    cond = f"> {above:g}" if above is not None else f"< {below:g}"
    method = f"hours of intervals whose mean {field} {cond}"
    x = column(frame, field).dropna()
    if x.empty:
        return Figure.missing(f"no {field} in the window", method)
    hit = x > above if above is not None else x < below
    hours = float(hit.sum() * step_hours(step))
    reported_h = len(x) * step_hours(step)
    note = f"{hours / reported_h:.1%} of {reported_h:.0f} h with {field} reported"
    if below is not None and field == "battery_temp_c":
        charging = column(frame, "battery_current_a").reindex(x.index) > CHARGING_A
        note += f"; charging below {below:g} °C: {float((hit & charging).sum() * step_hours(step)):.1f} h"
    conf: Confidence = "high" if reported_h >= 24 * 7 else "medium" if reported_h >= 24 else "low"
    return Figure(value=round(hours, 1), unit="h", method=method, confidence=conf, note=note)


# --- cell imbalance ---------------------------------------------------------------------

def cell_imbalance(frame: pd.DataFrame) -> Figure:
    """Imbalance = cell_voltage_max_v − cell_voltage_min_v (mV), per calendar month: the
    median, the 95th percentile (a weak cell sags under load only, so the worst regular
    moments tell more than the median) and the median at SoC ≥ IMBALANCE_HIGH_SOC_PCT.
    Trend: linear fit of the monthly 95th percentiles (mV/month). Flagged when the last
    month's 95th percentile reaches IMBALANCE_FLAG_MV, or the trend reaches
    IMBALANCE_TREND_FLAG_MV_PER_MONTH over at least three months."""
    method = "cell_voltage_max_v − cell_voltage_min_v per interval; monthly median, 95th percentile, trend of the 95th percentile"
    hi, lo = column(frame, "cell_voltage_max_v"), column(frame, "cell_voltage_min_v")
    delta_mv = ((hi - lo) * 1000.0).dropna()
    if delta_mv.empty:
        return Figure.missing("no cell_voltage_min_v/cell_voltage_max_v (no BMS reporting cells)", method)
    soc = column(frame, "battery_soc_pct").reindex(delta_mv.index)
    months = month_key(pd.DatetimeIndex(delta_mv.index))
    grouped = delta_mv.groupby(months)
    monthly = pd.DataFrame({"median_mv": grouped.median(), "p95_mv": grouped.quantile(0.95), "samples": grouped.size()})
    high = delta_mv[soc >= IMBALANCE_HIGH_SOC_PCT]
    monthly["high_soc_median_mv"] = high.groupby(month_key(pd.DatetimeIndex(high.index))).median()
    mid = delta_mv.index.to_series().groupby(months).apply(lambda s: s.iloc[0] + (s.iloc[-1] - s.iloc[0]) / 2)
    trend = se = None
    if len(monthly) >= 2:
        x = np.array([(m - mid.iloc[0]) / pd.Timedelta(days=DAYS_PER_MONTH) for m in mid])
        trend, se = linear_trend(x, monthly["p95_mv"].to_numpy())
    last = monthly.iloc[-1]
    flagged = bool(last["p95_mv"] >= IMBALANCE_FLAG_MV or
                   (trend is not None and len(monthly) >= 3 and trend >= IMBALANCE_TREND_FLAG_MV_PER_MONTH))
    value = {
        "latest_p95_mv": round(float(last["p95_mv"]), 1),
        "latest_median_mv": round(float(last["median_mv"]), 1),
        "high_soc_median_mv": None if pd.isna(last["high_soc_median_mv"]) else round(float(last["high_soc_median_mv"]), 1),
        "trend_mv_per_month": None if trend is None else round(trend, 2),
        "flagged": flagged,
        "monthly": [
            {"month": str(m), "median_mv": round(float(r["median_mv"]), 1), "p95_mv": round(float(r["p95_mv"]), 1),
             "high_soc_median_mv": None if pd.isna(r["high_soc_median_mv"]) else round(float(r["high_soc_median_mv"]), 1),
             "samples": int(r["samples"])}
            for m, r in monthly.iterrows()
        ],
    }
    conf: Confidence = "high" if len(monthly) >= 3 and (se is None or se < 2.0) else "medium" if len(delta_mv) >= 1000 else "low"
    note = "flagged: a weak or unbalanced cell, check the BMS and balance the pack" if flagged else "within the normal range"
    return Figure(value=value, unit="mV", method=method, confidence=conf, note=note)
