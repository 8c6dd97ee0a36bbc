"""The one narrow store interface (ARCHITECTURE.md §5), shared by ingest, API and workshops.

Two backends implement it: InfluxDB through its v1-compatible HTTP API
(production) and SQLite (the embedded default). Analyses are written once, in
pandas, over what :meth:`Store.series` returns; the same conformance suite
(tests/camperhub/store/) runs against both backends.

Rules every backend keeps:

* writes are idempotent: a sample is identified by (stream, camper, ts), so a
  replayed sample overwrites itself instead of doubling (at-least-once
  delivery end to end, nothing counted twice);
* times are UTC: ``ts`` in epoch milliseconds in, tz-aware UTC timestamps out;
* no query is unbounded: a window without an end ends now, and a raw query
  returns at most :data:`MAX_ROWS` rows (ask for an aggregate interval);
* failures are sorted at this boundary: :class:`StoreUnavailable` is transient
  (retry later, nothing is lost), :class:`StoreRejected` means the data or the
  configuration is wrong (do not retry the same thing).

Retention and rollups (why: a year's daily summary must read in under a second,
ARCHITECTURE.md §11; the arithmetic is in :mod:`camperhub.store.rollup`):

* every write of energy samples marks their (camper, minute) *dirty*, durably
  and together with the data (SQLite: table ``dirty_minute`` in the same
  transaction; InfluxDB: a local journal written before and after the /write,
  one file shared by the ingest processes and the API, CAMPERHUB_ROLLUP_JOURNAL);
* :meth:`Store.rollup` folds dirty minutes into per-minute components
  (``<field>__sum/count/min/max/first/last``; text: count/first/last; bool:
  count/min/max/first/last), each minute recomputed whole from raw, so a
  re-fold is idempotent and late data (a backlog replayed days later) re-folds
  its old minutes. SQLite keeps them in table ``energy_1m``; InfluxDB in
  measurement ``energy_1m`` of a separate database ``<database>_1m``, so that
  an operator can give the raw database a retention (1.x retention policy,
  2.x/3.x bucket retention) while the rollups stay forever;
* :meth:`Store.series` over energy with ``every`` a whole number of minutes
  takes each bucket that ends by the *folded horizon* (start of the camper's
  oldest dirty minute, else now) from the rollups, the others from raw: the
  answer is the same whether or not the job ran (floats to rounding). A
  bucket only partly inside a window that starts or ends inside a minute is
  read from raw: beyond the raw retention, align such windows to the minute;
* a second tier folds each hour whose minutes were folded into one row per
  (camper, hour) from its 60 minute rows (SQLite table ``energy_1h``, InfluxDB
  measurement ``energy_1h`` in ``<database>_1m``), so ``every`` a whole number
  of hours reads a year as 8,760 rows instead of 525,600: whole hours before
  the hour horizon come from it, the rest from the minutes or raw, with the
  same answers (tests/camperhub/store/test_hour_rollups.py);
* :meth:`Store.prune_raw` deletes old raw energy, never from a dirty minute
  on. Raw (``every=None``) reads and :meth:`Store.latest` only see raw data:
  beyond the raw retention only aggregated reads answer. Minutes whose raw was
  pruned are never re-folded: a sample arriving for one of them (older than
  the raw retention) is not counted, and the rollup built from the whole
  minute is kept (InfluxDB's retention policies drop such a write too);
* the ingest runs rollup() about every minute and prune_raw() every hour
  (broker/ingest.py); both are safe to run from several processes at once.

Position history is for staff only and kept for a bounded, configurable time
(ARCHITECTURE.md §10): :meth:`Store.prune_positions` deletes positions older
than a cutoff, and the ingest calls it every ``prune_every_s`` with
``CAMPERHUB_POSITION_RETENTION_DAYS`` (camperhub.schedule.ScheduleSettings).
Positions have no rollups: what is pruned is gone.

Seq accounting (:meth:`Store.seq_summary`, for the completeness report of
camperhub/completeness.py): every sample carries ``seq``, strictly increasing
per camper and stream, so what did not arrive shows as a jump in ``seq``.
Backends answer with per-period counts and only the samples where the
sequence does not simply go on (a jump, a restart, a folded sample): a week
of 5-s readings is 121,000 rows, of which usually a handful are such
"breaks", and moving the handful instead of all rows is what keeps the
report well under a second on InfluxDB (tests/bench/test_bench_completeness.py).
It reads raw samples only: days whose raw was pruned (``prune_raw``, the raw
retention) answer no samples. The per-minute rollups keep the count and the
maximum of ``seq`` but cannot tell a reading from a device fault, nor where
in the minute a jump was, so the report marks such days instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from camperhub.contract import Stream

#: Most rows one raw (not aggregated) series query may return.
MAX_ROWS = 100_000

Aggregate = Literal["mean", "min", "max", "last", "first", "sum", "count"]
AGGREGATES: tuple[str, ...] = ("mean", "min", "max", "last", "first", "sum", "count")


class StoreError(Exception):
    """Base of store failures."""


class StoreUnavailable(StoreError):
    """Transient: the store is down, slow or unreachable. Retry with back-off; nothing is lost."""


class StoreRejected(StoreError):
    """The store refused the request (bad credentials, malformed data): retrying the same will not help."""


@dataclass(frozen=True)
class StoredSample:
    """One sample as written to a store: who, which stream, when, and its fields (seq included)."""

    camper: str
    stream: Stream
    ts_ms: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class SeqSummary:
    """What :meth:`Store.seq_summary` answers: how the ``seq`` of a camper's stream ran.

    ``periods``: one row per asked period ``[edges[i], edges[i+1])``, indexed by
    its start (tz-aware UTC, name ``time``), every period present; int64
    columns ``samples`` (samples with a ``seq``) and ``with_data`` (those with
    at least one field besides ``seq`` and ``readings_n``: an energy sample
    without one is a poll cycle in which no device answered).

    ``breaks``: the samples of the window where the sequence does not simply
    go on from the sample before it (in time; the one before may lie before
    the window): ``seq`` is not the previous ``seq`` + 1, or the sample stands
    for more than one reading (``readings_n``, folded on the camper), or no
    sample comes before it. Indexed by the sample's time (UTC, name ``time``),
    in time order; columns ``seq`` (int64), ``readings_n`` (int64, 1 when
    absent), ``prev_seq`` (Int64, NA when nothing comes before) and
    ``prev_time`` (datetime64 UTC, NaT then). Every other sample of the window
    is exactly one more ``seq`` than the one before it.
    """

    periods: pd.DataFrame
    breaks: pd.DataFrame


@dataclass(frozen=True)
class DeadLetter:
    """A message the ingest refused, kept with its reason for the staff."""

    received_ms: int
    topic: str
    reason: str
    payload: bytes
    camper: str | None = None


class Store(Protocol):
    """What every backend offers. All times are UTC."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers (readiness check)."""
        ...

    def write(self, samples: Sequence[StoredSample]) -> None:
        """Write samples idempotently, all or none; raise StoreUnavailable/StoreRejected."""
        ...

    def latest(self, camper: str, stream: Stream) -> StoredSample | None:
        """The newest sample of a camper's stream (all its fields), or None."""
        ...

    def series(
        self,
        camper: str,
        stream: Stream,
        fields: Sequence[str],
        start: datetime,
        end: datetime | None = None,
        every: timedelta | None = None,
        aggregate: Aggregate = "mean",
    ) -> pd.DataFrame:
        """Fields over [start, end) as a frame indexed by tz-aware UTC time.

        With ``every``, one row per interval (aligned to the epoch, labelled by
        its start) holding ``aggregate`` of each field; intervals without data
        are absent (a gap is a gap, never a zero). Without ``every``, the raw
        samples, at most MAX_ROWS of them (StoreRejected beyond). Columns are
        exactly ``fields``; a field never reported is a column of NaN.
        """
        ...

    def seq_summary(self, camper: str, stream: Stream, edges: Sequence[datetime]) -> SeqSummary:
        """How ``seq`` ran over ``[edges[0], edges[-1])``: counts per period between
        consecutive ``edges`` (aware, strictly increasing) and the breaks of the
        sequence (see :class:`SeqSummary`). Raw samples only. StoreRejected when
        the window holds more than MAX_ROWS breaks (ask for a shorter window).
        """
        ...

    def campers(self) -> list[str]:
        """Campers that have stored anything."""
        ...

    def rollup(self, now: datetime | None = None) -> int:
        """Fold the energy stream's dirty minutes into per-minute rollups; the number of
        rollup minutes written.

        Every (camper, minute) written since it was last folded, late data included, is
        recomputed whole from raw. Only minutes that ended at least
        :data:`camperhub.store.rollup.SETTLE` (5 s) before ``now`` (default: the clock)
        are folded: samples of a minute that just ended may still be on their way;
        newer dirty minutes stay dirty. Idempotent, and correct when run by several
        processes at once. StoreUnavailable: try again later, nothing is lost.
        """
        ...

    def prune_raw(self, older_than: datetime) -> int:
        """Delete raw energy samples of the minutes before ``older_than`` (floored to the
        minute), never from a camper's oldest dirty (not yet folded) minute on; the
        number of samples deleted. The rollups stay. An InfluxDB server that does not
        support DELETE (2.x/3.x v1 compatibility) leaves raw retention to its own
        retention policy or bucket retention: 0, logged once.
        """
        ...

    def prune_positions(self, older_than: datetime) -> int:
        """Delete every camper's ``position`` samples stamped before ``older_than`` (aware;
        a sample exactly at it stays); the number deleted. Idempotent, safe from several
        processes at once. An InfluxDB server that does not support DELETE (2.x/3.x v1
        compatibility) leaves position retention to its retention policy or bucket
        retention: 0, logged once.
        """
        ...

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Keep refused messages with their reasons."""
        ...

    def dead_letters(self, since: datetime | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest first, at most ``limit``."""
        ...

    def close(self) -> None:
        ...


