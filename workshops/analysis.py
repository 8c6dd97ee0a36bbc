"""Energy analyses of a camper over the store interface, written once for both backends.

What the workshops ask (ARCHITECTURE.md §1, §6): how much did the sun give,
how much did we use, how self-sufficient were we, per Europe/Rome day and over
any window. Everything is computed in pandas from :meth:`Store.series` with a
whole-minute ``every`` (whole hours over long windows, :func:`read_every`), so
the store answers from its per-minute (per-hour) rollups and a year stays fast
(tests/bench/test_bench_energy.py).

Method (why each choice):

* **Energy** is the integral of mean power over the intervals that have data:
  each interval's mean power times the part of the interval inside the window.
  Intervals without readings are absent and count for nothing: a gap is a gap,
  never a zero. ``coverage_pct`` tells which share of the window had readings
  (PV or load power); a window without any has ``None`` values.
* **Battery** power is ``battery_power_w`` (positive = charging); where a device
  reports only voltage and current, their product (the product of the interval
  means: close enough at a minute, where the voltage barely moves).
  Charge and discharge are its positive and negative parts, interval by interval.
* **Shore energy** comes from the balance of measured flows while the shore
  flag (``shore_power``: was it on at any time in the interval) says shore
  power was connected: ``load + battery charge - PV - battery discharge``,
  clipped at 0 (what the measured sources do not explain came from the
  socket). Off: 0. Where the flag is not reported the shore energy of that
  interval is unknown (not 0), and so is the self-sufficiency computed from it.
  Without a battery reading the battery counts as 0 in the balance (the
  shore energy that went into the battery is then missed).
* **Self-sufficiency**: share of the load not drawn from shore power,
  ``100 * (1 - shore_wh / load_wh)`` over the intervals where both are known.
* **Self-consumption**: share of the PV energy used, interval by interval
  ``min(pv, load + battery charge) / pv``: what is neither consumed nor stored
  was lost (conversion) or curtailed (a full battery).
* **Peak** power: the highest reading of the window (the ``max`` aggregate).
* **Sunny hours**: time with PV power at least :data:`SUNNY_PV_W`, after the
  WMO's sunshine threshold of 120 W/m² of direct irradiance: 12 % of the
  400 Wp roof (edge/sim/model.py) at 1,000 W/m².
* **CO2 avoided**: PV energy times the Italian grid's factor
  (:mod:`camperhub.workshops.equivalents`, ISPRA).

Local days: Europe/Rome, from local midnight to local midnight, so the days of
the DST changes last 23 and 25 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from camperhub.contract import Stream
from camperhub.store.base import Store
from camperhub.workshops.equivalents import Equivalent, co2_avoided_kg, equivalents

__all__ = [
    "AnalysisError",
    "EnergyTotals",
    "Equivalent",
    "LOCAL_TZ",
    "LOW_COVERAGE_PCT",
    "MAX_DAYS",
    "SUNNY_PV_W",
    "daily_totals",
    "day_window",
    "period_totals",
    "power_frame",
    "read_every",
    "window_totals",
]

LOCAL_TZ = ZoneInfo("Europe/Rome")
#: PV power counted as sunshine (W): WMO's 120 W/m² x the 400 Wp roof / 1000 W/m².
SUNNY_PV_W = 48.0
#: Below this coverage a total stands on too little data to be read as the day's:
#: pages and reports say so next to it (the values are still those of the covered part).
LOW_COVERAGE_PCT = 90.0
#: Longest window analysed at once (a leap year and a bit; as the API's series).
MAX_DAYS = 400

#: Columns of :func:`power_frame`.
POWER_COLUMNS = ("pv_w", "load_w", "battery_w", "shore_w", "battery_soc_pct")
_MEAN_FIELDS = ["pv_power_w", "load_power_w", "battery_power_w", "battery_voltage_v", "battery_current_a", "battery_soc_pct"]
_MAX_FIELDS = ["pv_power_w", "load_power_w", "shore_power"]
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
#: Longest window read at one minute (see read_every).
MINUTE_WINDOW = timedelta(days=35)


class AnalysisError(ValueError):
    """The question cannot be answered as asked (an inverted or absurd window); the message says why."""


@dataclass(frozen=True)
class EnergyTotals:
    """Totals of a window ``[start, end)``; ``None`` = not enough data (a gap), never 0."""

    start: datetime  # UTC, aware
    end: datetime  # UTC, aware, excluded
    day: date | None  # the Europe/Rome day, for daily rows
    coverage_pct: float  # share of the window with readings (0..100)
    pv_wh: float | None
    load_wh: float | None
    battery_charge_wh: float | None
    battery_discharge_wh: float | None
    shore_wh: float | None  # energy drawn from shore power (from measured flows)
    self_sufficiency_pct: float | None  # share of the load not drawn from shore power
    self_consumption_pct: float | None  # share of PV energy used (not lost/curtailed)
    peak_pv_w: float | None
    peak_load_w: float | None
    sunny_hours: float | None
    co2_avoided_kg: float | None
    battery_soc_start_pct: float | None
    battery_soc_end_pct: float | None
    battery_soc_min_pct: float | None
    battery_soc_max_pct: float | None
    equivalents: tuple[Equivalent, ...]  # of pv_wh

    @property
    def low_coverage(self) -> bool:
        """True when the window had readings for less than :data:`LOW_COVERAGE_PCT` of its time."""
        return self.coverage_pct < LOW_COVERAGE_PCT


# -- windows ------------------------------------------------------------------------------
def day_window(day: date) -> tuple[datetime, datetime]:
    """``[local midnight, next local midnight)`` of a Europe/Rome day, in UTC (23 or 25 h on DST days)."""
    start = datetime.combine(day, time(0), LOCAL_TZ).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), LOCAL_TZ).astimezone(UTC)
    return start, end


def _check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise AnalysisError("start and end must carry a time zone (UTC in storage); a naive time is ambiguous")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise AnalysisError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if end - start > timedelta(days=MAX_DAYS):
        raise AnalysisError(f"the window of {(end - start).days} days is longer than {MAX_DAYS} days: ask for a shorter one")
    return start, end


def read_every(start: datetime, end: datetime) -> timedelta:
    """The interval analyses read at: one minute up to :data:`MINUTE_WINDOW`, else one hour.

    Why: a minute keeps gaps exact to the minute, but a year of minutes is
    525,600 rows per read, which the stores serve in seconds. Over longer
    windows an interval of one hour is read, which the stores answer from
    their hour tier (8,760 rows a year; a year's daily summary well under a
    second, tests/bench/test_bench_energy.py): an hour with any reading then
    counts as covered and its mean power as held for the whole hour
    (coverage and gaps resolved to the hour; local days stay whole, as Rome's
    UTC offsets are whole hours). So a day's totals inside a long window may
    differ slightly from the same day asked alone, by what its partial hours
    hold, and sunny hours count whole hours by their mean PV power (peaks stay exact:
    the maximum of the hours' maxima)."""
    return _MINUTE if end - start <= MINUTE_WINDOW else _HOUR


# -- frames -------------------------------------------------------------------------------
def _reads(store: Store, camper: str, start: datetime, end: datetime, every: timedelta) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The mean and the max reads of the window (two aggregates: one store read each)."""
    means = store.series(camper, Stream.ENERGY, _MEAN_FIELDS, start, end, every=every, aggregate="mean")
    peaks = store.series(camper, Stream.ENERGY, _MAX_FIELDS, start, end, every=every, aggregate="max")
    return means, peaks


def _power(means: pd.DataFrame, peaks: pd.DataFrame) -> pd.DataFrame:
    """Mean power per interval (see the module's method), indexed like the reads (UTC)."""
    index = means.index.union(peaks.index)
    m = means.reindex(index).astype("float64")
    p = peaks.reindex(index)
    battery = m["battery_power_w"].fillna(m["battery_voltage_v"] * m["battery_current_a"])
    pv, load = m["pv_power_w"], m["load_power_w"]
    flag = p["shore_power"]
    known = flag.notna()
    on = known & flag.where(known, False).astype(bool)
    balance = (load + battery.fillna(0.0) - pv).clip(lower=0.0)
    shore = pd.Series(np.where(on, balance, np.where(known, 0.0, np.nan)), index=index, dtype="float64")
    out = pd.DataFrame(
        {
            "pv_w": pv,
            "load_w": load,
            "battery_w": battery,
            "shore_w": shore,
            "battery_soc_pct": m["battery_soc_pct"],
            "peak_pv_w": p["pv_power_w"].astype("float64"),
            "peak_load_w": p["load_power_w"].astype("float64"),
        },
        index=index,
    )
    return out


def power_frame(store: Store, camper: str, start: datetime, end: datetime, every: timedelta = _MINUTE) -> pd.DataFrame:
    """Mean power per interval over ``[start, end)``: columns ``pv_w``, ``load_w``,
    ``battery_w`` (+ = charging), ``shore_w``, ``battery_soc_pct``; an interval
    without readings is a missing row (never a row of zeros). Indexed by the
    interval's start, tz-aware UTC (name ``time``)."""
    start, end = _check_window(start, end)
    if every <= timedelta(0):
        raise AnalysisError(f"every must be positive, not {every}")
    means, peaks = _reads(store, camper, start, end, every)
    frame = _power(means, peaks)
    frame = frame.loc[frame[["pv_w", "load_w", "battery_w"]].notna().any(axis=1), list(POWER_COLUMNS)]
    frame.index.name = "time"
    return frame


# -- totals -------------------------------------------------------------------------------
def _hours_inside(index: pd.DatetimeIndex, every: timedelta, start: datetime, end: datetime) -> np.ndarray:
    """Hours of each interval ``[t, t + every)`` that lie inside ``[start, end)``."""
    t0 = index.as_unit("ns").asi8
    lo = np.maximum(t0, pd.Timestamp(start).value)
    hi = np.minimum(t0 + int(every.total_seconds() * 1e9), pd.Timestamp(end).value)
    return np.clip(hi - lo, 0, None) / 3.6e12


@dataclass(frozen=True)
class _Columns:
    """The power frame as float64 arrays (NaN = no value), sliced per day without pandas.

    Why arrays: a year's daily summary makes 365 sets of totals, and the same sums on
    pandas Series cost several seconds (tests/bench/test_bench_energy.py)."""

    pv: np.ndarray
    load: np.ndarray
    battery: np.ndarray
    shore: np.ndarray
    soc: np.ndarray
    peak_pv: np.ndarray
    peak_load: np.ndarray

    @classmethod
    def of(cls, f: pd.DataFrame) -> "_Columns":
        def col(name: str) -> np.ndarray:
            return f[name].to_numpy(dtype="float64", na_value=np.nan)

        return cls(col("pv_w"), col("load_w"), col("battery_w"), col("shore_w"), col("battery_soc_pct"), col("peak_pv_w"), col("peak_load_w"))

    def rows(self, lo: int, hi: int) -> "_Columns":
        return _Columns(*(a[lo:hi] for a in (self.pv, self.load, self.battery, self.shore, self.soc, self.peak_pv, self.peak_load)))


def _wh(power: np.ndarray, hours: np.ndarray) -> float | None:
    ok = ~np.isnan(power)
    if not ok.any():
        return None
    return float(np.dot(power[ok], hours[ok]))


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return float(min(100.0, max(0.0, 100.0 * part / whole)))


def _max(values: np.ndarray) -> float | None:
    ok = values[~np.isnan(values)]
    return float(ok.max()) if ok.size else None


def _totals(c: _Columns, hours: np.ndarray, start: datetime, end: datetime, day: date | None) -> EnergyTotals:
    """Totals of the rows ``c`` (power per interval) whose hours inside the window are ``hours``."""
    window_h = (end - start).total_seconds() / 3600
    has_pv, has_load = ~np.isnan(c.pv), ~np.isnan(c.load)
    covered = has_pv | has_load
    coverage = float(min(100.0, 100.0 * hours[covered].sum() / window_h)) if window_h > 0 else 0.0
    pv_wh = _wh(c.pv, hours)
    load_wh = _wh(c.load, hours)
    charge_wh = _wh(np.where(np.isnan(c.battery), np.nan, np.maximum(c.battery, 0.0)), hours)
    discharge_wh = _wh(np.where(np.isnan(c.battery), np.nan, np.maximum(-c.battery, 0.0)), hours)
    shore_wh = _wh(c.shore, hours)
    both = ~np.isnan(c.shore) & has_load
    self_sufficiency = None
    if both.any():
        s_wh, l_wh = _wh(c.shore[both], hours[both]), _wh(c.load[both], hours[both])
        self_sufficiency = None if not l_wh else 100.0 - _pct(s_wh, l_wh)  # type: ignore[operator]
    # PV used: what went to the loads or into the battery, at most what the sun gave
    into = c.load + np.where(np.isnan(c.battery), 0.0, np.maximum(c.battery, 0.0))
    pv_and_load = has_pv & has_load
    used = np.where(pv_and_load, np.minimum(c.pv, into), np.nan)
    used_wh = _wh(used, hours)
    pv_both_wh = _wh(np.where(pv_and_load, c.pv, np.nan), hours)
    sunny = None if pv_wh is None else float(hours[has_pv & (c.pv >= SUNNY_PV_W)].sum())
    soc = c.soc[~np.isnan(c.soc)]
    return EnergyTotals(
        start=start, end=end, day=day, coverage_pct=round(coverage, 3),
        pv_wh=pv_wh, load_wh=load_wh, battery_charge_wh=charge_wh, battery_discharge_wh=discharge_wh,
        shore_wh=shore_wh, self_sufficiency_pct=self_sufficiency, self_consumption_pct=_pct(used_wh, pv_both_wh),
        peak_pv_w=_max(c.peak_pv), peak_load_w=_max(c.peak_load), sunny_hours=sunny,
        co2_avoided_kg=co2_avoided_kg(pv_wh),
        battery_soc_start_pct=float(soc[0]) if soc.size else None,
        battery_soc_end_pct=float(soc[-1]) if soc.size else None,
        battery_soc_min_pct=float(soc.min()) if soc.size else None,
        battery_soc_max_pct=float(soc.max()) if soc.size else None,
        equivalents=equivalents(pv_wh),
    )


def window_totals(store: Store, camper: str, start: datetime, end: datetime) -> EnergyTotals:
    """Totals of ``[start, end)`` (aware; UTC in the answer). An unknown camper or a window
    without readings answers coverage 0 and ``None`` values; AnalysisError for an
    inverted window or one longer than :data:`MAX_DAYS`."""
    start, end = _check_window(start, end)
    every = read_every(start, end)
    f = _power(*_reads(store, camper, start, end, every))
    return _totals(_Columns.of(f), _hours_inside(f.index, every, start, end), start, end, None)


def daily_totals(store: Store, camper: str, first_day: date, last_day: date) -> list[EnergyTotals]:
    """One :class:`EnergyTotals` per Europe/Rome day from ``first_day`` to ``last_day``
    inclusive, every day present (a day without readings: coverage 0, ``None``
    values). One read for the whole range, grouped by local day."""
    return period_totals(store, camper, first_day, last_day)[0]


def period_totals(store: Store, camper: str, first_day: date, last_day: date) -> tuple[list[EnergyTotals], EnergyTotals]:
    """The daily rows of :func:`daily_totals` and the totals of the whole period, from one read
    (a summary page shows both; reading the year twice would double its time)."""
    if last_day < first_day:
        raise AnalysisError(f"the last day ({last_day.isoformat()}) is before the first ({first_day.isoformat()})")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise AnalysisError(f"{(last_day - first_day).days + 1} days is more than {MAX_DAYS}: ask for a shorter range")
    start, _ = day_window(first_day)
    _, end = day_window(last_day)
    every = read_every(start, end)
    f = _power(*_reads(store, camper, start, end, every))
    hours = _hours_inside(f.index, every, start, end)
    cols = _Columns.of(f)
    # The frame is in time order and whole-minute intervals never straddle a local midnight
    # (Rome's offsets are whole hours): each day's rows are one slice, found by its bounds.
    times = f.index.as_unit("ns").asi8
    out = []
    day = first_day
    while day <= last_day:
        d_start, d_end = day_window(day)
        lo, hi = np.searchsorted(times, [pd.Timestamp(d_start).value, pd.Timestamp(d_end).value])
        out.append(_totals(cols.rows(int(lo), int(hi)), hours[lo:hi], d_start, d_end, day))
        day += timedelta(days=1)
    return out, _totals(cols, hours, start, end, None)
