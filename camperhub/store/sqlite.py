"""SQLite backend of the store (ARCHITECTURE.md §5): the embedded default for the demo,
a laptop and the camper's kiosk, with the same behaviour as InfluxDB (same conformance suite).

Layout: one table per stream, one column per contract field, keyed by
``(camper, ts_ms)`` WITHOUT ROWID, so the rows of a camper sit in time order
in the primary key itself: every query below (latest, windows, per-interval
aggregates) is a range seek on that key, and a replayed sample lands on the
same key and overwrites itself (idempotent writes, at-least-once delivery).

Same-ts rewrites merge: a sample is one reading, so writing the same
(camper, stream, ts) again overwrites the fields it carries and keeps the
others. This is exactly what InfluxDB does with a point of the same series
and time, so both backends agree.

Rollups (camperhub/store/rollup.py, SQL in sqlite_rollup.py): energy
writes mark their minutes in ``dirty_minute`` in the same transaction;
:meth:`SqliteStore.rollup` folds them into ``energy_1m``, then recomputes the
hours of those minutes into ``energy_1h`` (the hour tier), and aggregated energy
reads of whole hours take the folded buckets from the hour tier, of whole
minutes from the minute tier, the rest from raw.
:meth:`SqliteStore.prune_raw` deletes old raw rows; the rollups stay.
:meth:`SqliteStore.prune_positions` deletes old positions (the staff-only history's retention).
:meth:`SqliteStore.seq_summary` (the completeness report's seq accounting) is
in sqlite_seqs.py.

Schema changes are additive: when the contract gains a field, the column is
added (ALTER TABLE ... ADD COLUMN) when the store is opened; columns are never
dropped (old data stays readable). ``PRAGMA user_version`` records the layout
version so that a file written by newer software is refused, not damaged
(version 2 added the rollup tables; opening a version-1 file marks every
minute it holds dirty, so its history is folded by the next rollup()). The
hour tier (``energy_1h``, ``dirty_hour``) is additive within version 2: a file
without it gets the tables when opened and every hour of its minute rollups
marked dirty, which the next rollup() computes (sqlite_rollup.py).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from camperhub.contract import MIN_TS_MS, STORAGE_KINDS, Stream, is_valid_camper_id
from camperhub.settings import StoreSettings
from camperhub.store import base, rollup, sqlite_rollup, sqlite_seqs
from camperhub.store.sqlite_rollup import SQL_TYPE
from camperhub.store.base import (
    AGGREGATES,
    Aggregate,
    DeadLetter,
    StoredSample,
    StoreRejected,
    StoreUnavailable,
    bounded_window,
    empty_frame,
)

log = logging.getLogger(__name__)

#: Layout version in ``PRAGMA user_version``; bump it (with a migration) for a non-additive change.
SCHEMA_VERSION = 2
#: Above this many candidate intervals, aggregate with one GROUP BY scan instead of one seek per interval.
PER_BUCKET_MAX = 50_000
#: Positions deleted per transaction by prune_positions (writers wait at most one chunk).
PRUNE_POSITIONS_CHUNK = 20_000
_NUMERIC_ONLY = {"mean": "AVG", "min": "MIN", "max": "MAX", "sum": "SUM"}
#: Aggregates InfluxDB 1.x refuses for a field type (min/max of a bool is defined: False < True).
_UNDEFINED = {("text", a) for a in _NUMERIC_ONLY} | {("bool", "mean"), ("bool", "sum")}
_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_NOMEM")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: Column kinds per stream, derived from the contract models (``ts`` is the key column ts_ms).
CONTRACT_COLUMNS: dict[Stream, dict[str, str]] = STORAGE_KINDS  # type: ignore[assignment]


def _q(name: str) -> str:
    """A quoted identifier (names come from the contract or the table itself, never from a caller unchecked)."""
    return '"' + name.replace('"', '""') + '"'


def _agg(aggregate: str, column: str) -> str:
    """SQL of a summarising aggregate; a count of nothing is NULL, like every other aggregate of nothing."""
    return f"NULLIF(COUNT({column}), 0)" if aggregate == "count" else f"{_NUMERIC_ONLY[aggregate]}({column})"


def _ms_ceil(t: datetime) -> int:
    """First whole millisecond at or after ``t``: ts_ms >= _ms_ceil(t) <=> the reading is at or after t."""
    return -(-((t - _EPOCH) // timedelta(microseconds=1)) // 1000)


def _translate(exc: sqlite3.Error, doing: str) -> base.StoreError:
    """Locked, busy, I/O, full disk: transient (StoreUnavailable); anything else is StoreRejected."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(_TRANSIENT) or "locked" in text or "disk I/O" in text:
        return StoreUnavailable(f"SQLite store unavailable while {doing}: {text}")
    return StoreRejected(f"SQLite refused {doing}: {text}")


