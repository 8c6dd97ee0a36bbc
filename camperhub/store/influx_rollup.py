"""Rollups and raw retention of the InfluxDB backend (camperhub/store/rollup.py says why).

Rollups are points of measurement ``energy_1m`` (tag ``camper``, time = the
minute's start, fields ``<field>__<component>``) in a database of their own,
``<database>_1m``, created like the main one: an operator can then give the
raw database a retention (1.x ``ALTER RETENTION POLICY``, 2.x/3.x bucket
retention) while the rollups stay forever. Nothing here relies on continuous
queries, ``SELECT ... INTO`` or retention-policy DDL, which the v1
compatibility API of 2.x/3.x does not offer: folding is a plain InfluxQL
``GROUP BY time(1m)`` read of the raw minutes and a /write of the results.

Correctness with several folding processes: a fold (read raw, write rollups)
can be overtaken by another one that read newer data, its older result then
landing last. So after writing, the fold counts the raw values of its minutes
again: a minute whose counts changed since the read is marked dirty again and
folded anew (the journal's versions catch the remaining order: see
influx_journal.py). Samples are immutable in the contract (a rewrite of a
(camper, ts) is a replay with the same values), so counts are a sufficient
witness of change.

Readers (the API) find the folded horizon in the shared journal, capped at the
end of the camper's newest rollup minute, so a reader whose journal is not the
ingest's still reads the newest minutes from raw (only a late re-fold of old
minutes would then be read stale until it is folded, about a minute).

The hour tier: measurement ``energy_1h`` of the same ``<database>_1m``, one
point per camper and hour with the same components, recomputed whole from the
hour's ``energy_1m`` points with InfluxQL (``GROUP BY time(1h)``: SUM of sums
and counts, MIN of mins, MAX of maxes, and FIRST/LAST of the first/last
components: InfluxQL's FIRST(f) is the value of the earliest point having the
field f, i.e. the ``__first`` of the earliest minute having one). After a fold
writes minutes, their hours are marked in the journal (before the minutes'
marks are cleared), then recomputed; the same count witness as for minutes
(sum of the minute counts per hour, which only grows) catches an hour fold
overtaken by another. Reads use an hour only before the minute horizon
floored to the hour, before the oldest dirty hour, and before the camper's
newest hour point (a reader with its own journal then never takes an hour
whose recompute may have been cut short).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camperhub.contract import STORAGE_KINDS, Stream
from camperhub.store.base import StoredSample, StoreRejected, StoreUnavailable
from camperhub.store.influx_journal import RollupJournal
from camperhub.store.influxql import FIELD_KINDS, ns, quote_ident, quote_literal
from camperhub.store.lineprotocol import ESCAPE_STRING
from camperhub.store.rollup import (
    COMPONENTS,
    HOUR,
    HOUR_MS,
    HOUR_ROLLUP_NAME,
    MINUTE,
    MINUTE_MS,
    PARTS,
    ROLLUP_NAME,
    column,
    floor_minute_ms,
    hour_horizon,
    hour_of,
    minute_of,
    minute_runs,
    ready_ms,
)

if TYPE_CHECKING:
    from camperhub.store.influx import InfluxStore

log = logging.getLogger(__name__)

#: Dirty minutes folded per round; span of a catch-up range folded per round and camper.
MARKS_PER_ROUND = 2_000
RANGE_SPAN_MS = 86_400_000
RANGES_PER_ROUND = 20
#: Dirty hours recomputed per round (each a GROUP BY time(1h) over its 60 minute points).
HOURS_PER_ROUND = 1_000
#: InfluxQL statements sent in one /query request.
STATEMENTS_PER_REQUEST = 50
#: Lines per /write of rollup points.
LINES_PER_WRITE = 5_000
#: Storage kind of a contract field type (the names rollup.COMPONENTS uses).
_FN = {"sum": "SUM", "count": "COUNT", "min": "MIN", "max": "MAX", "first": "FIRST", "last": "LAST"}
#: Components are summed/min-ed/... again when buckets are read from rollups (and hours folded from minutes).
_READ_FN = {**_FN, "count": "SUM"}
#: How a server says it has no DELETE (2.x/3.x v1 compatibility): parser errors, 404/405/501.
_NO_DELETE = re.compile(r"not supported|unsupported|not implemented|error parsing query|\b(404|405|501)\b", re.IGNORECASE)


def _ns(ms: int) -> int:
    return ms * 1_000_000


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class InfluxRollups:
    """The rollup side of one :class:`InfluxStore` (its HTTP helpers, its journal)."""

    def __init__(self, store: InfluxStore, journal_path: Path | None) -> None:
        self.store = store
        self.database = f"{store.database}_1m"
        self.journal = RollupJournal(journal_path, store.database)
        self._delete_supported: bool | None = None

    # -- helpers ----------------------------------------------------------------------

    def _run(self, statements: Sequence[str], db: str | None = None) -> list[dict[str, Any]]:
        """Results of the statements (one per statement), STATEMENTS_PER_REQUEST per request."""
        results: list[dict[str, Any]] = []
        self.store._ensure_database(db)
        for batch in _chunks(statements, STATEMENTS_PER_REQUEST):
            results += self.store._query(";".join(batch), method="POST", db=db)
        return results

    def _run_rollups(self, statements: Sequence[str]) -> list[dict[str, Any]]:
        """Like _run on the rollup database; before any rollup exists it answers nothing."""
        try:
            return self._run(statements, db=self.database)
        except StoreRejected as exc:
            if "database not found" not in str(exc):
                raise
            return [{} for _ in statements]

    @staticmethod
    def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
        return [dict(zip(s["columns"], v)) for s in result.get("series", []) for v in s.get("values", [])]

    def _campers_of(self, measurement: str, rollups: bool = False) -> list[str]:
        q = f'SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = "camper"'
        result = self._run_rollups([q])[0] if rollups else self._run([q])[0]
        return sorted({r["value"] for r in self._rows(result)})

    def _energy_kinds(self) -> dict[str, str]:
        """Kinds of the contract's energy fields that the raw data holds (folding absent ones costs)."""
        present = {r["fieldKey"] for r in self._rows(self._run(['SHOW FIELD KEYS FROM "energy"'])[0])}
        return {f: k for f, k in STORAGE_KINDS[Stream.ENERGY].items() if f in present}

    def _newest_rollups(self, campers: Sequence[str], measurement: str = ROLLUP_NAME, order: str = "DESC") -> dict[str, int]:
        """Start of each camper's newest (``order`` ASC: oldest) rollup point (absent: none yet)."""
        results = self._run_rollups(
            [f"SELECT * FROM {quote_ident(measurement)} WHERE \"camper\" = {quote_literal(c)} ORDER BY time {order} LIMIT 1" for c in campers]
        )
        return {c: rows[0]["time"] for c, r in zip(campers, results) if (rows := self._rows(r))}

    def _rollup_kinds(self) -> dict[str, str]:
        """Kinds of the contract's energy fields that the minute rollups hold (they feed the hours)."""
        present = {r["fieldKey"] for r in self._rows(self._run_rollups([f"SHOW FIELD KEYS FROM {quote_ident(ROLLUP_NAME)}"])[0])}
        return {f: k for f, k in STORAGE_KINDS[Stream.ENERGY].items() if column(f, "count") in present}

    # -- the write side ---------------------------------------------------------------

    @staticmethod
    def minutes_of(samples: Sequence[StoredSample]) -> set[tuple[str, int]]:
        return {(s.camper, minute_of(s.ts_ms)) for s in samples if s.stream == Stream.ENERGY}

    def rollup(self, now: datetime | None) -> int:
        """See Store.rollup: rounds of up to MARKS_PER_ROUND minutes and RANGES_PER_ROUND day
        spans, until nothing marked before this call started is left; then the hours of
        what was folded (and any other dirty hour). Returns minute points written."""
        ready = ready_ms(now)
        self._catch_up()
        self._catch_up_hours()
        skipped = self.journal.forget_pruned()
        if skipped:
            log.warning("%d minutes got energy samples older than the raw retention: not folded, their rollups kept", skipped)
        kinds = self._energy_kinds()
        version = self.journal.version()
        written = 0
        while True:
            marks = self.journal.due(ready, version, MARKS_PER_ROUND)
            spans = self.journal.range_work(ready, RANGE_SPAN_MS, RANGES_PER_ROUND)
            if not marks and not spans:
                break
            by_camper: dict[str, list[int]] = defaultdict(list)
            for camper, minute, _ in marks:
                by_camper[camper].append(minute)
            intervals = [(c, lo, hi) for c, minutes in by_camper.items() for lo, hi in minute_runs(minutes)] + spans
            read_version = self.journal.version()
            written += self._fold(intervals, kinds)
            self.journal.clear(marks)
            self.journal.advance(spans, read_version)
        self._fold_hours()
        return written

    def _fold_hours(self) -> None:
        """Recompute the dirty hours (marked before this started) from their minute points,
        HOURS_PER_ROUND per round."""
        version = self.journal.version()
        kinds: dict[str, str] | None = None
        while marks := self.journal.due_hours(version, HOURS_PER_ROUND):
            if kinds is None:
                kinds = self._rollup_kinds()
            by_camper: dict[str, list[int]] = defaultdict(list)
            for camper, hour, _ in marks:
                by_camper[camper].append(hour)
            intervals = [(c, lo, hi) for c, hours in by_camper.items() for lo, hi in minute_runs(hours, HOUR_MS)]
            self._fold_hour_intervals(intervals, kinds)
            self.journal.clear_hours(marks)

    def _catch_up_hours(self) -> None:
        """On a journal's first rollup with the hour tier: mark every hour from each camper's
        newest hour point (or its first minute point) to its newest minute point."""
        if self.journal.hours_caught_up():
            return
        campers = self._campers_of(ROLLUP_NAME, rollups=True)
        for batch in _chunks(campers, STATEMENTS_PER_REQUEST // 3):
            newest_hour = self._newest_rollups(batch, HOUR_ROLLUP_NAME)
            first_minute = self._newest_rollups(batch, ROLLUP_NAME, "ASC")
            last_minute = self._newest_rollups(batch)
            for camper in batch:
                if camper not in last_minute:
                    continue
                lo = newest_hour.get(camper, hour_of(first_minute[camper]))
                hours = [(camper, h) for h in range(lo, hour_of(last_minute[camper]) + 1, HOUR_MS)]
                for part in _chunks(hours, 10_000):
                    self.journal.mark_hours(part)
        self.journal.set_hours_caught_up()

    def _fold_hour_intervals(self, intervals: list[tuple[str, int, int]], kinds: dict[str, str]) -> int:
        """Recompute the hours of ``intervals`` (camper, from, to) from the minute points, write
        them, then re-mark those whose minute counts changed meanwhile. Hour points written."""
        if not kinds:
            return 0
        selected = ", ".join(
            f"{_READ_FN[c]}({quote_ident(column(f, c))}) AS {quote_ident(column(f, c))}" for f, k in kinds.items() for c in COMPONENTS[k]
        )
        where = [
            f'FROM "{ROLLUP_NAME}" WHERE "camper" = {quote_literal(c)} AND time >= {_ns(lo)} AND time < {_ns(hi)} GROUP BY time(1h) fill(none)'
            for c, lo, hi in intervals
        ]
        folded: dict[tuple[str, int], dict[str, int]] = {}
        lines = []
        for (camper, _, _), result in zip(intervals, self._run_rollups([f"SELECT {selected} {w}" for w in where])):
            for row in self._rows(result):
                line, counts = _rollup_line(camper, row, kinds, HOUR_ROLLUP_NAME)
                if counts:
                    folded[(camper, row["time"])] = counts
                    lines.append(line)
        for batch in _chunks(lines, LINES_PER_WRITE):
            self.store._write_lines(list(batch), "ms", db=self.database)
        recount = ", ".join(f"SUM({quote_ident(column(f, 'count'))}) AS {quote_ident(f)}" for f in kinds)
        changed = set()
        for (camper, lo, hi), result in zip(intervals, self._run_rollups([f"SELECT {recount} {w}" for w in where])):
            now = {(camper, r["time"]): {f: int(n) for f in kinds if (n := r.get(f))} for r in self._rows(result)}
            before = {k: v for k, v in folded.items() if k[0] == camper and lo <= k[1] < hi}
            changed.update(k for k in now.keys() | before.keys() if now.get(k, {}) != before.get(k, {}))
        if changed:
            log.info("%d energy hours changed while they were recomputed: marked to fold again", len(changed))
            self.journal.mark_hours(changed)
        return len(lines)

    def _catch_up(self) -> None:
        """On a journal's first rollup: a range per camper from its newest rollup minute (or
        its first raw minute) to its newest raw minute, found from the data itself."""
        if self.journal.caught_up():
            return
        campers = self._campers_of("energy")
        for batch in _chunks(campers, STATEMENTS_PER_REQUEST // 2):
            where = [f'FROM "energy" WHERE "camper" = {quote_literal(c)}' for c in batch]
            ends = self._run([f"SELECT * {w} ORDER BY time {order} LIMIT 1" for w in where for order in ("ASC", "DESC")])
            newest = self._newest_rollups(batch)
            for i, camper in enumerate(batch):
                first, last = self._rows(ends[2 * i]), self._rows(ends[2 * i + 1])
                if not first or not last:
                    continue
                lo = newest[camper] + MINUTE_MS if camper in newest else minute_of(first[0]["time"])
                hi = minute_of(last[0]["time"]) + MINUTE_MS
                if lo < hi:
                    self.journal.add_range(camper, lo, hi)
        self.journal.set_caught_up()

    def _fold(self, intervals: list[tuple[str, int, int]], kinds: dict[str, str]) -> int:
        """Recompute the minutes of ``intervals`` (camper, from, to) from raw, write them,
        then re-mark those whose raw counts changed meanwhile. Rollup points written."""
        if not kinds:
            return 0
        selected = ", ".join(f"{_FN[c]}({quote_ident(f)}) AS {quote_ident(column(f, c))}" for f, k in kinds.items() for c in COMPONENTS[k])
        where = [f'FROM "energy" WHERE "camper" = {quote_literal(c)} AND time >= {_ns(lo)} AND time < {_ns(hi)} GROUP BY time(1m) fill(none)' for c, lo, hi in intervals]
        folded: dict[tuple[str, int], dict[str, int]] = {}
        lines = []
        for (camper, _, _), result in zip(intervals, self._run([f"SELECT {selected} {w}" for w in where])):
            for row in self._rows(result):
                line, counts = _rollup_line(camper, row, kinds)
                if counts:
                    folded[(camper, row["time"])] = counts
                    lines.append(line)
        for batch in _chunks(lines, LINES_PER_WRITE):
            self.store._write_lines(list(batch), "ms", db=self.database)
        # before the caller clears the minutes' marks: their hours are never stale unmarked
        self.journal.mark_hours({(camper, hour_of(minute)) for camper, minute in folded})
        contract = FIELD_KINDS[Stream.ENERGY]
        changed = set()
        for (camper, lo, hi), result in zip(intervals, self._run([f"SELECT COUNT(*) {w}" for w in where])):
            now = {(camper, r["time"]): {f: int(n) for f in contract if (n := r.get(f"count_{f}"))} for r in self._rows(result)}
            before = {k: v for k, v in folded.items() if k[0] == camper and lo <= k[1] < hi}
            changed.update(k for k in now.keys() | before.keys() if now.get(k, {}) != before.get(k, {}))
        if changed:
            log.info("%d energy minutes changed while they were folded: marked to fold again", len(changed))
            self.journal.mark(changed)
        return len(lines)

    # -- raw retention --------------------------------------------------------------------

    def prune_raw(self, older_than: datetime) -> int:
        """See Store.prune_raw: per camper ``DELETE ... WHERE time < min(cutoff, oldest dirty
        minute)``, the samples counted by ``seq`` first (DELETE reports no count; every
        contract sample carries seq). The prune is recorded in the journal before the
        DELETE, so a crash in between only makes late data of those minutes uncounted."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        cutoff = floor_minute_ms(older_than)
        if not self._delete_works():
            return 0
        deleted = 0
        for batch in _chunks(self._campers_of("energy"), STATEMENTS_PER_REQUEST):
            limits = {}
            for camper in batch:
                dirty = self.journal.oldest_dirty(camper)
                limits[camper] = cutoff if dirty is None else min(cutoff, dirty)
            where = [f'FROM "energy" WHERE "camper" = {quote_literal(c)} AND time < {_ns(limit)}' for c, limit in limits.items()]
            deleted += sum(int(r["count"]) for res in self._run([f'SELECT COUNT("seq") {w}' for w in where]) for r in self._rows(res))
            for camper, limit in limits.items():
                self.journal.set_pruned(camper, limit)
            self._run([f"DELETE {w}" for w in where])
        return deleted

    def prune_positions(self, older_than: datetime) -> int:
        """See Store.prune_positions: per camper ``DELETE FROM "position" WHERE "camper" = ...
        AND time < older_than``, the positions counted by ``seq`` first (DELETE reports no
        count; every contract sample carries seq). No journal: positions have no rollups."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        if not self._delete_works():
            return 0
        cutoff = ns(older_than)
        deleted = 0
        for batch in _chunks(self._campers_of("position"), STATEMENTS_PER_REQUEST):
            where = [f'FROM "position" WHERE "camper" = {quote_literal(c)} AND time < {cutoff}' for c in batch]
            deleted += sum(int(r["count"]) for res in self._run([f'SELECT COUNT("seq") {w}' for w in where]) for r in self._rows(res))
            self._run([f"DELETE {w}" for w in where])
        return deleted

    def _delete_works(self) -> bool:
        """Probe DELETE once (a statement that deletes nothing); without it, say so once."""
        if self._delete_supported is None:
            try:
                self._run(['DELETE FROM "energy" WHERE time < 0'])
                self._delete_supported = True
            except (StoreRejected, StoreUnavailable) as exc:
                if not _NO_DELETE.search(str(exc)):
                    raise
                log.info(
                    "InfluxDB at %s does not support DELETE through the v1 API (%s): raw energy and position retention "
                    "are left to the database's retention policy or bucket retention; rollups in %r are kept",
                    self.store.url_without_credentials, exc, self.database,
                )
                self._delete_supported = False
        return self._delete_supported

    # -- the read side ----------------------------------------------------------------

    def horizon(self, camper: str, now: datetime, hours: bool = False) -> tuple[int | None, int | None]:
        """Folded horizons of the camper (epoch ms): of the minute tier (None while it has no
        rollup at all) and, when ``hours``, of the hour tier (None while it has no hour)."""
        measurements = [ROLLUP_NAME, HOUR_ROLLUP_NAME] if hours else [ROLLUP_NAME]
        results = self._run_rollups(
            [f"SELECT * FROM {quote_ident(m)} WHERE \"camper\" = {quote_literal(camper)} ORDER BY time DESC LIMIT 1" for m in measurements]
        )
        newest = [rows[0]["time"] if (rows := self._rows(r)) else None for r in results]
        if newest[0] is None:
            return None, None
        dirty = self.journal.oldest_dirty(camper)
        minutes = min(newest[0] + MINUTE_MS, floor_minute_ms(now), *(() if dirty is None else (dirty,)))
        if not hours or newest[1] is None:
            return minutes, None
        return minutes, min(hour_horizon(minutes, self.journal.oldest_dirty_hour(camper)), newest[1])

    def buckets(
        self, camper: str, wanted: list[str], start: datetime, end: datetime, every: timedelta, aggregate: str, measurement: str = ROLLUP_NAME
    ) -> list[list[Any]]:
        """[bucket start ms, one value per field] from a rollup tier, buckets with any value only.

        When ``every`` is the tier's own period (a minute of ``energy_1m``, an hour of
        ``energy_1h``), each point is a bucket: its components are selected as they are,
        without GROUP BY time(), which InfluxDB answers several times faster (a year of
        hours: 8,760 buckets, each an iterator step of its own)."""
        parts = PARTS[aggregate]
        names = [column(f, p) for f in wanted for p in parts]
        where = f"WHERE \"camper\" = {quote_literal(camper)} AND time >= {ns(start)} AND time < {ns(end)}"
        if every == (HOUR if measurement == HOUR_ROLLUP_NAME else MINUTE):
            q = f"SELECT {', '.join(quote_ident(n) for n in names)} FROM {quote_ident(measurement)} {where}"
        else:
            selected = ", ".join(f"{_READ_FN[n.rsplit('__', 1)[1]]}({quote_ident(n)}) AS {quote_ident(n)}" for n in names)
            q = f"SELECT {selected} FROM {quote_ident(measurement)} {where} GROUP BY time({every // timedelta(seconds=1)}s) fill(none)"
        out = []
        for series in self._run_rollups([q])[0].get("series", []):
            at = {c: i for i, c in enumerate(series["columns"])}
            none = len(series["columns"])  # a component the answer lacks reads as None
            if aggregate == "mean":
                pairs = [(at.get(column(f, "sum"), none), at.get(column(f, "count"), none)) for f in wanted]
                for r in series.get("values") or []:
                    r = [*r, None]
                    values = [_mean(r[i], r[j]) for i, j in pairs]
                    if any(v is not None for v in values):
                        out.append([r[0], *values])
            else:
                idx = [at.get(column(f, aggregate), none) for f in wanted]
                for r in series.get("values") or []:
                    r = [*r, None]
                    values = [r[i] for i in idx]
                    if any(v is not None for v in values):
                        out.append([r[0], *values])
        return out

    def campers(self) -> list[str]:
        return self._campers_of(ROLLUP_NAME, rollups=True)

    def close(self) -> None:
        self.journal.close()


def _mean(total: Any, count: Any) -> float | None:
    return None if total is None or not count else total / count


def _rollup_line(camper: str, row: dict[str, Any], kinds: dict[str, str], measurement: str = ROLLUP_NAME) -> tuple[str, dict[str, int]]:
    """The line of one rollup point and its count per field. Each component typed as its raw
    field (JSON gives 70 for 70.0): a type conflict would refuse the point. Contract field
    names and camper ids need no escaping; a year's fold writes 525,600 of these lines."""
    parts, counts = [], {}
    for f, kind in kinds.items():
        count = row.get(f"{f}__count")
        if not count:
            continue
        counts[f] = int(count)
        for comp in COMPONENTS[kind]:
            v = row.get(f"{f}__{comp}")
            if v is None:
                continue
            if comp == "count" or kind == "int":
                parts.append(f"{f}__{comp}={int(v)}i")
            elif kind == "real":
                parts.append(f"{f}__{comp}={float(v)!r}")
            elif kind == "bool":
                parts.append(f"{f}__{comp}={'true' if v else 'false'}")
            else:
                parts.append(f'{f}__{comp}="{str(v).translate(ESCAPE_STRING)}"')
    return f"{measurement},camper={camper} {','.join(parts)} {row['time']}", counts
