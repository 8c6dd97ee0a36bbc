"""Completeness on the server: per camper and local day, what share of its readings arrived, and
why the rest did not (issue 4, item 7).

Why it is computed from the store and not counted by the ingest: the store is
the one place that holds everything that arrived, whichever ingest process
took it (MQTT 5 shared subscriptions split one camper's messages between
them), replays included (a replay overwrites itself, so it is never counted
twice). The ingest's live gap counters (broker/ingest.py) are a best-effort
early warning; this report is the account.

The account of one ``energy`` stream, per Europe/Rome day D, every figure in
readings (one reading = one poll cycle of the camper's devices):

* ``taken``: readings the camper took that day, from ``seq``: the day's last
  seq minus the last seq before the day, so a folded sample counts its
  ``readings_n``, and a jump in seq counts the readings that never came;
  plus the day's share of the readings still queued after the newest sample
  (the "tail", below). It always equals the sum of the seven causes below.
* ``arrived``: samples with at least one measured field;
* ``device_fault``: samples without one (a poll cycle in which no device answered);
* ``folded``: the ``readings_n - 1`` readings each folded sample stands for
  besides itself (the camper folded them into a 1-minute mean to keep its
  disk budget: they did not arrive, their mean did);
* ``dropped``, ``unsynced``: readings the camper removed, from its
  ``alarm_readings_lost`` events (contract.ReadingsLost), matched to the
  day's jumps by their seq ranges;
* ``offline``: readings still on the camper, from its latest status with
  queue figures (``queue_depth``, ``oldest_queued_s``): first the jumps whose
  next sample is younger than the oldest queued reading, newest first, then
  the tail after the newest stored sample, spread over the days it spans in
  proportion to time (an estimate: the status counts queued rows of every
  stream, a folded row as one);
* ``unknown``: what nothing above explains.

A jump belongs to the day of the sample after it (a gap straddling midnight
counts on the day it ended). A restart of ``seq`` (a camper that lost its
queue file) or a sample with nothing before it in the store counts its own
readings and no jump: what came before it cannot be known. ``seq`` order is
taken to be time order; a clock that stepped back shows as a restart and a jump.

Days whose raw samples were pruned (older than ``CAMPERHUB_RAW_RETENTION_DAYS``):
the per-minute rollups keep how many samples there were, not which had data nor
where the jumps were, so such days are marked ``raw_pruned`` and their counts
cover only the raw that is left. Run the report within the raw retention.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from camperhub.contract import READINGS_LOST_EVENT, ReadingsLost, Stream
from camperhub.store.base import SeqSummary, Store, StoreRejected

log = logging.getLogger(__name__)

#: Whose days the report counts (the camper tours the neighbourhoods of Varese).
LOCAL_TZ = ZoneInfo("Europe/Rome")
#: Local days per Store.seq_summary call: bounds the breaks one answer may hold.
CHUNK_DAYS = 7
#: How far back from the latest status to look for one with queue figures (the Last Will has none).
STATUS_LOOKBACK = timedelta(days=1)
#: Span of one read of the event stream when there are too many events for one read (MAX_ROWS).
EVENT_SPAN = timedelta(days=30)
CAUSES = ("arrived", "device_fault", "folded", "dropped", "unsynced", "offline", "unknown")


class Counts(BaseModel):
    """Readings of a span of time, by what became of them; ``taken`` is their sum."""

    model_config = ConfigDict(frozen=True)

    taken: int = Field(description="Readings the camper took [readings]: seq span, folded samples counting readings_n, plus queued tail")
    arrived: int = Field(description="Samples stored with at least one measured field [readings]")
    device_fault: int = Field(description="Samples stored without any measured field: no device answered [readings]")
    folded: int = Field(description="Readings folded on the camper into a 1-minute mean that did arrive (readings_n - 1 each) [readings]")
    dropped: int = Field(description="Readings the camper dropped over its disk budget (alarm_readings_lost) [readings]")
    unsynced: int = Field(description="Readings the camper removed because its clock was never set (alarm_readings_lost) [readings]")
    offline: int = Field(description="Readings still queued on the camper, per its latest status [readings]")
    unknown: int = Field(description="Readings missing from the seq sequence that nothing explains [readings]")
    arrived_pct: float | None = Field(description="arrived / taken * 100 [%]; None when nothing was taken")


class _Day(BaseModel):
    """Which day (first in the JSON, hence a base of its own)."""

    model_config = ConfigDict(frozen=True)

    day: date = Field(description="Local calendar day (Europe/Rome)")
    hours: int = Field(description="Length of the local day [h]: 23 or 25 on daylight-saving changes")


class DayCompleteness(Counts, _Day):
    """One local day of one camper's energy readings."""

    gaps: int = Field(description="Jumps in seq whose next sample is on this day [count]")
    raw_pruned: bool = Field(description="Raw samples of the day were pruned (raw retention): counts cover only the raw left")


