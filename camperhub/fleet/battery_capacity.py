"""Capacity, state of health and its trend, state-of-charge drift (pure pandas, no I/O).

Same frame as camperhub/fleet/battery_methods.py: per-interval means indexed by interval
start (UTC), gaps absent. All three figures stand on *full-charge resets*: moments the
battery is known full (device SoC ≥ FULL_SOC_PCT, or the charger in float, which it only
enters after absorption ended). A reset is the last interval of a run of full intervals:
the moment the battery leaves "full".

Coulomb counting: Ah = Σ battery_current_a × interval, over the intervals after the
anchor. A row holds the mean over [t, t + step) while its SoC is the mean over the same
interval (≈ SoC at t + step/2), so counting rows anchor+1 .. k spans SoC(anchor) →
SoC(k) with both ends shifted by the same half interval. Coulombic efficiency is taken as
1 (LiFePO4: above 99 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from camperhub.fleet.battery_methods import DAYS_PER_MONTH, column, linear_trend, month_key, step_hours
from camperhub.fleet.battery_model import Confidence, Figure

#: SoC at or above which the battery counts as full (a device that reports 99.6 % after
#: absorption is full; 100.0 exactly is not reached by every monitor).
FULL_SOC_PCT = 99.5
#: Charger states that mean "full": float follows the end of absorption.
FULL_CHARGE_STATES = ("float",)
#: Least SoC swing (points) for a capacity measurement: over a small swing the SoC
#: estimate's own error (±2-3 points) dominates the ratio Ah / ΔSoC.
MIN_SWING_PCT = 40.0
#: A capacity measurement needs this share of the intervals between reset and low point:
#: a gap hides Ah that the count cannot see.
MIN_SEGMENT_COVERAGE = 0.95
#: Plausible SoH (%) of one measurement; outside it the segment was not a clean discharge.
SOH_RANGE_PCT = (30.0, 130.0)
#: The report's SoH is the median of the measurements of its last this many days.
SOH_RECENT_DAYS = 30


@dataclass(frozen=True)
class CapacityMeasurement:
    """One capacity measurement: full reset at ``start``, low point at ``end``."""

    start: pd.Timestamp
    end: pd.Timestamp
    swing_pct: float
    discharged_ah: float
    charged_ah: float
    capacity_ah: float


def full_mask(frame: pd.DataFrame) -> np.ndarray:
    """Intervals when the battery is known full."""
    full = (column(frame, "battery_soc_pct") >= FULL_SOC_PCT).to_numpy()
    if "charge_state" in frame.columns:
        full = full | frame["charge_state"].astype("object").isin(FULL_CHARGE_STATES).to_numpy()
    return full


def reset_positions(frame: pd.DataFrame, step: timedelta) -> np.ndarray:
    """Row positions of the full-charge resets: the last full row of each run of full rows
    (a gap in the data ends a run)."""
    full = full_mask(frame)
    if not full.any():
        return np.array([], dtype=int)
    t = frame.index.asi8
    nxt_full = np.append(full[1:], False)
    gap_after = np.append(np.diff(t) != pd.Timedelta(step).value, True)
    return np.flatnonzero(full & (~nxt_full | gap_after))


def capacity_measurements(frame: pd.DataFrame, step: timedelta) -> list[CapacityMeasurement]:
    """For each full reset, the lowest SoC before the next full interval; where the swing
    reaches MIN_SWING_PCT and the segment is covered, capacity = net Ah out / (ΔSoC / 100).

    Net Ah (discharge minus any charge in between, e.g. a passing sun) is what moves SoC,
    and a mean current × interval is exact for it at any interval length; so is the
    midpoint rule below, which keeps the figure within 0.1 % at 15-minute means (checked in
    tests/bench/test_bench_battery.py's year)."""
    soc = column(frame, "battery_soc_pct").to_numpy()
    cur = column(frame, "battery_current_a").to_numpy()
    if np.isnan(soc).all() or np.isnan(cur).all():
        return []
    full = full_mask(frame)
    resets = reset_positions(frame, step)
    full_pos = np.flatnonzero(full)
    t = frame.index
    h = step_hours(step)
    out = []
    for a in resets:
        later_full = full_pos[full_pos > a]
        stop = int(later_full[0]) if len(later_full) else len(frame)
        if stop <= a + 1 or np.isnan(soc[a]):
            continue
        seg = soc[a + 1:stop]
        if np.isnan(seg).all():
            continue
        low = a + 1 + int(np.nanargmin(seg))
        # measure between the first falling interval and the one before the low: the reset and
        # the low interval each hold a kink (flat → falling, falling → rising) where an
        # interval's mean SoC is not its midpoint's; between j and m SoC is a straight enough
        # line, and the charge from midpoint to midpoint is Σ I_k dt (k = j..m) − ½ (I_j + I_m) dt
        j, m = a + 1, low - 1
        if m <= j or np.isnan(soc[j]) or np.isnan(soc[m]):
            continue
        swing = float(soc[j] - soc[m])
        if swing < MIN_SWING_PCT:
            continue
        expected = (t[m] - t[j]) / pd.Timedelta(step) + 1
        amps = cur[j:m + 1]
        if np.isnan(amps).any() or (m - j + 1) / expected < MIN_SEGMENT_COVERAGE:
            continue
        half = 0.5 * (amps[0] + amps[-1])
        discharged = float(-np.clip(amps, None, 0.0).sum() * h)
        charged = float(np.clip(amps, 0.0, None).sum() * h)
        cap = (-(amps.sum() - half) * h) / (swing / 100.0)
        out.append(CapacityMeasurement(t[j], t[m], swing, discharged, charged, cap))
    return out


def _soh_values(ms: list[CapacityMeasurement], nameplate_ah: float) -> pd.Series:
    s = pd.Series([m.capacity_ah / nameplate_ah * 100.0 for m in ms], index=pd.DatetimeIndex([m.end for m in ms]), dtype="float64")
    return s[(s >= SOH_RANGE_PCT[0]) & (s <= SOH_RANGE_PCT[1])]


CAPACITY_METHOD = (f"net Ah out between a full-charge reset (SoC ≥ {FULL_SOC_PCT:g} % or float) and the later SoC low point "
                   f"(swing ≥ {MIN_SWING_PCT:g} points, no gaps), divided by the SoC swing; median of the last {SOH_RECENT_DAYS} days")


def capacity_and_soh(ms: list[CapacityMeasurement], nameplate_ah: float) -> tuple[Figure, Figure]:
    """(measured capacity Ah, SoH %) from the measurements of the last SOH_RECENT_DAYS days
    (all of them when there are none that recent).

    Assumption: the device's SoC is right at the two ends (a reset makes it 100 %, and a
    monitor corrects it by voltage at the low end); a device that only counts coulombs
    against the nameplate would make this measure the nameplate, whatever the battery
    (soc_drift_pct tells whether the device's SoC holds)."""
    soh = _soh_values(ms, nameplate_ah)
    if soh.empty:
        why = f"no discharge of ≥ {MIN_SWING_PCT:g} SoC points after a full charge, without gaps"
        return Figure.missing(why, CAPACITY_METHOD), Figure.missing(why, CAPACITY_METHOD)
    recent = soh[soh.index >= soh.index[-1] - pd.Timedelta(days=SOH_RECENT_DAYS)]
    value = float(recent.median())
    q1, q3 = np.percentile(recent, [25, 75]) if len(recent) > 1 else (value, value)
    conf: Confidence = "high" if len(recent) >= 5 and q3 - q1 < 3 else "medium" if len(recent) >= 2 else "low"
    note = f"{len(recent)} measurements, interquartile range {q1:.1f}-{q3:.1f} %"
    cap = Figure(value=round(value * nameplate_ah / 100.0, 1), unit="Ah", method=CAPACITY_METHOD, confidence=conf, note=note)
    return cap, Figure(value=round(value, 1), unit="%", method=CAPACITY_METHOD + "; / nameplate", confidence=conf, note=note)


def soh_trend(ms: list[CapacityMeasurement], nameplate_ah: float) -> Figure:
    """Linear fit of the monthly SoH values (median per calendar month, placed at the
    mean time of its measurements), in % per month (30.44 days). Confidence from the
    months fitted and the slope's standard error."""
    method = "least-squares slope of the monthly median SoH over time (% per 30.44 days)"
    soh = _soh_values(ms, nameplate_ah)
    if soh.empty:
        return Figure.missing("no capacity measurement", method)
    months = month_key(pd.DatetimeIndex(soh.index))
    y = soh.groupby(months).median()
    when = soh.index.to_series().groupby(months).apply(lambda s: s.iloc[0] + (s - s.iloc[0]).mean())
    if len(y) < 2:
        return Figure.missing("capacity measured in fewer than two months", method)
    x = np.array([(w - when.iloc[0]) / pd.Timedelta(days=DAYS_PER_MONTH) for w in when])
    slope, se = linear_trend(x, y.to_numpy())
    if se is not None and len(y) >= 4 and se <= 0.5:
        conf: Confidence = "high"
    elif se is not None and se <= 1.0:
        conf = "medium"
    else:
        conf = "low"
    se_text = "n/a with two months" if se is None else f"± {se:.2f} %/month"
    return Figure(value=round(slope, 2), unit="%/month", method=method, confidence=conf,
                  note=f"{len(y)} months, {len(soh)} measurements, standard error {se_text}")


def days_since_full_reset(frame: pd.DataFrame, step: timedelta, end: pd.Timestamp) -> Figure:
    """Days from the last full-charge reset in the window to ``end`` (the caller passes the
    end of the data in the window: a camper that went silent is not "longer without a full
    charge" than its data show)."""
    method = f"days from the last interval with SoC ≥ {FULL_SOC_PCT:g} % or float to the end of the data in the window"
    pos = reset_positions(frame, step)
    if len(pos) == 0:
        return Figure.missing(f"no full charge (SoC ≥ {FULL_SOC_PCT:g} % or float) in the window", method)
    last = frame.index[pos[-1]] + pd.Timedelta(step)
    days = max(0.0, (end - last) / pd.Timedelta(days=1))
    return Figure(value=round(days, 2), unit="d", method=method, confidence="high", note=f"last full charge {last.isoformat()}")


def soc_drift(frame: pd.DataFrame, step: timedelta, capacity_ah: float, capacity_source: str) -> Figure:
    """Device SoC − our coulomb count since the last full-charge reset in the window.

    Anchor: our count starts at the device's own SoC at the reset (≥ 99.5 %, i.e. full)
    and adds Σ I·dt / capacity (the measured capacity when there is one, else the BMS's
    SoH × nameplate, else the nameplate); so the drift is 0 at the reset by construction
    and grows as the device's estimate walks away from the charge that really moved. The
    stretch counted runs from the last reset with data after it to the next full interval
    (or the end): a window that ends on a fresh full charge shows the drift that reset
    corrected. Value: the difference at the stretch's last interval (positive = the device
    says fuller than it is);
    note: the drift rate (least-squares slope, points per day). Gaps hide Ah from our
    count: confidence falls with them.
    """
    method = f"device battery_soc_pct − (SoC at the last full reset + Σ battery_current_a·dt / {capacity_ah:.0f} Ah)"
    soc, cur = column(frame, "battery_soc_pct"), column(frame, "battery_current_a")
    if soc.isna().all() or cur.isna().all():
        return Figure.missing("needs battery_soc_pct and battery_current_a", method)
    pos = reset_positions(frame, step)
    if len(pos) == 0:
        return Figure.missing(f"no full-charge reset (SoC ≥ {FULL_SOC_PCT:g} % or float) to anchor the count", method)
    # the last reset with a stretch of data after it, up to the next full interval: when the
    # window ends on a fresh full charge, the stretch before it tells what that reset corrected
    full_pos = np.flatnonzero(full_mask(frame))
    a, stop = -1, len(frame)
    for candidate in pos[::-1]:
        later = full_pos[full_pos > candidate]
        stop = int(later[0]) if len(later) else len(frame)
        if stop - candidate > 2:
            a = int(candidate)
            break
    if a < 0:
        return Figure.missing("no stretch of data after a full-charge reset", method)
    after = frame.iloc[a + 1:stop]
    anchor = float(soc.iloc[a]) if not np.isnan(soc.iloc[a]) else 100.0
    ours = anchor + (cur.iloc[a + 1:stop].fillna(0.0).cumsum() * step_hours(step) / capacity_ah * 100.0)
    diff = (soc.iloc[a + 1:stop] - ours).dropna()
    if diff.empty:
        return Figure.missing("no battery_soc_pct after the last full-charge reset", method)
    days = np.asarray((diff.index - frame.index[a]) / pd.Timedelta(days=1), dtype="float64")
    span_d = float(days[-1])
    rate = linear_trend(days, diff.to_numpy())[0] if span_d > 0 and len(diff) >= 2 else None
    covered = len(after) / max(1.0, (after.index[-1] - frame.index[a]) / pd.Timedelta(step))
    conf: Confidence = ("high" if covered >= 0.95 and capacity_source == "measured" else
                        "medium" if covered >= 0.8 else "low")
    note = (f"anchored at the full reset {frame.index[a].isoformat()} ({anchor:.1f} %), up to {diff.index[-1].isoformat()}; "
            f"capacity {capacity_ah:.0f} Ah ({capacity_source}); over {span_d:.1f} days")
    if rate is not None:
        note += f"; drift rate {rate:+.2f} points/day"
    if covered < 0.95:
        note += f"; only {covered:.0%} of the intervals since the reset have data"
    return Figure(value=round(float(diff.iloc[-1]), 1) + 0.0, unit="% points", method=method, confidence=conf, note=note)
