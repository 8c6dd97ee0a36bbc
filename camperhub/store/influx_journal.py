"""The InfluxDB backend's rollup journal: which energy minutes still need folding.

InfluxDB has no transaction that could write a dirty mark together with the
data, and continuous queries, DELETE and retention-policy DDL are not there on
every server the v1 API reaches, so the bookkeeping lives in a small local
SQLite file next to the process (``CAMPERHUB_ROLLUP_JOURNAL``):

* ``dirty_minute(camper, minute_ms, version)``: written BEFORE the /write (a
  crash after the write cannot lose the mark; a mark whose write failed only
  costs a re-fold) and again AFTER it, with a new version: a fold that read
  the minute before the data landed then finds the version changed and leaves
  the mark, so the minute is folded again;
* ``dirty_range(camper, from_ms, to_ms)``: a span to fold whole, found when a
  journal is new (an upgrade from before rollups, or an in-memory journal
  after a restart): everything after the camper's newest rollup minute;
* ``raw_pruned(camper, before_ms)``: raw before this was deleted; those minutes
  are never re-folded (see camperhub/store/base.py);
* ``dirty_hour(camper, hour_ms, version)``: hours of the hour tier to recompute
  from their minute rollups, marked (new version) after a fold wrote minutes
  of the hour and before those minutes' marks are cleared, so a crash in
  between cannot leave an hour stale and unmarked; a fold of the hour that read
  before a newer mark leaves it (same version rule as minutes). A journal that
  has not seen the hour tier yet (meta ``hours_caught_up``) marks, on its first
  rollup, every hour from the camper's newest hour row to its newest minute;
* ``meta``: the database the journal belongs to, the version counter.

The ingest processes and the API of one InfluxDB database share one journal
file (same host; SQLite's file locking serialises them). Without a file (None)
the journal is in memory: a crash then loses the marks of late data (old
minutes re-dirtied by a backlog replay), whose rollups stay stale; the newest
minutes are found again from the data when the next journal starts.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from camperhub.store.base import StoreRejected, StoreUnavailable
from camperhub.store.rollup import MINUTE_MS

_NO_PRUNE = -(2**63)
_PRUNED = f"COALESCE((SELECT before_ms FROM raw_pruned AS r WHERE r.camper = d.camper), {_NO_PRUNE})"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS dirty_minute (camper TEXT NOT NULL, minute_ms INTEGER NOT NULL, version INTEGER NOT NULL, "
    "PRIMARY KEY (camper, minute_ms)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS dirty_range (camper TEXT NOT NULL PRIMARY KEY, from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS raw_pruned (camper TEXT NOT NULL PRIMARY KEY, before_ms INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS dirty_hour (camper TEXT NOT NULL, hour_ms INTEGER NOT NULL, version INTEGER NOT NULL, "
    "PRIMARY KEY (camper, hour_ms)) WITHOUT ROWID",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('version', 0)",
)


class RollupJournal:
    """Dirty minutes and ranges of one InfluxDB database; thread-safe, opened on first use."""

    def __init__(self, path: Path | None, database: str, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self.database = database
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else str(self.path)
        try:
            if self.path is not None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(target, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the rollup journal {target}: {exc}") from exc
        try:
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('database', ?)", (self.database,))
            owner = conn.execute("SELECT value FROM meta WHERE key = 'database'").fetchone()[0]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(f"cannot open the rollup journal {target}: {exc}") from exc
        if owner != self.database:
            conn.close()
            raise StoreRejected(
                f"rollup journal {target} belongs to InfluxDB database {owner!r}, not {self.database!r}: "
                "give each database its own CAMPERHUB_ROLLUP_JOURNAL"
            )
        return conn

    @contextmanager
    def _tx(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite failures (locked, disk full) are StoreUnavailable."""
        with self._lock:
            if self._conn is None:
                self._conn = self._open()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailable(f"rollup journal {self.path or ':memory:'} failed while {doing}: {exc}") from exc
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- marks ---------------------------------------------------------------------

    def mark(self, minutes: Iterable[tuple[str, int]]) -> None:
        """Mark (camper, minute start) dirty with a new version."""
        self._mark("dirty_minute", "minute_ms", minutes)

    def _mark(self, table: str, column: str, keys: Iterable[tuple[str, int]]) -> None:
        """Mark (camper, start) rows of ``table`` dirty, all with one new version."""
        rows = sorted(set(keys))
        if not rows:
            return
        with self._tx(f"marking {table} rows") as c:
            version = c.execute("UPDATE meta SET value = value + 1 WHERE key = 'version' RETURNING value").fetchone()[0]
            c.executemany(
                f"INSERT INTO {table} (camper, {column}, version) VALUES (?, ?, ?) "
                f"ON CONFLICT (camper, {column}) DO UPDATE SET version = excluded.version",
                [(camper, start, version) for camper, start in rows],
            )

    def version(self) -> int:
        with self._tx("reading the version") as c:
            return int(c.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def forget_pruned(self) -> int:
        """Unmark minutes whose raw was pruned (their rollup is kept); how many."""
        with self._tx("unmarking pruned minutes") as c:
            return c.execute(
                "DELETE FROM dirty_minute WHERE minute_ms + 60000 <= "
                "(SELECT before_ms FROM raw_pruned AS r WHERE r.camper = dirty_minute.camper)"
            ).rowcount

    def due(self, ready_ms: int, max_version: int, limit: int) -> list[tuple[str, int, int]]:
        """(camper, minute, version) of dirty minutes ended by ``ready_ms``, marked at or before
        ``max_version`` (so that one rollup() ends even while writes go on); minutes inside a
        range are left to the range."""
        with self._tx("reading dirty minutes") as c:
            return c.execute(
                "SELECT camper, minute_ms, version FROM dirty_minute AS d WHERE minute_ms + 60000 <= ? AND version <= ? "
                f"AND minute_ms + 60000 > {_PRUNED} AND NOT EXISTS (SELECT 1 FROM dirty_range AS r WHERE r.camper = d.camper "
                "AND d.minute_ms >= r.from_ms AND d.minute_ms < r.to_ms) ORDER BY camper, minute_ms LIMIT ?",
                (ready_ms, max_version, limit),
            ).fetchall()

    def clear(self, marks: Iterable[tuple[str, int, int]]) -> None:
        """Unmark folded minutes, unless marked again (new version) since they were read."""
        with self._tx("unmarking folded minutes") as c:
            c.executemany("DELETE FROM dirty_minute WHERE camper = ? AND minute_ms = ? AND version = ?", list(marks))

    # -- ranges ----------------------------------------------------------------------

    def add_range(self, camper: str, from_ms: int, to_ms: int) -> None:
        with self._tx("adding a range to fold") as c:
            c.execute(
                "INSERT INTO dirty_range (camper, from_ms, to_ms) VALUES (?, ?, ?) ON CONFLICT (camper) DO UPDATE SET "
                "from_ms = MIN(from_ms, excluded.from_ms), to_ms = MAX(to_ms, excluded.to_ms)",
                (camper, from_ms, to_ms),
            )

    def range_work(self, ready_ms: int, span_ms: int, limit: int) -> list[tuple[str, int, int]]:
        """(camper, from, to) of the next span of up to ``span_ms`` of each range, whole
        minutes ended by ``ready_ms``, pruned minutes left out; finished ranges dropped."""
        ready_minute = ready_ms - ready_ms % MINUTE_MS
        with self._tx("reading ranges to fold") as c:
            c.execute(f"UPDATE dirty_range SET from_ms = MAX(from_ms, {_PRUNED.replace('d.camper', 'dirty_range.camper')})")
            c.execute("DELETE FROM dirty_range WHERE from_ms >= to_ms")
            rows = c.execute("SELECT camper, from_ms, to_ms FROM dirty_range ORDER BY camper LIMIT ?", (limit,)).fetchall()
        work = [(camper, lo, min(hi, lo + span_ms, ready_minute)) for camper, lo, hi in rows]
        return [w for w in work if w[1] < w[2]]

    def advance(self, work: Iterable[tuple[str, int, int]], read_version: int) -> None:
        """Ranges folded up to their span's end (unless someone else moved them meanwhile);
        the marks inside the spans are cleared too if they were marked at or before
        ``read_version``, the version read before the fold read the raw data."""
        work = list(work)
        with self._tx("advancing ranges") as c:
            c.executemany("UPDATE dirty_range SET from_ms = ? WHERE camper = ? AND from_ms = ?", [(hi, cm, lo) for cm, lo, hi in work])
            c.executemany(
                "DELETE FROM dirty_minute WHERE camper = ? AND minute_ms >= ? AND minute_ms < ? AND version <= ?",
                [(cm, lo, hi, read_version) for cm, lo, hi in work],
            )
            c.execute("DELETE FROM dirty_range WHERE from_ms >= to_ms")

    # -- horizon, pruning, catch-up ----------------------------------------------------

    def oldest_dirty(self, camper: str) -> int | None:
        """Start of the camper's oldest minute still to fold (mark or range), or None."""
        with self._tx("reading the folded horizon") as c:
            row = c.execute(
                f"SELECT MIN(m) FROM (SELECT MIN(minute_ms) AS m FROM dirty_minute AS d WHERE camper = :c AND minute_ms + 60000 > {_PRUNED} "
                "UNION ALL SELECT from_ms FROM dirty_range WHERE camper = :c)",
                {"c": camper},
            ).fetchone()
        return None if row is None else row[0]

    def set_pruned(self, camper: str, before_ms: int) -> None:
        with self._tx("recording a prune") as c:
            c.execute(
                "INSERT INTO raw_pruned (camper, before_ms) VALUES (?, ?) "
                "ON CONFLICT (camper) DO UPDATE SET before_ms = MAX(before_ms, excluded.before_ms)",
                (camper, before_ms),
            )

    def caught_up(self) -> bool:
        with self._tx("reading the journal state") as c:
            return c.execute("SELECT 1 FROM meta WHERE key = 'caught_up'").fetchone() is not None

    def set_caught_up(self) -> None:
        with self._tx("recording the catch-up") as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('caught_up', 1)")

    # -- the hour tier -------------------------------------------------------------------

    def mark_hours(self, hours: Iterable[tuple[str, int]]) -> None:
        """Mark (camper, hour start) to recompute from its minutes, with a new version."""
        self._mark("dirty_hour", "hour_ms", hours)

    def due_hours(self, max_version: int, limit: int) -> list[tuple[str, int, int]]:
        """(camper, hour, version) of dirty hours marked at or before ``max_version``."""
        with self._tx("reading dirty hours") as c:
            return c.execute(
                "SELECT camper, hour_ms, version FROM dirty_hour WHERE version <= ? ORDER BY camper, hour_ms LIMIT ?",
                (max_version, limit),
            ).fetchall()

    def clear_hours(self, marks: Iterable[tuple[str, int, int]]) -> None:
        """Unmark recomputed hours, unless marked again (new version) since they were read."""
        with self._tx("unmarking folded hours") as c:
            c.executemany("DELETE FROM dirty_hour WHERE camper = ? AND hour_ms = ? AND version = ?", list(marks))

    def oldest_dirty_hour(self, camper: str) -> int | None:
        """Start of the camper's oldest hour still to recompute, or None."""
        with self._tx("reading the hour tier's horizon") as c:
            return c.execute("SELECT MIN(hour_ms) FROM dirty_hour WHERE camper = ?", (camper,)).fetchone()[0]

    def hours_caught_up(self) -> bool:
        with self._tx("reading the journal state") as c:
            return c.execute("SELECT 1 FROM meta WHERE key = 'hours_caught_up'").fetchone() is not None

    def set_hours_caught_up(self) -> None:
        with self._tx("recording the hour tier's catch-up") as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('hours_caught_up', 1)")