class QueueState(BaseModel):
    """What the camper's latest status with queue figures said."""

    model_config = ConfigDict(frozen=True)

    status_time: datetime = Field(description="Time of that status sample (UTC)")
    queue_depth: int = Field(description="Readings still queued on the camper then [readings]")
    oldest_queued_s: float = Field(description="Age of the oldest queued reading then [s]")

    @property
    def oldest_ms(self) -> int:
        """When the oldest queued reading was taken (epoch ms)."""
        return _ms(self.status_time) - round(self.oldest_queued_s * 1000)


class CompletenessReport(BaseModel):
    """Completeness of one camper's energy readings over a run of local days."""

    model_config = ConfigDict(frozen=True)

    camper: str
    stream: str = Field(default=Stream.ENERGY.value)
    timezone: str = Field(default=LOCAL_TZ.key, description="Zone of the days")
    first_day: date
    last_day: date = Field(description="Last day of the report, included")
    generated_at: datetime = Field(description="When the report was computed (UTC)")
    queue: QueueState | None = Field(description="Latest status with queue figures; None: offline readings cannot be told from unknown ones")
    days: list[DayCompleteness]
    total: Counts


class Break(NamedTuple):
    """A sample where seq does not simply go on (Store.seq_summary's ``breaks``)."""

    ts_ms: int
    seq: int
    readings_n: int
    prev_seq: int | None
    prev_ts_ms: int | None


@dataclass
class _Gap:
    day: int
    first: int  # first missing seq
    last: int  # last missing seq
    next_ms: int
    left: int


def day_edges(first_day: date, last_day: date, tz: ZoneInfo = LOCAL_TZ) -> list[datetime]:
    """UTC starts of the local days ``first_day..last_day`` and the end of the last: local midnights."""
    if last_day < first_day:
        raise ValueError(f"last day {last_day} is before the first day {first_day}")
    days = (last_day - first_day).days + 1
    return [datetime.combine(first_day + timedelta(days=k), time(0), tz).astimezone(UTC) for k in range(days + 1)]


def account(
    edges_ms: Sequence[int],
    periods: Sequence[tuple[int, int]],
    breaks: Sequence[Break],
    lost: Sequence[ReadingsLost],
    queue: QueueState | None,
    last_sample_ms: int | None,
) -> list[dict[str, int]]:
    """The counts of each period ``[edges_ms[i], edges_ms[i+1])`` (pure logic; the module docstring
    says what each count is). ``periods``: (samples, samples with data) per period; ``breaks``:
    in time order, inside the window; ``lost``: energy ReadingsLost events; ``last_sample_ms``:
    the newest energy sample stored at all."""
    days = [dict.fromkeys(("taken", *CAUSES, "gaps"), 0) for _ in periods]
    for d, (samples, with_data) in zip(days, periods):
        d.update(taken=samples, arrived=with_data, device_fault=samples - with_data)
    gaps: list[_Gap] = []
    for b in breaks:
        i = bisect_right(edges_ms, b.ts_ms) - 1
        if not 0 <= i < len(days):
            raise ValueError(f"break at {b.ts_ms} ms is outside the window")
        n = max(1, b.readings_n)
        if b.prev_seq is None or b.seq <= b.prev_seq:
            own, missing = n, 0  # nothing before it, or seq restarted: its own readings, no jump
        else:
            own = min(n, b.seq - b.prev_seq)  # a fold overlapping what arrived counts only the new readings
            missing = b.seq - b.prev_seq - own
        days[i]["folded"] += own - 1
        days[i]["taken"] += own - 1 + missing
        if missing:
            days[i]["gaps"] += 1
            gaps.append(_Gap(i, b.seq - own - missing + 1, b.seq - own, b.ts_ms, missing))
    _lost_to_gaps(gaps, lost, days)
    budget = _offline_gaps(gaps, queue, days)
    for g in gaps:
        days[g.day]["unknown"] += g.left
    if queue is not None and budget > 0:
        _offline_tail(edges_ms, budget, queue, last_sample_ms, days)
    return days


