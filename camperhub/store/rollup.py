"""Per-minute rollups of the energy stream: what both backends share (ARCHITECTURE.md §5, §11).

Why rollups: a year of 5-s energy samples is 6.3 M rows per camper; a
year's daily summary must answer in under a second, so aggregated reads of
whole minutes come from one row per (camper, minute) instead (525,600 a year).

Why these components: every aggregate of :meth:`Store.series` over any run of
whole minutes is exact from, per field and minute, ``sum``, ``count``,
``min``, ``max``, ``first`` and ``last`` (value of the minute's earliest and
latest sample having one): mean = Σsum / Σcount, min = min of mins, first =
the first of the earliest minute having one, and so on. Text fields keep
count/first/last, booleans also min/max (the aggregates the raw path allows).

Why "dirty minutes": a rollup is recomputed from raw (never merged into), so
folding is idempotent and right when several ingest processes wrote parts of
one minute; the store only has to know which minutes were written since they
were last folded. Late data (a backlog replayed days later) makes its old
minutes dirty again. Reads take whole buckets from the rollups before the
*folded horizon* (the start of the camper's oldest dirty minute, now when none
is) and from raw after it, so no answer ever depends on whether the job ran.

Why an hour tier (``energy_1h``): a year of minutes is still 525,600 wide rows
per read (~1 s on SQLite for a daily summary's two reads). The hour tier keeps
the same components per (camper, hour), recomputed whole from the hour's minute
rows (sum of sums, sum of counts, min of mins, max of maxes, the first of the
earliest minute having one, the last of the latest), so it is exact for every
aggregate too: 8,760 rows a year. rollup() recomputes every hour holding a
minute it folded (late data re-dirties minutes, hence their hours). Reads of
whole hours take the buckets that end before the *hour horizon* (the folded
horizon floored to the hour, and before any hour still to recompute) from it;
the rest comes from the minute tier or raw, as before (:func:`split_window`).

This module holds the arithmetic both backends need (no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from camperhub.contract import Stream

MINUTE_MS = 60_000
MINUTE = timedelta(minutes=1)
#: Only minutes that ended this long ago are folded: samples of a minute that
#: just ended may still be on their way (edge batching, the ingest's batch
#: wait). Folding earlier is still correct (the late ones re-dirty the minute),
#: only wasted work.
SETTLE = timedelta(seconds=5)
#: Name of the rollup table (SQLite) or measurement (InfluxDB).
ROLLUP_NAME = "energy_1m"
HOUR_MS = 3_600_000
HOUR = timedelta(hours=1)
#: Name of the hour tier's table (SQLite) or measurement (InfluxDB).
HOUR_ROLLUP_NAME = "energy_1h"
#: Sources of a window's segment (Segment.source).
RAW, MINUTE_TIER, HOUR_TIER = "raw", "minute", "hour"
#: Components kept per storage kind ("real", "int", "bool", "text").
COMPONENTS: dict[str, tuple[str, ...]] = {
    "real": ("sum", "count", "min", "max", "first", "last"),
    "int": ("sum", "count", "min", "max", "first", "last"),
    "bool": ("count", "min", "max", "first", "last"),
    "text": ("count", "first", "last"),
}
#: Components an aggregate is computed from (mean needs two).
PARTS: dict[str, tuple[str, ...]] = {
    "mean": ("sum", "count"), "sum": ("sum",), "count": ("count",), "min": ("min",), "max": ("max",),
    "first": ("first",), "last": ("last",),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def column(field: str, component: str) -> str:
    """Name of a component column (SQLite) or field (InfluxDB): ``pv_power_w__sum``."""
    return f"{field}__{component}"


def defined(kind: str, aggregate: str) -> bool:
    """Whether the rollups of a field of this kind can answer ``aggregate``."""
    return all(p in COMPONENTS[kind] for p in PARTS[aggregate])


def served(stream: Stream, every: timedelta | None) -> bool:
    """Rollups answer aggregated energy reads whose interval is whole minutes."""
    return every is not None and Stream(stream) is Stream.ENERGY and every % MINUTE == timedelta(0)


def minute_of(ts_ms: int) -> int:
    """Start (epoch ms) of the minute holding ``ts_ms``."""
    return ts_ms - ts_ms % MINUTE_MS


def ready_ms(now: datetime | None) -> int:
    """Minutes with ``minute_ms + MINUTE_MS <= ready_ms(now)`` may be folded (see SETTLE)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return (now - SETTLE - _EPOCH) // timedelta(milliseconds=1)


