"""Battery analytics for fleet staff (ARCHITECTURE.md §1; issue 7): the full report of one
camper over a window, and a cheap summary per camper for the fleet overview.

Why two functions: the fleet overview lists 50 campers and must answer in about 100 ms,
so :func:`battery_summary` reads one latest sample and at most a couple of hundred
aggregated rows (and caches); :func:`battery_report` reads the whole window of per-minute
means (a year is 525,600 rows, seconds not milliseconds) and computes every figure.

Why per-minute means: the store keeps per-minute rollups (camperhub/store/base.py), so a
year reads from one row per minute instead of 6 M raw samples, and every figure here is
linear enough in its inputs for a minute's mean to do (Ah from mean current × minute;
ΔV/ΔI from mean V and I; see each method's docstring for what the smoothing costs).

The figures and their methods: camperhub/fleet/battery_methods.py (cycles, depth of
discharge, internal resistance, time at high SoC/temperature, cell imbalance) and
camperhub/fleet/battery_capacity.py (capacity, SoH and its trend, SoC drift, days since
the last full charge). The JSON shapes: camperhub/fleet/battery_model.py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from camperhub.contract import Stream
from camperhub.fleet import battery_capacity as cap
from camperhub.fleet import battery_methods as bm
from camperhub.fleet.battery_model import BatteryReport, BatterySpec, BatterySummary, Figure
from camperhub.store.base import Store

#: Fields read as per-interval means.
MEAN_FIELDS = (
    "battery_current_a", "battery_voltage_v", "battery_soc_pct", "battery_temp_c",
    "cell_voltage_min_v", "cell_voltage_max_v", "battery_soh_pct", "battery_cycles",
)
DEFAULT_EVERY = timedelta(minutes=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
#: Resolution chosen when the caller gives none: per-minute means up to this window, else
#: COARSE_EVERY. Why: on SQLite a year of eight fields at one minute reads in about 6 s
#: (525,600 intervals), at 15 minutes in about 2 s, and every figure but the internal
#: resistance is as good at 15 minutes (net Ah is exact at any interval; see each method
#: for what the smoothing costs: cycles miss charge/discharge reversals inside 15 min).
FINE_WINDOW = timedelta(days=35)
COARSE_EVERY = timedelta(minutes=15)
#: Internal resistance needs load steps between consecutive minutes: when the report reads
#: coarser intervals, it reads the last this-many days of V, I, SoC at one minute too.
RESISTANCE_WINDOW = timedelta(days=14)
RESISTANCE_FIELDS = ("battery_current_a", "battery_voltage_v", "battery_soc_pct")
#: How far back the summary looks for the last full charge, in widening steps: most
#: campers reach full every sunny day, so the first (cheap, hourly) step usually answers.
#: Beyond 35 days the summary says "not within 35 days" (the full report searches its whole window).
SUMMARY_LOOKBACK = ((timedelta(days=2), timedelta(hours=1)), (timedelta(days=35), timedelta(days=1)))
#: A summary younger than this is served from the cache: the data behind it are per-minute.
SUMMARY_TTL = timedelta(seconds=60)


def _check_window(start: datetime, end: datetime, every: timedelta) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (UTC)")
    if end <= start:
        raise ValueError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if every < timedelta(minutes=1) or every % timedelta(minutes=1):
        raise ValueError(f"every must be a whole number of minutes (the store's rollups), got {every}")


def read_battery_frame(
    store: Store, camper: str, start: datetime, end: datetime, every: timedelta = DEFAULT_EVERY,
    fields: tuple[str, ...] = MEAN_FIELDS,
) -> pd.DataFrame:
    """Per-interval means of ``fields`` plus the last charge_state of each interval (rows where
    a field of ``fields`` has a value)."""
    _check_window(start, end, every)
    mean = store.series(camper, Stream.ENERGY, list(fields), start, end, every=every, aggregate="mean")
    state = store.series(camper, Stream.ENERGY, ["charge_state"], start, end, every=every, aggregate="last")
    frame = mean.join(state, how="outer").sort_index()
    return frame[frame[list(fields)].notna().any(axis=1)]


def report_from_frame(
    frame: pd.DataFrame, camper: str, start: datetime, end: datetime, spec: BatterySpec, every: timedelta = DEFAULT_EVERY,
    fine: pd.DataFrame | None = None,
) -> BatteryReport:
    """Every figure of the report from a frame of per-interval means (pure: unit-testable).
    ``fine``: per-minute means of RESISTANCE_FIELDS (+ charge_state) for the internal
    resistance when ``frame`` is coarser."""
    n = bm.window_intervals(pd.Timestamp(start), pd.Timestamp(end), every)
    ms = cap.capacity_measurements(frame, every)
    capacity, soh = cap.capacity_and_soh(ms, spec.nameplate_ah)
    if capacity.known:
        count_ah, source = float(capacity.value), "measured"
    else:
        bms_soh = bm.column(frame, "battery_soh_pct").dropna()
        count_ah, source = (spec.nameplate_ah * float(bms_soh.iloc[-1]) / 100.0, "BMS SoH") if len(bms_soh) else (spec.nameplate_ah, "nameplate")
    if not soh.known:
        bms_soh = bm.column(frame, "battery_soh_pct").dropna()
        if len(bms_soh):
            soh = Figure(value=round(float(bms_soh.iloc[-1]), 1), unit="%", method="the BMS's battery_soh_pct (last interval)",
                         confidence="low", note=f"not measured here ({soh.reason}); the BMS's own estimate")
    data_end = min(pd.Timestamp(end), frame.index[-1] + pd.Timedelta(every)) if len(frame) else pd.Timestamp(end)
    return BatteryReport(
        camper=camper, start=start, end=end, spec=spec, every_s=int(every.total_seconds()),
        intervals=len(frame), coverage_pct=round(100.0 * len(frame) / n, 1),
        equivalent_cycles=bm.equivalent_cycles(frame, every, spec.nameplate_ah, n),
        dod_histogram=bm.dod_histogram(frame),
        capacity_ah=capacity,
        soh_pct=soh,
        soh_trend_pct_per_month=cap.soh_trend(ms, spec.nameplate_ah),
        internal_resistance_mohm=_resistance(frame, every, fine),
        time_high_soc_h=bm.time_at(frame, every, "battery_soc_pct", above=bm.HIGH_SOC_PCT),
        time_hot_h=bm.time_at(frame, every, "battery_temp_c", above=bm.HOT_C),
        time_cold_h=bm.time_at(frame, every, "battery_temp_c", below=bm.COLD_C),
        cell_imbalance_mv=bm.cell_imbalance(frame),
        soc_drift_pct=cap.soc_drift(frame, every, count_ah, source),
        days_since_full_reset=cap.days_since_full_reset(frame, every, data_end),
    )


def _resistance(frame: pd.DataFrame, every: timedelta, fine: pd.DataFrame | None) -> Figure:
    if fine is None:
        return bm.internal_resistance(frame, every)
    fig = bm.internal_resistance(fine, MINUTE)
    if not fig.known:
        return fig
    days = (fine.index[-1] - fine.index[0]) / pd.Timedelta(days=1) if len(fine) else 0.0
    return fig.model_copy(update={"note": f"{fig.note}; per-minute means of the last {days:.0f} days"})


def choose_every(start: datetime, end: datetime) -> timedelta:
    """The resolution of a report without an explicit one: one minute up to FINE_WINDOW."""
    return DEFAULT_EVERY if end - start <= FINE_WINDOW else COARSE_EVERY


def battery_report(
    store: Store,
    camper: str,
    start: datetime,
    end: datetime,
    nameplate_ah: float | None = None,
    spec: BatterySpec | None = None,
    every: timedelta | None = None,
    cache: SummaryCache | None = None,
) -> BatteryReport:
    """The full battery report of ``camper`` over [start, end) (aware times).

    ``spec`` is the camper's battery (default: 200 Ah, 12.8 V LiFePO4); ``nameplate_ah``
    overrides its capacity. ``every`` is the interval of the means read (whole minutes;
    default :func:`choose_every`: one minute up to 35 days, else 15 minutes, with the
    internal resistance from the last RESISTANCE_WINDOW at one minute).
    With ``cache``, the measured SoH and the cycles land there for :func:`battery_summary`.
    ValueError on a bad window; the store's errors pass through (StoreUnavailable, ...).
    """
    spec = spec or BatterySpec()
    if nameplate_ah is not None:
        spec = spec.model_copy(update={"nameplate_ah": BatterySpec(nameplate_ah=nameplate_ah).nameplate_ah})
    if every is None:
        _check_window(start, end, MINUTE)
        every = choose_every(start, end)
    frame = read_battery_frame(store, camper, start, end, every)
    fine = None
    if every > MINUTE and end - start > timedelta(0):
        fine = read_battery_frame(store, camper, max(start, end - RESISTANCE_WINDOW), end, MINUTE, RESISTANCE_FIELDS)
    report = report_from_frame(frame, camper, start, end, spec, every, fine)
    if cache is not None:
        cache.remember_report(report)
    return report


# --- the cheap summary ------------------------------------------------------------------

@dataclass
class _Known:
    summary: BatterySummary | None = None
    soh_pct: float | None = None
    cycles: float | None = None
    last_full_reset: datetime | None = None  # None: none since looked_from
    searched_until: datetime | None = None
    looked_from: datetime | None = None


class SummaryCache:
    """What :func:`battery_summary` remembers per camper (thread-safe; one per API process):
    the last summary (served for SUMMARY_TTL), SoH and cycles estimated by the last full
    report, and the last full charge found with how far the search got, so the next search
    only reads what came after."""

    def __init__(self, ttl: timedelta = SUMMARY_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}

    def get(self, camper: str) -> _Known:
        with self._lock:
            return self._known.setdefault(camper, _Known())

    def remember_summary(self, summary: BatterySummary) -> None:
        """Keep a summary (served for ``ttl``) and the last full charge it found."""
        k = self.get(summary.camper)
        with self._lock:
            k.summary = summary
            k.last_full_reset, k.searched_until = summary.last_full_reset, summary.at
            k.looked_from = summary.at - timedelta(days=summary.full_reset_looked_back_days)

    def remember_report(self, report: BatteryReport) -> None:
        """Keep the report's measured SoH and its cycles (when it reaches to now-ish)."""
        k = self.get(report.camper)
        with self._lock:
            if report.soh_pct.known and report.soh_pct.method and report.soh_pct.method.startswith(cap.CAPACITY_METHOD):
                k.soh_pct = float(report.soh_pct.value)
            if report.equivalent_cycles.known:
                k.cycles = float(report.equivalent_cycles.value)
            k.summary = None


