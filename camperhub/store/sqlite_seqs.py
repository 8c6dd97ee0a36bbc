"""Seq accounting of the SQLite backend (:meth:`Store.seq_summary`; base.py says what it answers).

Why it is cheap here: the rows of a camper sit in time order in the primary
key ``(camper, ts_ms)``, so the counts of a period are one range scan, and
``LAG(seq) OVER (ORDER BY ts_ms)`` walks the window in key order without a
sort, handing back only the rows where the sequence breaks. The functions run
inside the caller's (read) transaction, so all parts see one snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from camperhub.store.base import SeqSummary, breaks_frame, periods_frame

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Fields that say how a sample was made rather than what was measured.
NOT_DATA = ("seq", "readings_n")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ms(t: datetime) -> int:
    """First whole millisecond at or after ``t`` (the store's half-open windows)."""
    return -(-((t - _EPOCH) // timedelta(microseconds=1)) // 1000)


def seq_summary(conn: sqlite3.Connection, table: str, columns: Sequence[str], camper: str, edges: Sequence[datetime]) -> SeqSummary:
    """Counts per period and the breaks of ``seq`` in ``[edges[0], edges[-1])`` of ``table``
    (whose columns are ``columns``); samples are the rows with a ``seq``."""
    t = _q(table)
    data = [c for c in columns if c not in NOT_DATA]
    # COALESCE stops at the first value (an OR of IS NOT NULL tests them all: four times slower)
    any_data = "0" if not data else f"{_q(data[0])} IS NOT NULL" if len(data) == 1 else f"COALESCE({', '.join(map(_q, data))}) IS NOT NULL"
    bounds = [_ms(e) for e in edges]
    counts = [
        conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM({any_data}), 0) FROM {t} WHERE camper = ? AND ts_ms >= ? AND ts_ms < ? AND seq IS NOT NULL",
            (camper, lo, hi),
        ).fetchone()
        for lo, hi in zip(bounds, bounds[1:])
    ]
    before = conn.execute(
        f"SELECT ts_ms, seq FROM {t} WHERE camper = ? AND ts_ms < ? AND seq IS NOT NULL ORDER BY ts_ms DESC LIMIT 1", (camper, bounds[0])
    ).fetchone()
    n = "readings_n" if "readings_n" in columns else "NULL"
    rows = conn.execute(
        f"SELECT ts_ms, seq, n, prev_seq, prev_ts FROM (SELECT ts_ms, seq, {n} AS n, LAG(seq) OVER w AS prev_seq, "
        f"LAG(ts_ms) OVER w AS prev_ts FROM {t} WHERE camper = ? AND ts_ms >= ? AND ts_ms < ? AND seq IS NOT NULL "
        "WINDOW w AS (ORDER BY ts_ms)) WHERE prev_seq IS NULL OR seq <> prev_seq + 1 OR n >= 1 ORDER BY ts_ms",
        (camper, bounds[0], bounds[-1]),
    ).fetchall()
    if rows and rows[0][3] is None and before is not None:  # the window's first sample: its previous one lies before the window
        ts, seq, readings_n = rows[0][:3]
        if seq == before[1] + 1 and not (readings_n is not None and readings_n >= 1):
            rows = rows[1:]
        else:
            rows[0] = (ts, seq, readings_n, before[1], before[0])
    return SeqSummary(periods_frame(edges, [(int(c), int(d)) for c, d in counts]), breaks_frame(rows))