def floor_minute_ms(t: datetime) -> int:
    """Start (epoch ms) of the minute holding ``t``."""
    return (t - _EPOCH) // MINUTE * MINUTE_MS


def at(ms: int) -> datetime:
    """An epoch-ms instant as an aware UTC datetime (exact)."""
    return _EPOCH + timedelta(milliseconds=ms)


def minute_runs(minutes: Iterable[int], step_ms: int = MINUTE_MS) -> list[tuple[int, int]]:
    """Minute (or, with ``step_ms``, hour) starts merged into half-open ``[lo, hi)`` runs of
    consecutive ones (one query each)."""
    runs: list[tuple[int, int]] = []
    for m in sorted(set(minutes)):
        if runs and runs[-1][1] == m:
            runs[-1] = (runs[-1][0], m + step_ms)
        else:
            runs.append((m, m + step_ms))
    return runs


@dataclass(frozen=True)
class Segment:
    """A part ``[start, end)`` of a query window and where its buckets come from:
    ``source`` is :data:`RAW`, :data:`MINUTE_TIER` or :data:`HOUR_TIER`."""

    start: datetime
    end: datetime
    source: str = RAW

    @property
    def from_rollups(self) -> bool:
        return self.source != RAW


def split_window(
    start: datetime, end: datetime, every: timedelta, horizon_ms: int | None, hour_horizon_ms: int | None = None
) -> list[Segment]:
    """Cut ``[start, end)`` into [raw | minute tier | hour tier | minute tier | raw] so that
    every bucket comes whole from one source.

    The minute tier serves the buckets that end at or before the folded horizon
    (floored to a bucket boundary, so no bucket is split between rollups and
    raw) and whose part inside the window is whole minutes (a window starting
    at 12:00:30 takes its first bucket from raw: the rollups cannot leave out
    the first half minute). Everything else is read from raw. Without a
    horizon (nothing folded yet) the whole window is raw.

    When ``every`` is whole hours and ``hour_horizon_ms`` is given (the end of
    the hours that are folded from current minutes, see :func:`hour_horizon`),
    the hour tier serves, among the minute tier's buckets, those that end by
    it and whose part inside the window is whole hours (a window starting at
    12:30 takes its first bucket from the minute tier). Within a bucket the
    sources only change at the window's own edges, never inside it.
    """
    if horizon_ms is None:
        return [Segment(start, end)]
    horizon = _floor(at(horizon_ms), every)
    lo = start if _floor(start, MINUTE) == start else _ceil(start, every)
    hi = min(horizon, end if _floor(end, MINUTE) == end else _floor(end, every))
    if lo >= hi:
        return [Segment(start, end)]
    lo_h = hi_h = lo
    if hour_horizon_ms is not None and hour_served(every):
        lo_h = lo if _floor(lo, HOUR) == lo else _ceil(lo, every)
        hi_h = min(_floor(at(hour_horizon_ms), every), hi if _floor(hi, HOUR) == hi else _floor(hi, every))
        if lo_h >= hi_h:
            lo_h = hi_h = lo
    parts = [
        Segment(start, lo),
        Segment(lo, lo_h, MINUTE_TIER),
        Segment(lo_h, hi_h, HOUR_TIER),
        Segment(hi_h, hi, MINUTE_TIER),
        Segment(hi, end),
    ]
    return [p for p in parts if p.start < p.end]


def hour_served(every: timedelta) -> bool:
    """The hour tier answers intervals of whole hours (a 15-minute one keeps the minute tier)."""
    return every % HOUR == timedelta(0)


def hour_of(ms: int) -> int:
    """Start (epoch ms) of the hour holding ``ms``."""
    return ms - ms % HOUR_MS


def hour_horizon(minute_horizon_ms: int, oldest_dirty_hour_ms: int | None) -> int:
    """End (epoch ms) of the hours the hour tier may serve: hours before the minute tier's
    folded horizon (floored to the hour, so every minute of them is folded) and before the
    oldest hour still to recompute from its minutes."""
    limit = hour_of(minute_horizon_ms)
    return limit if oldest_dirty_hour_ms is None else min(limit, hour_of(oldest_dirty_hour_ms))


def _floor(t: datetime, step: timedelta) -> datetime:
    return _EPOCH + (t - _EPOCH) // step * step


def _ceil(t: datetime, step: timedelta) -> datetime:
    floor = _floor(t, step)
    return floor if floor == t else floor + step