def _last_full_reset(store: Store, camper: str, now: datetime, after: datetime | None) -> tuple[datetime | None, float]:
    """Newest time with SoC ≥ FULL_SOC_PCT (to the hour or day), looked for in widening
    windows back from ``now`` (never before ``after``); and how far back it looked (days)."""
    looked = timedelta(0)
    for back, every in SUMMARY_LOOKBACK:
        start = now - back if after is None else max(now - back, after)
        looked = now - start
        if start >= now:
            break
        soc = store.series(camper, Stream.ENERGY, ["battery_soc_pct"], start, now, every=every, aggregate="max")["battery_soc_pct"]
        full = soc[soc >= cap.FULL_SOC_PCT]
        if len(full):
            bucket = full.index[-1].to_pydatetime()
            if every > HOUR:  # refine the day to its hour: one more read of 24 rows
                soc = store.series(camper, Stream.ENERGY, ["battery_soc_pct"], max(bucket, start), min(bucket + every, now),
                                   every=HOUR, aggregate="max")["battery_soc_pct"]
                hours = soc[soc >= cap.FULL_SOC_PCT]
                bucket, every = (hours.index[-1].to_pydatetime(), HOUR) if len(hours) else (bucket, every)
            return min(now, bucket + every), looked / timedelta(days=1)
        if after is not None and start == after:
            break
    return None, looked / timedelta(days=1)