def bounded_window(start: datetime, end: datetime | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Validate a query window; a missing end is now. Naive times are refused, not guessed."""
    if start.tzinfo is None or (end is not None and end.tzinfo is None):
        raise ValueError("window times must be timezone-aware (UTC in storage)")
    end = end or now or datetime.now(start.tzinfo)
    if end < start:
        raise ValueError(f"window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return start, end


def empty_frame(fields: Sequence[str]) -> pd.DataFrame:
    """The frame of a window without data: the asked columns, no rows, a UTC time index."""
    return pd.DataFrame({f: pd.Series(dtype="float64") for f in fields}, index=pd.DatetimeIndex([], tz="UTC", name="time"))


def check_edges(edges: Sequence[datetime]) -> list[datetime]:
    """Period edges of :meth:`Store.seq_summary`: at least two, aware, strictly increasing."""
    out = list(edges)
    if len(out) < 2:
        raise ValueError("seq_summary needs at least two edges (one period)")
    if any(e.tzinfo is None for e in out):
        raise ValueError("edges must be timezone-aware (UTC in storage)")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError("edges must be strictly increasing")
    return out


def periods_frame(edges: Sequence[datetime], counts: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """The ``periods`` frame of a SeqSummary: (samples, with_data) per period, every period present."""
    index = pd.DatetimeIndex(pd.to_datetime([e.astimezone(UTC) for e in edges[:-1]], utc=True), name="time").as_unit("ms")
    return pd.DataFrame(
        {"samples": np.array([c[0] for c in counts], dtype=np.int64), "with_data": np.array([c[1] for c in counts], dtype=np.int64)},
        index=index,
    )


def breaks_frame(rows: Sequence[tuple[int, int, int | None, int | None, int | None]]) -> pd.DataFrame:
    """The ``breaks`` frame of a SeqSummary from (ts_ms, seq, readings_n, prev_seq, prev_ts_ms) rows
    in time order; MAX_ROWS (read at call time) bounds it."""
    if len(rows) > MAX_ROWS:
        raise StoreRejected(f"more than {MAX_ROWS} seq breaks in the window: ask for a shorter window")
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    index = pd.DatetimeIndex(ts.astype("datetime64[ms]"), name="time").tz_localize("UTC")
    prev_ts = pd.array([r[4] for r in rows], dtype="Int64")
    return pd.DataFrame(
        {
            "seq": np.array([r[1] for r in rows], dtype=np.int64),
            "readings_n": np.array([r[2] if r[2] is not None and r[2] >= 1 else 1 for r in rows], dtype=np.int64),
            "prev_seq": pd.array([r[3] for r in rows], dtype="Int64"),
            "prev_time": pd.to_datetime(prev_ts, unit="ms", utc=True).as_unit("ms"),
        },
        index=index,
    )
