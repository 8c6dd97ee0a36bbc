"""SQL of the SQLite backend's rollups (camperhub/store/rollup.py says why rollups exist).

Tables, next to the raw ``energy`` table:

* ``dirty_minute(camper, minute_ms)``: minutes written since they were last
  folded. :meth:`SqliteStore.write` fills it in the transaction that writes the
  samples, so a minute is never stored without its mark.
* ``energy_1m(camper, minute_ms, <field>__<component>...)`` WITHOUT ROWID: one
  row per camper and minute with data, the components of rollup.COMPONENTS.
* ``raw_pruned(camper, before_ms)``: raw rows of the camper before this time
  were deleted by :meth:`SqliteStore.prune_raw`; their minutes are never
  re-folded (a re-fold would see only the late samples and lose the rest).
* ``energy_1h(camper, hour_ms, <field>__<component>...)`` WITHOUT ROWID: the
  hour tier, the same components per camper and hour, recomputed whole from
  the hour's rows of ``energy_1m`` (never from raw, so prune_raw cannot touch
  it), and ``dirty_hour(camper, hour_ms)``: hours whose minute rows changed
  since the hour was last recomputed. A minute fold marks the hours of its
  minutes in its own transaction, so an hour is never left stale unmarked.
  A file from before the hour tier (the tables missing when it is opened)
  gets every hour from each camper's first to its last rollup minute marked
  dirty at migration (cheap: a few seeks and one mark per hour), and the next
  rollup() computes them (a year: 8,760 hours from 525,600 minute rows, a few
  seconds, in chunks of HOUR_FOLD_CHUNK so writers are not held up); until
  then reads of whole hours use the minute tier, so answers never change.

Folding a chunk of dirty minutes (select, recompute from raw, upsert, unmark)
is one write transaction: SQLite serialises writers, so a write cannot slip
between the read of a minute and the removal of its mark, and two processes
folding at once cannot lose anything (the second one finds nothing left).
Hours are folded the same way after the minutes, chunk by chunk. The functions
here run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from camperhub.store.rollup import COMPONENTS, HOUR_MS, HOUR_ROLLUP_NAME, MINUTE_MS, ROLLUP_NAME, column

#: Dirty minutes folded per transaction (a writer waits at most one chunk, ~10-50 ms).
FOLD_CHUNK = 2_000
#: Dirty hours folded per transaction (each reads up to 60 minute rows).
HOUR_FOLD_CHUNK = 200
#: Raw time deleted per transaction by prune_raw (one day of a camper: ~17,000 rows at 5 s).
PRUNE_SPAN_MS = 86_400_000
#: SQLite column type of each storage kind (contract.STORAGE_KINDS).
SQL_TYPE = {"real": "REAL", "int": "INTEGER", "bool": "INTEGER", "text": "TEXT"}
_NO_PRUNE = -(2**63)
#: The camper's oldest minute that is dirty and still has all its raw (older ones are never re-folded).
_OLDEST_DIRTY = (
    "SELECT MIN(minute_ms) FROM dirty_minute WHERE camper = :c AND minute_ms + 60000 > "
    f"COALESCE((SELECT before_ms FROM raw_pruned WHERE camper = :c), {_NO_PRUNE})"
)


def q(name: str) -> str:
    """A quoted identifier (names come from the contract or the tables themselves)."""
    return '"' + name.replace('"', '""') + '"'


def component_types(kinds: dict[str, str]) -> dict[str, str]:
    """Column name -> SQL type of every component of the energy fields ``kinds`` (name -> kind)."""
    out = {}
    for field, kind in kinds.items():
        for comp in COMPONENTS[kind]:
            out[column(field, comp)] = "INTEGER" if comp == "count" else SQL_TYPE[kind]
    return out


def migrate(conn: sqlite3.Connection, energy_kinds: dict[str, str], from_version: int) -> None:
    """Create the rollup tables, add component columns for new fields; a file from before
    rollups (``from_version`` < 2) gets every minute it holds marked dirty, so its history
    is folded by the next rollup() and read from raw until then."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS dirty_minute (camper TEXT NOT NULL, minute_ms INTEGER NOT NULL, "
        "PRIMARY KEY (camper, minute_ms)) WITHOUT ROWID"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS raw_pruned (camper TEXT NOT NULL PRIMARY KEY, before_ms INTEGER NOT NULL) WITHOUT ROWID")
    wanted = component_types(energy_kinds)
    cols = ", ".join(f"{q(n)} {t}" for n, t in wanted.items())
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {ROLLUP_NAME} (camper TEXT NOT NULL, minute_ms INTEGER NOT NULL, {cols}, "
        "PRIMARY KEY (camper, minute_ms)) WITHOUT ROWID"
    )
    had_hours = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (HOUR_ROLLUP_NAME,)).fetchone()
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {HOUR_ROLLUP_NAME} (camper TEXT NOT NULL, hour_ms INTEGER NOT NULL, {cols}, "
        "PRIMARY KEY (camper, hour_ms)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS dirty_hour (camper TEXT NOT NULL, hour_ms INTEGER NOT NULL, "
        "PRIMARY KEY (camper, hour_ms)) WITHOUT ROWID"
    )
    for table in (ROLLUP_NAME, HOUR_ROLLUP_NAME):
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, sql_type in wanted.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {q(name)} {sql_type}")
    if from_version < 2:
        conn.execute("INSERT OR IGNORE INTO dirty_minute SELECT DISTINCT camper, ts_ms - ts_ms % 60000 FROM energy")
    if not had_hours:
        _mark_existing_hours(conn)