def battery_summary(store: Store, camper: str, now: datetime, cache: SummaryCache | None = None) -> BatterySummary:
    """Latest SoC, SoH (the BMS's battery_soh_pct, else the last report's measurement),
    cycles (the BMS counter, else the last report's equivalent cycles), and days since the
    last full charge (SoC ≥ 99.5 %, to the hour; looked for up to 35 days back, then null
    with ``full_reset_looked_back_days`` saying how far it looked).
    A few small queries; with ``cache`` most calls none."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    known = cache.get(camper) if cache is not None else _Known()
    if known.summary is not None and cache is not None and timedelta(0) <= now - known.summary.at < cache.ttl:
        return known.summary
    latest = store.latest(camper, Stream.ENERGY)
    fields = latest.fields if latest is not None else {}
    soc_at = datetime.fromtimestamp(latest.ts_ms / 1000, tz=UTC) if latest is not None else None
    soh, soh_src = (float(fields["battery_soh_pct"]), "bms") if fields.get("battery_soh_pct") is not None else (known.soh_pct, "estimate")
    cyc, cyc_src = (float(fields["battery_cycles"]), "bms") if fields.get("battery_cycles") is not None else (known.cycles, "estimate")
    latest_soc = fields.get("battery_soc_pct")
    if latest_soc is not None and soc_at is not None and float(latest_soc) >= cap.FULL_SOC_PCT:
        last, looked = soc_at, 0.0  # full right now: nothing to search
    elif known.searched_until is not None and known.looked_from is not None and now >= known.searched_until:
        # searched before: only what came since (an hour's overlap for late data) can be newer
        found, _ = _last_full_reset(store, camper, now, known.searched_until - HOUR)
        last = found or known.last_full_reset
        looked = (now - (last or known.looked_from)) / timedelta(days=1)
    else:
        last, looked = _last_full_reset(store, camper, now, None)
    summary = BatterySummary(
        camper=camper, at=now,
        soc_pct=None if fields.get("battery_soc_pct") is None else float(fields["battery_soc_pct"]), soc_at=soc_at,
        soh_pct=soh, soh_source=soh_src if soh is not None else None,
        cycles=cyc, cycles_source=cyc_src if cyc is not None else None,
        last_full_reset=last,
        days_since_full_reset=None if last is None else round(max(0.0, (now - last) / timedelta(days=1)), 2),
        full_reset_looked_back_days=round(looked, 2),
    )
    if cache is not None:
        cache.remember_summary(summary)
    return summary