def _lost_to_gaps(gaps: list[_Gap], lost: Sequence[ReadingsLost], days: list[dict[str, int]]) -> None:
    """Readings the camper said it removed, matched to the gaps by seq (each event at most its ``n``)."""
    events = sorted({(e.seq_first, e.seq_last, e.reason, e.n) for e in lost})  # a replayed event once
    budget = [e[3] for e in events]
    firsts = [e[0] for e in events]
    for g in sorted(gaps, key=lambda g: g.first):
        for k in range(bisect_right(firsts, g.last)):
            first, last, reason, _ = events[k]
            if last < g.first or not budget[k] or not g.left:
                continue
            take = min(min(last, g.last) - max(first, g.first) + 1, budget[k], g.left)
            budget[k] -= take
            g.left -= take
            days[g.day][reason] += take


def _offline_gaps(gaps: list[_Gap], queue: QueueState | None, days: list[dict[str, int]]) -> int:
    """Gaps younger than the oldest queued reading are still on the camper, newest first, up to
    the queue's depth; what is left of the depth (the tail's readings) is returned."""
    if queue is None:
        return 0
    budget = queue.queue_depth
    for g in sorted(gaps, key=lambda g: g.next_ms, reverse=True):
        if budget <= 0 or g.next_ms <= queue.oldest_ms:
            break
        take = min(g.left, budget)
        g.left -= take
        budget -= take
        days[g.day]["offline"] += take
    return budget


def _offline_tail(edges_ms: Sequence[int], budget: int, queue: QueueState, last_sample_ms: int | None, days: list[dict[str, int]]) -> None:
    """The readings queued after the newest stored sample, spread over the days from then (or from
    the oldest queued reading, if younger) to the status, in proportion to time."""
    status_ms = _ms(queue.status_time)
    if last_sample_ms is not None and last_sample_ms >= status_ms:
        return  # the status is older than what arrived since: its queue has been delivered
    lo = max(queue.oldest_ms, last_sample_ms if last_sample_ms is not None else queue.oldest_ms)
    span = status_ms - lo
    shares: list[tuple[int, float]] = []
    for i in range(len(days)):
        if span <= 0:
            if edges_ms[i] <= status_ms < edges_ms[i + 1]:
                shares.append((i, float(budget)))
        else:
            overlap = min(edges_ms[i + 1], status_ms) - max(edges_ms[i], lo)
            if overlap > 0:
                shares.append((i, budget * overlap / span))
    whole = round(sum(s for _, s in shares))
    given = {i: math.floor(s) for i, s in shares}
    for i, _ in sorted(shares, key=lambda x: x[1] - math.floor(x[1]), reverse=True)[: whole - sum(given.values())]:
        given[i] += 1  # largest remainders: the shares add up to the whole
    for i, n in given.items():
        days[i]["offline"] += n
        days[i]["taken"] += n


def pct(arrived: int, taken: int) -> float | None:
    """arrived as a share of taken [%], two decimals; None when nothing was taken."""
    return round(100 * arrived / taken, 2) if taken else None


# -- reading the store -----------------------------------------------------------------------