def _mark_existing_hours(conn: sqlite3.Connection) -> None:
    """Mark dirty every hour from each camper's first to its last rollup minute (the hour
    tier of a file from before it): a skip-scan over the campers, two seeks each."""
    campers = [
        r[0]
        for r in conn.execute(
            f"WITH RECURSIVE c(x) AS (SELECT MIN(camper) FROM {ROLLUP_NAME} UNION ALL "
            f"SELECT (SELECT MIN(camper) FROM {ROLLUP_NAME} WHERE camper > c.x) FROM c WHERE c.x IS NOT NULL) "
            "SELECT x FROM c WHERE x IS NOT NULL"
        )
    ]
    for camper in campers:
        lo, hi = conn.execute(
            f"SELECT (SELECT MIN(minute_ms) FROM {ROLLUP_NAME} WHERE camper = :c), (SELECT MAX(minute_ms) FROM {ROLLUP_NAME} WHERE camper = :c)",
            {"c": camper},
        ).fetchone()
        conn.executemany(
            "INSERT OR IGNORE INTO dirty_hour (camper, hour_ms) VALUES (?, ?)",
            [(camper, h) for h in range(lo - lo % HOUR_MS, hi + 1, HOUR_MS)],
        )


def mark(conn: sqlite3.Connection, minutes: Iterable[tuple[str, int]]) -> None:
    """Mark (camper, minute start) dirty; called in the transaction that writes the samples."""
    conn.executemany("INSERT OR IGNORE INTO dirty_minute (camper, minute_ms) VALUES (?, ?)", sorted(set(minutes)))


def oldest_dirty(conn: sqlite3.Connection, camper: str) -> int | None:
    """Start of the camper's oldest minute still to fold, or None: the folded horizon."""
    row = conn.execute(_OLDEST_DIRTY, {"c": camper}).fetchone()
    return None if row is None else row[0]


def oldest_dirty_hour(conn: sqlite3.Connection, camper: str) -> int | None:
    """Start of the camper's oldest hour still to recompute from its minutes, or None."""
    return conn.execute("SELECT MIN(hour_ms) FROM dirty_hour WHERE camper = ?", (camper,)).fetchone()[0]


def forget_pruned(conn: sqlite3.Connection) -> int:
    """Unmark dirty minutes whose raw was pruned (late data older than the raw retention):
    their rollup, folded while the raw was whole, is kept. Returns how many."""
    return conn.execute(
        "DELETE FROM dirty_minute WHERE minute_ms + 60000 <= (SELECT before_ms FROM raw_pruned AS r WHERE r.camper = dirty_minute.camper)"
    ).rowcount


