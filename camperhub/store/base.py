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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

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

    def campers(self) -> list[str]:
        """Campers that have stored anything."""
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