def completeness(
    store: Store, camper: str, first_day: date, last_day: date, *, now: datetime | None = None, tz: ZoneInfo = LOCAL_TZ
) -> CompletenessReport:
    """The report of ``camper``'s energy readings for the local days ``first_day..last_day`` (both
    included), from what the store holds; StoreError when the store cannot answer."""
    now = now or datetime.now(UTC)
    edges = day_edges(first_day, last_day, tz)
    periods: list[tuple[int, int]] = []
    breaks: list[Break] = []
    for k in range(0, len(edges) - 1, CHUNK_DAYS):
        part = store.seq_summary(camper, Stream.ENERGY, edges[k : k + CHUNK_DAYS + 1])
        p, b = summary_rows(part)
        periods += p
        breaks += b
    earliest = min([_ms(edges[0]), *(b.prev_ts_ms for b in breaks if b.prev_ts_ms is not None)])
    lost = lost_readings(store, camper, _at(earliest), max(now, edges[-1]) + timedelta(hours=1))
    queue = latest_queue(store, camper)
    latest = store.latest(camper, Stream.ENERGY)
    counts = account([_ms(e) for e in edges], periods, breaks, lost, queue, latest.ts_ms if latest else None)
    pruned = pruned_days(store, camper, edges, periods)
    days = [
        DayCompleteness(
            day=first_day + timedelta(days=i), hours=round((edges[i + 1] - edges[i]) / timedelta(hours=1)), raw_pruned=pruned[i],
            arrived_pct=pct(c["arrived"], c["taken"]), **c,
        )
        for i, c in enumerate(counts)
    ]
    total = {k: sum(c[k] for c in counts) for k in ("taken", *CAUSES)}
    return CompletenessReport(
        camper=camper, timezone=tz.key, first_day=first_day, last_day=last_day, generated_at=now.astimezone(UTC), queue=queue,
        days=days, total=Counts(arrived_pct=pct(total["arrived"], total["taken"]), **total),
    )