def fold_chunk(conn: sqlite3.Connection, kinds: dict[str, str], ready_ms: int) -> tuple[int, int]:
    """Fold up to FOLD_CHUNK dirty minutes that ended by ``ready_ms``: recompute each from raw,
    upsert its row, unmark it. Returns (minutes taken, rollup rows written); a dirty minute
    without raw rows (a mark whose write failed) writes nothing and keeps any row it had."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS rollup_chunk (camper TEXT NOT NULL, minute_ms INTEGER NOT NULL, "
        "PRIMARY KEY (camper, minute_ms)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.rollup_chunk")
    taken = conn.execute(
        "INSERT INTO temp.rollup_chunk SELECT camper, minute_ms FROM dirty_minute AS d WHERE minute_ms + 60000 <= :ready "
        f"AND minute_ms + 60000 > COALESCE((SELECT before_ms FROM raw_pruned AS r WHERE r.camper = d.camper), {_NO_PRUNE}) "
        "ORDER BY camper, minute_ms LIMIT :n",
        {"ready": ready_ms, "n": FOLD_CHUNK},
    ).rowcount
    if taken <= 0:
        return 0, 0
    # only the fields the chunk holds: a camper reports a few of the contract's fields, and
    # each folded field costs six aggregates and two lookups per minute (an absent field's
    # components are NULL, which a row gets, or already has: raw never loses a value)
    counts = conn.execute(
        f"SELECT {', '.join(f'COUNT(e.{q(f)})' for f in kinds)} FROM temp.rollup_chunk AS d JOIN energy AS e "
        f"ON e.camper = d.camper AND e.ts_ms >= d.minute_ms AND e.ts_ms < d.minute_ms + {MINUTE_MS}"
    ).fetchone()
    present = {f: k for (f, k), n in zip(kinds.items(), counts) if n}
    written = conn.execute(_fold_sql(present)).rowcount if present else 0
    conn.execute("DELETE FROM dirty_minute WHERE (camper, minute_ms) IN (SELECT camper, minute_ms FROM temp.rollup_chunk)")
    conn.execute(f"INSERT OR IGNORE INTO dirty_hour SELECT DISTINCT camper, minute_ms - minute_ms % {HOUR_MS} FROM temp.rollup_chunk")
    return taken, written


def fold_hours_chunk(conn: sqlite3.Connection, kinds: dict[str, str]) -> tuple[int, int]:
    """Recompute up to HOUR_FOLD_CHUNK dirty hours whole from their minute rows (sum of sums,
    sum of counts, min of mins, max of maxes, the first of the earliest minute having one,
    the last of the latest), upsert them, unmark them. Returns (hours taken, rows written).
    Not bound to "ready": an hour still filling is recomputed again when its next minute is
    folded, and reads use an hour only once all its minutes are folded."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS hour_chunk (camper TEXT NOT NULL, hour_ms INTEGER NOT NULL, "
        "PRIMARY KEY (camper, hour_ms)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.hour_chunk")
    taken = conn.execute(
        "INSERT INTO temp.hour_chunk SELECT camper, hour_ms FROM dirty_hour ORDER BY camper, hour_ms LIMIT ?", (HOUR_FOLD_CHUNK,)
    ).rowcount
    if taken <= 0:
        return 0, 0
    join = (
        f"FROM temp.hour_chunk AS d JOIN {ROLLUP_NAME} AS m ON m.camper = d.camper "
        f"AND m.minute_ms >= d.hour_ms AND m.minute_ms < d.hour_ms + {HOUR_MS}"
    )
    count_cols = [f"COUNT(m.{q(column(f, 'count'))})" for f in kinds]
    counts = conn.execute(f"SELECT {', '.join(count_cols)} {join}").fetchone()
    present = {f: k for (f, k), n in zip(kinds.items(), counts) if n}
    written = conn.execute(_hour_fold_sql(present, join)).rowcount if present else 0
    conn.execute("DELETE FROM dirty_hour WHERE (camper, hour_ms) IN (SELECT camper, hour_ms FROM temp.hour_chunk)")
    return taken, written


def _hour_fold_sql(kinds: dict[str, str], join: str) -> str:
    """INSERT ... SELECT of the chunk's hours from their minute rows, like _fold_sql from raw."""
    inner, outer, names = [], [], []
    for i, (field, kind) in enumerate(kinds.items()):
        for comp in COMPONENTS[kind]:
            name = column(field, comp)
            c = f"m.{q(name)}"
            names.append(name)
            if comp in ("first", "last"):
                fn = "MIN" if comp == "first" else "MAX"
                inner.append(f"{fn}(CASE WHEN {c} IS NOT NULL THEN m.minute_ms END) AS t{i}{comp[0]}")
                outer.append(f"(SELECT {q(name)} FROM {ROLLUP_NAME} WHERE camper = g.camper AND minute_ms = g.t{i}{comp[0]})")
            else:
                fn = "SUM" if comp in ("sum", "count") else comp.upper()
                inner.append(f"{fn}({c}) AS {q(name)}")
                outer.append(f"g.{q(name)}")
    cols = ", ".join(q(n) for n in names)
    update = ", ".join(f"{q(n)} = excluded.{q(n)}" for n in names)
    return (
        f"INSERT INTO {HOUR_ROLLUP_NAME} (camper, hour_ms, {cols}) SELECT g.camper, g.hour_ms, {', '.join(outer)} FROM "
        f"(SELECT d.camper AS camper, d.hour_ms AS hour_ms, {', '.join(inner)} {join} GROUP BY d.camper, d.hour_ms) AS g "
        f"WHERE true ON CONFLICT (camper, hour_ms) DO UPDATE SET {update}"
    )