class SqliteStore:
    """The :class:`~camperhub.store.base.Store` on one SQLite file (WAL, synchronous=NORMAL).

    One connection guarded by a lock serves every thread: SQLite serialises
    writers anyway, and one connection keeps the WAL checkpointing simple. A
    long query therefore delays a write of the same process by its duration
    (a second process, e.g. the API beside the ingest, reads concurrently).
    """

    def __init__(self, path: Path | str, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise _translate(exc, f"opening {self.path}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (API beside ingest)
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints, no fsync per commit
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._columns = self._migrate()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, f"opening {self.path}") from exc
            raise

    @classmethod
    def from_settings(cls, s: StoreSettings) -> SqliteStore:
        return cls(s.sqlite_path)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --------------------------------------------------------------

    def _migrate(self) -> dict[Stream, dict[str, str]]:
        """Create missing tables and columns; return the column kinds each table really has."""
        with self._transaction("opening the schema"):
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreRejected(f"{self.path} has schema version {version}, newer than {SCHEMA_VERSION}: upgrade camperhub")
            columns: dict[Stream, dict[str, str]] = {}
            for stream, wanted in CONTRACT_COLUMNS.items():
                t = _q(stream.value)
                cols = ", ".join(f"{_q(n)} {SQL_TYPE[k]}" for n, k in wanted.items())
                self._conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {t} (camper TEXT NOT NULL, ts_ms INTEGER NOT NULL, {cols}, "
                    "PRIMARY KEY (camper, ts_ms)) WITHOUT ROWID"
                )
                have = {r[1]: str(r[2]).upper() for r in self._conn.execute(f"PRAGMA table_info({t})")}
                for name, kind in wanted.items():
                    if name not in have:  # the contract gained a field since this file was created
                        self._conn.execute(f"ALTER TABLE {t} ADD COLUMN {_q(name)} {SQL_TYPE[kind]}")
                        have[name] = SQL_TYPE[kind]
                legacy = {"REAL": "real", "INTEGER": "int"}
                columns[stream] = {
                    n: wanted.get(n) or legacy.get(decl, "text") for n, decl in have.items() if n not in ("camper", "ts_ms")
                }
            sqlite_rollup.migrate(self._conn, columns[Stream.ENERGY], version)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS dead_letter (id INTEGER PRIMARY KEY AUTOINCREMENT, received_ms INTEGER NOT NULL, "
                "camper TEXT, topic TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL)"
            )
            self._conn.execute("CREATE INDEX IF NOT EXISTS dead_letter_received ON dead_letter (received_ms)")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return columns

    @contextmanager
    def _transaction(self, doing: str, immediate: bool = True) -> Iterator[None]:
        """One transaction under the lock; sqlite3 errors sorted into Unavailable/Rejected.

        Writes start IMMEDIATE (take the write lock up front, so the busy
        timeout applies there instead of failing on a lock upgrade); reads are
        a deferred transaction so that a multi-statement read sees one snapshot.
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except sqlite3.Error as exc:
                raise _translate(exc, doing) from exc
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    try:
                        self._conn.rollback()
                    except sqlite3.Error:
                        pass  # the original error says more
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc, doing) from exc
                raise

    # -- the Store interface --------------------------------------------------

    def ping(self) -> None:
        with self._lock:
            try:
                self._conn.execute("SELECT 1").fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self.path} does not answer: {exc}") from exc

    def write(self, samples: Sequence[StoredSample]) -> None:
        """All samples of the call in one transaction, with the dirty marks of their energy
        minutes (rollups). Everything is checked before the transaction starts, so a bad
        sample refuses the whole call and stores nothing."""
        rows = [self._row(s) for s in samples]
        if not rows:
            return
        minutes = {(camper, rollup.minute_of(ts)) for stream, _, camper, ts in rows if stream is Stream.ENERGY}
        with self._transaction(f"writing {len(rows)} samples"):
            sqlite_rollup.mark(self._conn, minutes)
            i = 0
            while i < len(rows):  # consecutive samples with the same columns share one statement, order kept
                stream, names = rows[i][0], tuple(rows[i][1])
                j = i
                while j < len(rows) and rows[j][0] is stream and tuple(rows[j][1]) == names:
                    j += 1
                cols = ", ".join(_q(n) for n in names)
                update = ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in names)
                self._conn.executemany(
                    f"INSERT INTO {_q(stream.value)} (camper, ts_ms, {cols}) VALUES (?, ?{', ?' * len(names)}) "
                    f"ON CONFLICT (camper, ts_ms) DO UPDATE SET {update}",
                    [(camper, ts, *fields.values()) for _, fields, camper, ts in rows[i:j]],
                )
                i = j

    def _row(self, s: StoredSample) -> tuple[Stream, dict[str, Any], str, int]:
        """(stream, {column: SQLite value}, camper, ts_ms) of a sample; StoreRejected names what is wrong."""
        try:
            stream = Stream(s.stream)
        except ValueError:
            raise StoreRejected(f"unknown stream {s.stream!r}") from None
        where = f"{stream.value} sample of {s.camper!r} at {s.ts_ms!r}"
        if not isinstance(s.camper, str) or not is_valid_camper_id(s.camper):
            raise StoreRejected(f"{where}: camper id is not [a-z0-9-]{{1,32}}")
        if isinstance(s.ts_ms, bool) or not isinstance(s.ts_ms, int) or not MIN_TS_MS <= s.ts_ms <= 2**53:
            raise StoreRejected(f"{where}: ts_ms must be integer epoch ms from 2020 on")
        kinds = self._columns[stream]
        out: dict[str, Any] = {}
        for name, value in sorted(s.fields.items()):
            if value is None:
                continue  # not reported: leaves a stored value of the same ts untouched
            kind = kinds.get(name)
            if kind is None:
                raise StoreRejected(f"{where}: field {name!r} is not a field of the {stream.value} stream")
            if isinstance(value, Enum):
                value = value.value
            if kind == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)  # 3.0 for a count: the same number, stored as the column's type
            ok = {
                "real": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                "int": isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63,
                "bool": isinstance(value, bool),
                "text": isinstance(value, str),
            }[kind]
            if not ok:
                raise StoreRejected(f"{where}: field {name!r} = {value!r} is not a valid {kind} value")
            out[name] = float(value) if kind == "real" else int(value) if kind == "bool" else value
        if not out:
            raise StoreRejected(f"{where}: no fields (a sample carries at least seq)")
        return stream, out, s.camper, s.ts_ms

    def latest(self, camper: str, stream: Stream) -> StoredSample | None:
        stream = Stream(stream)
        kinds = self._columns[stream]
        cols = ", ".join(_q(n) for n in kinds)
        with self._transaction("reading the latest sample", immediate=False):
            row = self._conn.execute(
                f"SELECT ts_ms, {cols} FROM {_q(stream.value)} WHERE camper = ? ORDER BY ts_ms DESC LIMIT 1", (camper,)
            ).fetchone()
        if row is None:
            return None
        fields = {n: bool(v) if kinds[n] == "bool" else v for n, v in zip(kinds, row[1:]) if v is not None}
        return StoredSample(camper, stream, row[0], fields)

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
        """See :meth:`Store.series`. Numbers (counts included) come as float64; text and
        booleans as object columns holding str/bool (raw, first, last, min/max of booleans).
        An interval is present when at least one asked field has a value in it; within it,
        any aggregate of a field without values (count included) is NaN, so "never
        reported" reads the same whatever the aggregate. Raw rows are those where at least
        one asked field has a value (as InfluxDB). An unknown field is StoreRejected, not
        a silent column of NaN (a typo must not look like "never reported"). Energy buckets
        of whole minutes before the folded horizon come from the rollups (same answers)."""
        stream = Stream(stream)
        start, end = bounded_window(start, end)
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate {aggregate!r} is not one of {AGGREGATES}")
        if every is not None and (every < timedelta(seconds=1) or every % timedelta(seconds=1)):
            raise ValueError(f"every must be a whole number of seconds >= 1, got {every}")
        kinds = self._columns[stream]
        wanted = list(dict.fromkeys(fields))
        for f in wanted:
            if f not in kinds:
                raise StoreRejected(f"{f!r} is not a field of the {stream.value} stream")
            if every is not None and (kinds[f], aggregate) in _UNDEFINED:
                raise StoreRejected(f"{aggregate} of {kinds[f]} field {f!r} is undefined: use first, last or count")
        if not wanted:
            return empty_frame(fields)
        with self._transaction(f"reading {stream.value} series", immediate=False):
            if every is None:
                rows = self._raw(stream, wanted, {"c": camper, "s": _ms_ceil(start), "e": _ms_ceil(end)})
            else:
                rows = self._buckets(camper, stream, wanted, start, end, every, aggregate)
        if not rows:
            return empty_frame(fields)
        times = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        index = pd.DatetimeIndex(times.astype("datetime64[ms]"), tz="UTC", name="time")
        data: dict[str, Any] = {}
        for j, f in enumerate(wanted, start=1):
            values = [r[j] for r in rows]
            if kinds[f] in ("text", "bool") and (every is None or aggregate != "count"):
                conv = bool if kinds[f] == "bool" else str
                data[f] = pd.Series([np.nan if v is None else conv(v) for v in values], index=index, dtype=object)
            else:
                data[f] = pd.Series(np.array(values, dtype=np.float64), index=index)
        frame = pd.DataFrame(data, index=index)[list(fields)]
        return frame if every is None else frame.dropna(how="all")

    def _raw(self, stream: Stream, wanted: list[str], p: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows with at least one asked field, in time order; MAX_ROWS read at call time."""
        max_rows = base.MAX_ROWS
        cols = ", ".join(_q(f) for f in wanted)
        any_value = " OR ".join(f"{_q(f)} IS NOT NULL" for f in wanted)
        rows = self._conn.execute(
            f"SELECT ts_ms, {cols} FROM {_q(stream.value)} WHERE camper = :c AND ts_ms >= :s AND ts_ms < :e "
            f"AND ({any_value}) ORDER BY ts_ms LIMIT :n",
            {**p, "n": max_rows + 1},
        ).fetchall()
        if len(rows) > max_rows:
            raise StoreRejected(f"more than {max_rows} raw rows in the window: pass an aggregation interval (every=...)")
        return rows

    def _buckets(
        self, camper: str, stream: Stream, wanted: list[str], start: datetime, end: datetime, every: timedelta, aggregate: str
    ) -> list[tuple[Any, ...]]:
        """Aggregated rows of the window, each bucket from the rollups or from raw (rollup.split_window)."""
        segments = [rollup.Segment(start, end)]
        if rollup.served(stream, every):
            horizon = sqlite_rollup.oldest_dirty(self._conn, camper)
            if horizon is None:
                horizon = rollup.floor_minute_ms(datetime.now(UTC))
            hours = rollup.hour_horizon(horizon, sqlite_rollup.oldest_dirty_hour(self._conn, camper)) if rollup.hour_served(every) else None
            segments = rollup.split_window(start, end, every, horizon, hours)
        rows: list[tuple[Any, ...]] = []
        every_ms = every // timedelta(milliseconds=1)
        for seg in segments:
            p = {"c": camper, "s": _ms_ceil(seg.start), "e": _ms_ceil(seg.end)}
            if seg.from_rollups:
                exprs, picks = sqlite_rollup.read_sql(wanted, aggregate)
                table, tc = (rollup.HOUR_ROLLUP_NAME, "hour_ms") if seg.source == rollup.HOUR_TIER else (rollup.ROLLUP_NAME, "minute_ms")
                rows += self._aggregated(table, tc, exprs, picks, p, every_ms, aggregate)
            else:
                pick = aggregate in ("first", "last")
                exprs = ["" if pick else _agg(aggregate, _q(f)) for f in wanted]
                rows += self._aggregated(stream.value, "ts_ms", exprs, [_q(f) for f in wanted], p, every_ms, aggregate)
        return rows

    def _aggregated(
        self, table: str, tc: str, exprs: list[str], picks: list[str], p: dict[str, Any], every_ms: int, aggregate: str
    ) -> list[tuple[Any, ...]]:
        """(interval start, one value per field) per epoch-aligned interval, in time order, of
        ``table`` keyed by (camper, ``tc``): ``exprs`` are the fields' aggregates, ``picks``
        the columns whose earliest/latest non-NULL value is first/last.

        Two plans, same answers (a test holds them equal): with few candidate
        intervals, one primary-key range query per interval (a year of 5-s rows
        per day reads each row once and sorts nothing); with many, one GROUP BY
        scan, which SQLite sorts, dearer per row but bounded by the row count.
        first/last are the earliest/latest non-NULL value of the interval, like
        InfluxDB's FIRST/LAST, so a field missing from the newest row does not
        turn the interval's last into NULL.
        """
        t = _q(table)
        lo, hi = self._conn.execute(
            f"SELECT (SELECT MIN({tc}) FROM {t} WHERE camper = :c AND {tc} >= :s AND {tc} < :e), "
            f"(SELECT MAX({tc}) FROM {t} WHERE camper = :c AND {tc} >= :s AND {tc} < :e)",
            p,
        ).fetchone()
        if lo is None:
            return []
        first, last = lo - lo % every_ms, hi - hi % every_ms
        pick = aggregate in ("first", "last")
        if (last - first) // every_ms + 1 <= PER_BUCKET_MAX:
            if pick:
                order = "DESC" if aggregate == "last" else "ASC"
                sql = "SELECT " + ", ".join(
                    f"(SELECT {c} FROM {t} WHERE camper = :c AND {tc} >= :lo AND {tc} < :hi AND {c} IS NOT NULL "
                    f"ORDER BY {tc} {order} LIMIT 1)"
                    for c in picks
                )
            else:
                sql = f"SELECT {', '.join(exprs)} FROM {t} WHERE camper = :c AND {tc} >= :lo AND {tc} < :hi"
            run = self._conn.execute
            return [
                (b, *run(sql, {"c": p["c"], "lo": max(b, p["s"]), "hi": min(b + every_ms, p["e"])}).fetchone())
                for b in range(first, last + 1, every_ms)
            ]
        inner, outer = [], []
        for i, (expr, c) in enumerate(zip(exprs, picks)):
            if pick:  # the interval's earliest/latest timestamp with a value, then that row by primary key
                inner.append(f"{'MIN' if aggregate == 'first' else 'MAX'}(CASE WHEN {c} IS NOT NULL THEN {tc} END) AS a{i}")
                outer.append(f"(SELECT {c} FROM {t} WHERE camper = :c AND {tc} = g.a{i})")
            else:
                inner.append(f"{expr} AS a{i}")
                outer.append(f"g.a{i}")
        sql = (
            f"SELECT g.lo, {', '.join(outer)} FROM (SELECT {tc} - {tc} % :ev AS lo, {', '.join(inner)} FROM {t} "
            f"WHERE camper = :c AND {tc} >= :s AND {tc} < :e GROUP BY lo) AS g ORDER BY g.lo"
        )
        return self._conn.execute(sql, {**p, "ev": every_ms}).fetchall()

    def seq_summary(self, camper: str, stream: Stream, edges: Sequence[datetime]) -> base.SeqSummary:
        """See :meth:`Store.seq_summary` and camperhub/store/sqlite_seqs.py: one read transaction."""
        stream = Stream(stream)
        edges = base.check_edges(edges)
        with self._transaction(f"summarising the seq of {stream.value}", immediate=False):
            return sqlite_seqs.seq_summary(self._conn, stream.value, list(self._columns[stream]), camper, edges)

    def campers(self) -> list[str]:
        """Distinct campers of every stream and of the rollups (a camper whose raw was pruned
        still has its history)."""
        found: set[str] = set()
        with self._transaction("listing campers", immediate=False):
            for table in [*(s.value for s in Stream), rollup.ROLLUP_NAME]:
                found.update(self._campers_of(table))
        return sorted(found)

    def _campers_of(self, table: str) -> list[str]:
        """A skip-scan over the primary key (one seek per camper), not a scan of every row."""
        t = _q(table)
        return [
            r[0]
            for r in self._conn.execute(
                f"WITH RECURSIVE c(x) AS (SELECT MIN(camper) FROM {t} "
                f"UNION ALL SELECT (SELECT MIN(camper) FROM {t} WHERE camper > c.x) FROM c WHERE c.x IS NOT NULL) "
                "SELECT x FROM c WHERE x IS NOT NULL"
            )
        ]

    def rollup(self, now: datetime | None = None) -> int:
        """See :meth:`Store.rollup`: chunks of FOLD_CHUNK minutes, one transaction each, so
        writers wait at most one chunk; then the dirty hours (those of the folded minutes,
        late data included), HOUR_FOLD_CHUNK per transaction. Returns minutes written."""
        ready = rollup.ready_ms(now)
        kinds = self._columns[Stream.ENERGY]
        with self._transaction("dropping dirty marks of pruned minutes"):
            skipped = sqlite_rollup.forget_pruned(self._conn)
        if skipped:
            log.warning("%d minutes got energy samples older than the raw retention: not folded, their rollups kept", skipped)
        written = 0
        while True:
            with self._transaction("folding energy minutes"):
                taken, n = sqlite_rollup.fold_chunk(self._conn, kinds, ready)
            written += n
            if taken < sqlite_rollup.FOLD_CHUNK:
                break
        while True:
            with self._transaction("folding energy hours"):
                taken, _ = sqlite_rollup.fold_hours_chunk(self._conn, kinds)
            if taken < sqlite_rollup.HOUR_FOLD_CHUNK:
                return written

    def prune_raw(self, older_than: datetime) -> int:
        """See :meth:`Store.prune_raw`: per camper, a day of raw per transaction."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        cutoff = rollup.floor_minute_ms(older_than)
        with self._transaction("listing campers", immediate=False):
            campers = self._campers_of(Stream.ENERGY.value)
        deleted = 0
        for camper in campers:
            done = False
            while not done:
                with self._transaction(f"pruning raw energy of {camper}"):
                    n, done = sqlite_rollup.prune_step(self._conn, camper, cutoff)
                deleted += n
        return deleted

    def prune_positions(self, older_than: datetime) -> int:
        """See :meth:`Store.prune_positions`: per camper, PRUNE_POSITIONS_CHUNK rows per
        transaction, oldest first, along the primary key (camper, ts_ms)."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        cutoff = _ms_ceil(older_than)  # ts_ms < cutoff <=> stamped before older_than
        t = _q(Stream.POSITION.value)
        with self._transaction("listing campers", immediate=False):
            campers = self._campers_of(Stream.POSITION.value)
        deleted = 0
        for camper in campers:
            while True:
                with self._transaction(f"pruning positions of {camper}"):
                    n = self._conn.execute(
                        f"DELETE FROM {t} WHERE camper = ? AND ts_ms IN "
                        f"(SELECT ts_ms FROM {t} WHERE camper = ? AND ts_ms < ? ORDER BY ts_ms LIMIT ?)",
                        (camper, camper, cutoff, PRUNE_POSITIONS_CHUNK),
                    ).rowcount
                deleted += n
                if n < PRUNE_POSITIONS_CHUNK:
                    break
        return deleted

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        rows = []
        for d in letters:
            if not isinstance(d.payload, (bytes, bytearray, memoryview)) or isinstance(d.received_ms, bool) or not isinstance(d.received_ms, int):
                raise StoreRejected(f"dead letter on {d.topic!r}: payload must be bytes and received_ms integer epoch ms")
            rows.append((d.received_ms, d.camper, str(d.topic), str(d.reason), bytes(d.payload)))
        with self._transaction(f"writing {len(rows)} dead letters"):
            self._conn.executemany("INSERT INTO dead_letter (received_ms, camper, topic, reason, payload) VALUES (?, ?, ?, ?, ?)", rows)

    def dead_letters(self, since: datetime | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest first (ties: last stored first), received at or after ``since``."""
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        if limit <= 0:
            return []
        since_ms = _ms_ceil(since) if since is not None else -(2**63)
        with self._transaction("reading dead letters", immediate=False):
            rows = self._conn.execute(
                "SELECT received_ms, topic, reason, payload, camper FROM dead_letter WHERE received_ms >= ? "
                "ORDER BY received_ms DESC, id DESC LIMIT ?",
                (since_ms, limit),
            ).fetchall()
        return [DeadLetter(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def close(self) -> None:
        """Close the connection (idempotent); the last connection's close checkpoints the WAL."""
        with self._lock:
            self._conn.close()