def summary_rows(summary: SeqSummary) -> tuple[list[tuple[int, int]], list[Break]]:
    """A SeqSummary as plain rows for :func:`account`."""
    p = summary.periods
    periods = list(zip(p["samples"].astype(int).tolist(), p["with_data"].astype(int).tolist()))
    b = summary.breaks
    ts = b.index.as_unit("ms").asi8.tolist()
    prev_ts = [None if pd.isna(t) else int(t.value // 1_000_000) for t in b["prev_time"]]
    prev_seq = [None if pd.isna(s) else int(s) for s in b["prev_seq"]]
    rows = [Break(*r) for r in zip(ts, b["seq"].tolist(), b["readings_n"].tolist(), prev_seq, prev_ts)]
    return periods, rows


def lost_readings(store: Store, camper: str, since: datetime, until: datetime) -> list[ReadingsLost]:
    """The camper's ``alarm_readings_lost`` events about energy readings, stamped in ``[since, until)``.
    A detail that is not ReadingsLost JSON is logged and skipped (it explains nothing)."""
    try:
        frames = [store.series(camper, Stream.EVENT, ["kind", "detail"], since, until)]
    except StoreRejected:  # more than MAX_ROWS events since then: read them a span at a time
        frames, start = [], since
        while start < until:
            frames.append(store.series(camper, Stream.EVENT, ["kind", "detail"], start, min(until, start + EVENT_SPAN)))
            start += EVENT_SPAN
    out: list[ReadingsLost] = []
    for frame in frames:
        for kind, detail in zip(frame["kind"], frame["detail"]):
            if kind != READINGS_LOST_EVENT:
                continue
            try:
                event = ReadingsLost.model_validate_json(str(detail))
            except ValidationError as exc:
                log.warning("%s: %s event with a detail that is not ReadingsLost JSON (%s): skipped", camper, READINGS_LOST_EVENT, exc.errors()[:1])
                continue
            if event.stream == Stream.ENERGY.value:
                out.append(event)
    return out


def latest_queue(store: Store, camper: str) -> QueueState | None:
    """Queue figures of the camper's latest status that has them (the Last Will's offline status
    has none: then the last online one before it, within STATUS_LOOKBACK)."""
    status = store.latest(camper, Stream.STATUS)
    if status is None:
        return None
    if status.fields.get("queue_depth") is not None:
        return QueueState(
            status_time=_at(status.ts_ms), queue_depth=int(status.fields["queue_depth"]), oldest_queued_s=float(status.fields.get("oldest_queued_s") or 0.0)
        )
    frame = store.series(camper, Stream.STATUS, ["queue_depth", "oldest_queued_s"], _at(status.ts_ms) - STATUS_LOOKBACK, _at(status.ts_ms + 1))
    frame = frame[frame["queue_depth"].notna()]
    if frame.empty:
        return None
    row = frame.iloc[-1]
    oldest = row["oldest_queued_s"]
    return QueueState(status_time=frame.index[-1].to_pydatetime(), queue_depth=int(row["queue_depth"]), oldest_queued_s=0.0 if pd.isna(oldest) else float(oldest))


def pruned_days(store: Store, camper: str, edges: Sequence[datetime], periods: Sequence[tuple[int, int]]) -> list[bool]:
    """Days for which the store knows more samples (from its rollups) than raw is left: pruned.
    Quarter-hour counts, so the buckets tile local days in any zone."""
    counts = store.series(camper, Stream.ENERGY, ["seq"], edges[0], edges[-1], every=timedelta(minutes=15), aggregate="count")
    starts = counts.index.as_unit("ms").asi8.tolist()
    known = [0] * len(periods)
    edges_ms = [_ms(e) for e in edges]
    for t, n in zip(starts, counts["seq"].tolist()):
        i = bisect_right(edges_ms, t) - 1
        if 0 <= i < len(known) and not math.isnan(n):
            known[i] += int(n)
    return [k > samples for k, (samples, _) in zip(known, periods)]


# -- text --------------------------------------------------------------------------------------

_COLUMNS = (("taken", "taken"), ("arrived", "arrived"), ("arrived_pct", "arrived%"), ("folded", "folded"), ("device_fault", "dev.fault"),
            ("dropped", "dropped"), ("unsynced", "unsynced"), ("offline", "offline"), ("unknown", "unknown"))


def render_text(report: CompletenessReport) -> str:
    """The report as a table for a terminal: one line per local day, then the total and notes."""
    head = f"{'day':<11}" + "".join(f"{title:>10}" for _, title in _COLUMNS) + f"{'gaps':>6}"
    lines = [
        f"Completeness of {report.camper}'s {report.stream} readings per local day ({report.timezone}), "
        f"{report.first_day} to {report.last_day}; counts are readings.",
        head,
        "-" * len(head),
    ]

    def cells(c: Counts) -> str:
        out = []
        for key, _ in _COLUMNS:
            v = getattr(c, key)
            out.append(f"{'-' if v is None else f'{v:.1f}%':>10}" if key == "arrived_pct" else f"{v:>10,}")
        return "".join(out)

    notes: list[str] = []
    for d in report.days:
        mark = "*" if d.raw_pruned else ""
        if d.hours != 24:
            notes.append(f"{d.day} has {d.hours} hours (daylight saving change).")
        lines.append(f"{str(d.day) + mark:<11}{cells(d)}{d.gaps:>6,}")
    if any(d.raw_pruned for d in report.days):
        notes.append("* raw samples pruned (older than the raw retention): the counts cover only the raw that is left.")
    lines += ["-" * len(head), f"{'total':<11}{cells(report.total)}{sum(d.gaps for d in report.days):>6,}"]
    q = report.queue
    if q is None:
        lines.append("No status with queue figures: readings still on the camper cannot be told from unknown ones.")
    else:
        lines.append(
            f"Latest status with queue figures: {q.status_time:%Y-%m-%d %H:%M:%S} UTC, {q.queue_depth:,} readings queued, "
            f"the oldest {q.oldest_queued_s / 3600:.1f} h old."
        )
    lines += notes
    return "\n".join(lines) + "\n"


def _ms(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _at(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