def _fold_sql(kinds: dict[str, str]) -> str:
    """INSERT ... SELECT of the chunk's components: one GROUP BY over a primary-key range join
    (a nested loop, one seek per minute), then the first/last values looked up by key."""
    inner, outer, names = [], [], []
    for i, (field, kind) in enumerate(kinds.items()):
        c = f"e.{q(field)}"
        for comp in COMPONENTS[kind]:
            name = column(field, comp)
            names.append(name)
            if comp in ("first", "last"):
                fn = "MIN" if comp == "first" else "MAX"
                inner.append(f"{fn}(CASE WHEN {c} IS NOT NULL THEN e.ts_ms END) AS t{i}{comp[0]}")
                outer.append(f"(SELECT {q(field)} FROM energy WHERE camper = g.camper AND ts_ms = g.t{i}{comp[0]})")
            else:
                expr = f"NULLIF(COUNT({c}), 0)" if comp == "count" else f"{comp.upper()}({c})"
                inner.append(f"{expr} AS {q(name)}")
                outer.append(f"g.{q(name)}")
    cols = ", ".join(q(n) for n in names)
    update = ", ".join(f"{q(n)} = excluded.{q(n)}" for n in names)
    return (
        f"INSERT INTO {ROLLUP_NAME} (camper, minute_ms, {cols}) SELECT g.camper, g.minute_ms, {', '.join(outer)} FROM "
        f"(SELECT d.camper AS camper, d.minute_ms AS minute_ms, {', '.join(inner)} FROM temp.rollup_chunk AS d "
        f"JOIN energy AS e ON e.camper = d.camper AND e.ts_ms >= d.minute_ms AND e.ts_ms < d.minute_ms + {MINUTE_MS} "
        "GROUP BY d.camper, d.minute_ms) AS g WHERE true "  # WHERE: the upsert parsing rule of INSERT ... SELECT
        f"ON CONFLICT (camper, minute_ms) DO UPDATE SET {update}"
    )


def prune_step(conn: sqlite3.Connection, camper: str, cutoff_ms: int) -> tuple[int, bool]:
    """Delete at most PRUNE_SPAN_MS of the camper's oldest raw energy before ``cutoff_ms``,
    but nothing from its oldest dirty minute on. Returns (rows deleted, done).

    Stopping at the oldest dirty minute (rather than skipping dirty minutes one by
    one) keeps "raw before raw_pruned.before_ms is gone" a single time per camper,
    which is what tells the fold which minutes it must never recompute.
    """
    dirty = oldest_dirty(conn, camper)
    limit = cutoff_ms if dirty is None else min(cutoff_ms, dirty)
    first = conn.execute("SELECT MIN(ts_ms) FROM energy WHERE camper = ?", (camper,)).fetchone()[0]
    if first is None or first >= limit:
        end, deleted = limit, 0
    else:
        end = min(limit, first - first % MINUTE_MS + PRUNE_SPAN_MS)
        deleted = conn.execute("DELETE FROM energy WHERE camper = ? AND ts_ms < ?", (camper, end)).rowcount
    conn.execute(
        "INSERT INTO raw_pruned (camper, before_ms) VALUES (?, ?) "
        "ON CONFLICT (camper) DO UPDATE SET before_ms = MAX(before_ms, excluded.before_ms)",
        (camper, end),
    )
    return deleted, end >= limit


def read_sql(fields: list[str], aggregate: str) -> tuple[list[str], list[str]]:
    """(aggregate SQL per field, value column per field for first/last) over rollup rows."""
    exprs, picks = [], []
    for f in fields:
        picks.append(q(column(f, aggregate)) if aggregate in ("first", "last") else "")
        if aggregate == "mean":
            exprs.append(f"CAST(SUM({q(column(f, 'sum'))}) AS REAL) / SUM({q(column(f, 'count'))})")
        elif aggregate in ("sum", "count", "min", "max"):
            fn = "SUM" if aggregate == "count" else aggregate.upper()
            exprs.append(f"{fn}({q(column(f, aggregate))})")
        else:
            exprs.append("")
    return exprs, picks
