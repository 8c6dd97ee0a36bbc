"""The edge's durable queue: a reading counts as taken only once it is here (SQLite, WAL).

Why SQLite in WAL mode with ``synchronous=FULL``: a committed transaction
survives a power cut (the Pi loses power when the engine stops), and readers
(the sender) never block the writer. Why group commits: an SD card wears out
with every small synchronous write, so :meth:`DurableQueue.put` only appends
to an in-memory list and :meth:`DurableQueue.flush` (called about once a
second by the owner) writes the new readings, deletes the acknowledged ones,
advances the per-stream ``seq`` counters and the fold/drop counters in *one*
transaction. A power cut therefore loses at most the readings taken since the
last commit, and never half of anything.

``seq`` is assigned at :meth:`put` and the counter row is committed in the same
transaction as the readings that used it, so after a crash the next ``seq`` is
one past the last *committed* reading: a ``seq`` lost with an uncommitted
reading was never sent (only committed rows are leased to the sender), so it
can neither repeat nor skip-and-reuse a ``seq`` anyone has seen.

Bounded, degrading instead of dropping (:meth:`_enforce_budget`): over the
size (``max_bytes``) or age (``max_age_s``) budget, the oldest raw ``energy``
readings are folded into one sample per minute (numbers: mean; strings and
booleans: last). The folded sample keeps the ``seq``, ``ts`` and row position
of the minute's last reading, so ``seq`` stays strictly increasing in queue
order; the others are deleted and counted in ``folded``. Only when nothing is
left to fold are the oldest rows dropped, counted in ``dropped``. Invariant:
readings taken = delivered + still queued + folded + dropped + unsynced. What is
dropped (or removed as ``unsynced``) is also announced downstream: the same
transaction queues an ``alarm_readings_lost`` event naming the stream, the seq
range and the count (:class:`camperhub.contract.ReadingsLost`), so the server's
completeness report can say why those seqs never arrive.

The clock (:mod:`camperhub.edge.clock`): a reading taken before the clock is
trusted is queued *undated*, with its boot id and milliseconds since boot, and
is not sent. :meth:`restamp` (called once the clock is trusted) dates this
boot's undated rows as ``boot_ms + offset`` in the next commit; undated rows of
an earlier boot can never be dated and are removed, counted in ``unsynced``.

A corrupt file (truncated by a dying SD card, overwritten) is moved aside and
what can still be read of it is carried into a fresh file
(:mod:`camperhub.edge.queue_salvage`); :attr:`DurableQueue.notice` says so.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camperhub.contract import READINGS_LOST_EVENT, ReadingsLost, Stream
from camperhub.edge.clock import Stamp, system_ms
from camperhub.edge.queue_salvage import Salvage, is_corruption, quarantine_and_salvage

#: Bytes a row costs besides its JSON body (columns, record header, b-tree cell), for the size budget.
ROW_OVERHEAD_BYTES = 40
#: Raw readings folded per step when over budget.
FOLD_CHUNK = 3600
DROP_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the sender's cursor is an id
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    n INTEGER NOT NULL DEFAULT 1,          -- readings in the row; negative once folded (never folded again)
    body TEXT NOT NULL,
    boot_id TEXT,                          -- the boot it was taken in, and ...
    boot_ms INTEGER,                       -- ... ms since that boot: what dates it once the clock is trusted
    dated INTEGER NOT NULL DEFAULT 1       -- 0: ts is a provisional wall-clock time, not sent until dated
);
CREATE TABLE IF NOT EXISTS seqs (stream TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class QueueError(RuntimeError):
    """The queue file cannot be opened or written (disk full, corrupt, read-only)."""


@dataclass(frozen=True)
class Row:
    """One queued sample; ``n`` > 1 for a folded minute."""

    id: int
    stream: Stream
    seq: int
    ts: int
    n: int
    body: str

    def sample(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, **json.loads(self.body)}


#: A reading waiting for the next commit: stream, seq, ts, body, boot id, ms since boot, dated.
_Pending = tuple[str, int, int, str, str | None, int | None, int]


def fold_minute(rows: list[Row]) -> dict[str, Any]:
    """One sample for a minute of energy readings: numeric mean, last value for the rest."""
    values: dict[str, list[Any]] = {}
    for row in rows:
        for k, v in json.loads(row.body).items():
            values.setdefault(k, []).append(v)
    out: dict[str, Any] = {}
    for k, vs in values.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs):
            mean = sum(vs) / len(vs)
            out[k] = round(mean) if all(isinstance(v, int) for v in vs) else round(mean, 4)
        else:
            out[k] = vs[-1]
    total = sum(abs(r.n) for r in rows)
    if total > 1:
        out["readings_n"] = total
    return out


class DurableQueue:
    """Per-stream ordered, crash-safe queue of samples with group commits and a disk budget."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 256 * 2**20,
        max_age_s: float = 30 * 86400,
        boot_id: str | None = None,
        clock: Callable[[], Stamp] | None = None,
    ) -> None:
        """Open (or create) the queue at ``path``; a corrupt file is quarantined and salvaged.

        ``boot_id`` is this boot's (undated rows of other boots cannot be dated
        any more); ``clock`` stamps the events the queue itself writes.
        """
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.boot_id = boot_id
        self._clock = clock or (lambda: Stamp(system_ms(), boot_id or "", 0, True))
        #: what went wrong with the file at start-up, for status ``last_error`` (None when all is well)
        self.notice: str | None = None
        self.salvage: Salvage | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._open()
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                self.salvage = quarantine_and_salvage(path, exc, self._connect)
                self._db = self.salvage.db
                self._read_state()
                self.notice = self.salvage.message()
        except (sqlite3.Error, OSError) as exc:
            raise QueueError(f"cannot open the queue {path}: {exc}") from exc
        self._db_lock = threading.Lock()  # the connection: flush, reads
        self._mem_lock = threading.Lock()  # the in-memory lists: put, ack (never waits for a disk write)
        self._pending: list[_Pending] = []
        self._acked: set[int] = set()
        self._leased: set[int] = set()
        self._sent: dict[int, tuple[str, int, float]] = {}  # id -> (stream, seq, monotonic sent): awaiting the server's receipt
        self._restamps: dict[str, int] = {}  # not yet applied to committed rows
        self._offsets: dict[str, int] = {}  # every boot whose clock is known, for late puts
        self._boot_checked = boot_id is None
        self._oldest_ts: int | None = self._first_ts()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """A connection with the queue's pragmas and schema."""
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # 1 KiB pages (set before the file exists; an existing file keeps its own): a commit
        # of one reading rewrites a few pages in the WAL, and 4 KiB pages made that about
        # 16 KB written per reading at 1 Hz, 1 KiB pages about 4 KB (tests/bench/test_bench_queue.py)
        db.execute("PRAGMA page_size=1024")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        columns = {r[1] for r in db.execute("PRAGMA table_info(samples)")}
        for name, decl in (("boot_id", "TEXT"), ("boot_ms", "INTEGER"), ("dated", "INTEGER NOT NULL DEFAULT 1")):
            if name not in columns:  # a queue file from before the clock columns
                db.execute(f"ALTER TABLE samples ADD COLUMN {name} {decl}")
        return db

    def _open(self) -> None:
        self._db = self._connect(self.path)
        try:
            self._read_state()  # reads every page of the table: a truncated file shows here
        except sqlite3.DatabaseError:
            self._db.close()
            raise

    def _read_state(self) -> None:
        self._seq = {s: v for s, v in self._db.execute("SELECT stream, last FROM seqs")}
        self._load_totals()

    def _load_totals(self) -> None:
        rows, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM samples").fetchone()
        self._rows = int(rows)
        self._bytes = int(size) + self._rows * ROW_OVERHEAD_BYTES
        self.counters = {k: v for k, v in self._db.execute("SELECT name, value FROM counters")}

    # -- taking readings ---------------------------------------------------
    def put(self, stream: Stream, sample: dict[str, Any], *, undated: tuple[str, int] | None = None) -> int:
        """Take a sample (``ts`` and fields); its ``seq`` is returned. Durable after the next :meth:`flush`.

        ``undated`` = (boot id, ms since boot) when the clock is not trusted
        yet: the row waits for :meth:`restamp` and is not sent until then.
        """
        body = json.dumps({k: v for k, v in sample.items() if k not in ("ts", "seq")}, separators=(",", ":"))
        boot_id, at_boot_ms = undated if undated is not None else (None, None)
        ts = int(sample["ts"])
        with self._mem_lock:
            if boot_id is not None and boot_id in self._offsets:  # stamped just before the clock became trusted
                ts, undated = (at_boot_ms or 0) + self._offsets[boot_id], None
            seq = self._seq.get(stream.value, 0) + 1
            self._seq[stream.value] = seq
            self._pending.append((stream.value, seq, ts, body, boot_id, at_boot_ms, int(undated is None)))
        return seq

    def restamp(self, boot_id: str, offset_ms: int) -> None:
        """The clock of boot ``boot_id`` is now known: its undated rows get ``ts = boot_ms + offset_ms`` (next commit)."""
        with self._mem_lock:
            self._restamps[boot_id] = offset_ms
            self._offsets[boot_id] = offset_ms
            self._pending = [
                (st, seq, (bms or 0) + offset_ms, body, bid, bms, 1) if not dated and bid == boot_id else p
                for p in self._pending
                for st, seq, _ts, body, bid, bms, dated in (p,)
            ]

    def next(self, stream: Stream) -> int:
        """A ``seq`` for a sample that is not queued (the retained status): committed at once."""
        with self._db_lock, self._mem_lock:
            seq = self._seq.get(stream.value, 0) + 1
            self._seq[stream.value] = seq
            self._write_seqs({stream.value: seq})
        return seq

    # -- the sender's side ---------------------------------------------------
    def lease(self, stream: Stream, after_id: int, limit: int, max_bytes: int) -> list[Row]:
        """The oldest committed rows of ``stream`` after ``after_id``, not acknowledged, within the limits."""
        with self._db_lock:
            cur = self._db.execute(
                "SELECT id, seq, ts, n, body FROM samples WHERE stream=? AND id>? AND dated=1 ORDER BY id LIMIT ?",
                (stream.value, after_id, limit + len(self._acked) + len(self._sent)),
            )
            out: list[Row] = []
            size = 0
            with self._mem_lock:
                for rid, seq, ts, n, body in cur:
                    if rid in self._acked or rid in self._sent:
                        continue
                    if out and (len(out) >= limit or size + len(body) + 40 > max_bytes):
                        break
                    out.append(Row(rid, stream, seq, ts, n, body))
                    size += len(body) + 40
                self._leased.update(r.id for r in out)
        return out

    def ack(self, ids: list[int]) -> None:
        """The broker acknowledged these rows: deleted by the next :meth:`flush`."""
        with self._mem_lock:
            self._acked.update(ids)
            self._leased.difference_update(ids)

    def mark_sent(self, stream: Stream, rows: list[tuple[int, int]]) -> None:
        """The broker has these (id, seq) rows; they stay until the server's receipt (:meth:`confirm`)."""
        now = time.monotonic()
        with self._mem_lock:
            for rid, seq in rows:
                self._leased.discard(rid)
                self._sent[rid] = (stream.value, seq, now)

    def confirm(self, stream: Stream, ranges: list[tuple[int, int]]) -> int:
        """The server stored ``stream``'s seqs in these inclusive ranges: those rows go at the next flush."""
        starts = [lo for lo, _ in ranges]
        done: list[int] = []
        with self._mem_lock:
            for rid, (st, seq, _t) in self._sent.items():
                if st != stream.value:
                    continue
                i = bisect.bisect_right(starts, seq) - 1
                if i >= 0 and seq <= ranges[i][1]:
                    done.append(rid)
            for rid in done:
                del self._sent[rid]
            self._acked.update(done)
        return len(done)

    def take_expired(self, older_than_s: float) -> int:
        """Sent rows whose receipt did not come within ``older_than_s``: queued again (to be resent); how many."""
        limit = time.monotonic() - older_than_s
        with self._mem_lock:
            expired = [rid for rid, (_s, _q, t) in self._sent.items() if t < limit]
            for rid in expired:
                del self._sent[rid]
        return len(expired)

    def release(self, ids: list[int]) -> None:
        """These rows are no longer in flight (refused, or their connection is gone): they stay queued.

        Rows the broker had already taken (:meth:`mark_sent`) are not released
        by a lost connection: they wait for their receipt or their expiry.
        """
        with self._mem_lock:
            self._leased.difference_update(ids)

    # -- the periodic transaction ---------------------------------------------
    def flush(self, now_ms: int | None = None) -> None:
        """One transaction: insert what was put, delete what was acked, keep the budget."""
        with self._db_lock:
            with self._mem_lock:
                pending, self._pending = self._pending, []
                acked = list(self._acked)
                restamps, self._restamps = self._restamps, {}
            last_seq: dict[str, int] = {}
            for p in pending:
                last_seq[p[0]] = p[1]  # only what these rows used: a later put's seq commits with its row
            if not pending and not acked and not restamps and self._boot_checked and not self._over_budget(now_ms):
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for boot_id, offset in restamps.items():
                    self._db.execute("UPDATE samples SET ts=boot_ms+?, dated=1 WHERE dated=0 AND boot_id=?", (offset, boot_id))
                if not self._boot_checked:
                    self._remove_undatable()
                if pending:
                    self._db.executemany(
                        "INSERT INTO samples(stream, seq, ts, body, boot_id, boot_ms, dated) VALUES(?, ?, ?, ?, ?, ?, ?)", pending
                    )
                    self._write_seqs(last_seq)
                if acked:
                    deleted = self._delete(acked)
                    self._count("acked", deleted)
                self._rows += len(pending)
                self._bytes += sum(len(p[3]) + ROW_OVERHEAD_BYTES for p in pending)
                self._enforce_budget(now_ms)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                with self._mem_lock:
                    self._pending[:0] = pending  # still taken: retried by the next flush
                    self._restamps = {**restamps, **self._restamps}
                self._load_totals()
                raise QueueError(f"cannot write the queue {self.path}: {exc}") from exc
            with self._mem_lock:
                self._acked.difference_update(acked)
            self._boot_checked = True
            self._oldest_ts = self._first_ts()

    def _delete(self, ids: list[int]) -> int:
        size, count = 0, 0
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            c, s = self._db.execute(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM samples WHERE id IN ({marks})", chunk).fetchone()
            self._db.execute(f"DELETE FROM samples WHERE id IN ({marks})", chunk)
            count, size = count + c, size + s
        self._rows -= count
        self._bytes -= size + count * ROW_OVERHEAD_BYTES
        return count

    def _remove_undatable(self) -> None:
        """Undated rows of an earlier boot: that boot's clock was never trusted, so they can never be dated."""
        rows = self._db.execute(
            "SELECT id, stream, seq, n FROM samples WHERE dated=0 AND boot_id IS NOT ? ORDER BY id", (self.boot_id,)
        ).fetchall()
        if rows:
            self._remove_lost(rows, "unsynced")

    def _remove_lost(self, rows: list[tuple[int, str, int, int]], reason: str) -> None:
        """Delete rows (id, stream, seq, n), count them, and queue one alarm_readings_lost event per stream.

        The counter counts rows (a folded row is one sample lost: taken = delivered + queued +
        folded + dropped + unsynced holds in rows); the event counts readings (a folded row
        stands for its readings_n), which is what the server's completeness report needs.
        """
        by_stream: dict[str, list[tuple[int, int]]] = {}
        for _rid, stream, seq, n in rows:
            by_stream.setdefault(stream, []).append((seq, abs(n)))
        self._count(reason, self._delete([r[0] for r in rows]))
        for stream, seqs in by_stream.items():
            lost = ReadingsLost(
                stream=stream, reason=reason, seq_first=min(s for s, _ in seqs), seq_last=max(s for s, _ in seqs), n=sum(n for _, n in seqs)
            )
            self._insert_event(READINGS_LOST_EVENT, lost.model_dump_json())

    def _insert_event(self, kind: str, detail: str) -> None:
        """Queue an event inside the open transaction (its seq commits with it)."""
        stamp = self._clock()
        body = json.dumps({"kind": kind, "detail": detail[:500]}, separators=(",", ":"))
        with self._mem_lock:
            seq = self._seq.get(Stream.EVENT.value, 0) + 1
            self._seq[Stream.EVENT.value] = seq
        self._db.execute(
            "INSERT INTO samples(stream, seq, ts, body, boot_id, boot_ms, dated) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (Stream.EVENT.value, seq, stamp.ts_ms, body, stamp.boot_id, stamp.boot_ms, int(stamp.dated)),
        )
        self._write_seqs({Stream.EVENT.value: seq})
        self._rows += 1
        self._bytes += len(body) + ROW_OVERHEAD_BYTES

    def _write_seqs(self, last: dict[str, int]) -> None:
        self._db.executemany(
            "INSERT INTO seqs(stream, last) VALUES(?, ?) ON CONFLICT(stream) DO UPDATE SET last=MAX(last, excluded.last)",
            list(last.items()),
        )

    def _count(self, name: str, n: int) -> None:
        if n <= 0:
            return
        self.counters[name] = self.counters.get(name, 0) + n
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value", (name, self.counters[name])
        )

    # -- the budget ------------------------------------------------------------
    def _over_budget(self, now_ms: int | None) -> bool:
        if self._bytes > self.max_bytes:
            return True
        oldest = self._first_ts() if self._db.in_transaction else self._oldest_ts
        now = now_ms if now_ms is not None else time.time() * 1000
        return oldest is not None and now - oldest > self.max_age_s * 1000

    def _enforce_budget(self, now_ms: int | None) -> None:
        """Fold the oldest raw energy minutes, then drop the oldest rows, until within budget."""
        while self._over_budget(now_ms):
            if not self._fold_oldest() and not self._drop_oldest(now_ms):
                return

    def _fold_oldest(self) -> bool:
        with self._mem_lock:
            leased = set(self._leased) | self._acked | set(self._sent)
        found = self._db.execute(
            "SELECT id, seq, ts, n, body, dated, boot_id FROM samples WHERE stream='energy' AND n>0 ORDER BY id LIMIT ?",
            (FOLD_CHUNK + 1,),
        ).fetchall()

        def minute(r: tuple[Any, ...]) -> tuple[Any, ...]:
            # a minute of one clock: undated rows (provisional ts) never fold with dated ones
            return (r[5], r[6], r[2] // 60000)

        if len(found) > FOLD_CHUNK:  # the last minute may go on past the chunk: leave it whole for later
            last_minute = minute(found[-1])
            found = [r for r in found if minute(r) != last_minute] or found
        groups: list[list[tuple[Any, ...]]] = []
        for r in found:
            if groups and minute(groups[-1][-1]) == minute(r):
                groups[-1].append(r)
            else:
                groups.append([r])
        did = False
        for group in groups:
            if any(r[0] in leased for r in group):
                continue
            rows = [Row(r[0], Stream.ENERGY, r[1], r[2], r[3], r[4]) for r in group]
            last = rows[-1]
            body = json.dumps(fold_minute(rows), separators=(",", ":")) if len(rows) > 1 else last.body
            # n<0 marks a folded row: it is never folded again
            self._db.execute("UPDATE samples SET body=?, n=? WHERE id=?", (body, -sum(abs(r.n) for r in rows), last.id))
            self._bytes += len(body) - len(last.body)
            if len(rows) > 1:
                removed = self._delete([r.id for r in rows[:-1]])
                self._count("folded", removed)
            did = True
        return did

    def _drop_oldest(self, now_ms: int | None) -> bool:
        """Over the size budget: the oldest rows, energy first. Only over the age budget: just the rows too old."""
        with self._mem_lock:
            leased = set(self._leased) | self._acked | set(self._sent)
        if self._bytes > self.max_bytes:
            query, args = "SELECT id, stream, seq, n FROM samples ORDER BY stream!='energy', id LIMIT ?", ()
        else:
            cutoff = (now_ms if now_ms is not None else system_ms()) - int(self.max_age_s * 1000)
            query, args = "SELECT id, stream, seq, n FROM samples WHERE dated=1 AND ts<? ORDER BY id LIMIT ?", (cutoff,)
        rows = [row for row in self._db.execute(query, (*args, DROP_CHUNK + len(leased))) if row[0] not in leased][:DROP_CHUNK]
        if rows:
            self._remove_lost(rows, "dropped")
        return bool(rows)

    # -- what status shows ---------------------------------------------------------
    def _first_ts(self) -> int | None:
        row = self._db.execute("SELECT ts FROM samples WHERE dated=1 ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    @property
    def depth(self) -> int:
        """Readings taken and not yet acknowledged (committed or not)."""
        with self._mem_lock:
            return self._rows + len(self._pending) - len(self._acked)

    def stats(self, now_ms: int | None = None) -> dict[str, Any]:
        """The status fields the queue fills: depth, age of the oldest, folded and dropped so far."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        with self._mem_lock:
            oldest = self._oldest_ts if self._oldest_ts is not None else next((p[2] for p in self._pending if p[6]), None)
        return {
            "queue_depth": max(0, self.depth),
            "oldest_queued_s": round(max(0.0, (now - oldest) / 1000), 1) if oldest is not None and self.depth > 0 else 0.0,
            "queue_folded": self.counters.get("folded", 0),
            "queue_dropped": self.counters.get("dropped", 0),
            "queue_unsynced": self.counters.get("unsynced", 0),
        }

    def all_rows(self, stream: Stream | None = None) -> list[Row]:
        """Every committed row in queue order (tests, diagnostics)."""
        with self._db_lock:
            q = "SELECT id, stream, seq, ts, n, body FROM samples" + (" WHERE stream=?" if stream else "") + " ORDER BY id"
            return [Row(r[0], Stream(r[1]), r[2], r[3], r[4], r[5]) for r in self._db.execute(q, (stream.value,) if stream else ())]

    def close(self) -> None:
        """Commit what is pending and close the file."""
        try:
            self.flush()
        finally:
            with self._db_lock:
                self._db.close()
