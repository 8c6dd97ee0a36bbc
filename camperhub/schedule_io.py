"""Reading and keeping schedules: YAML and CSV files, and the per-camper SQLite repository.

Why a separate module: :mod:`camperhub.schedule` is the pure model the API's
PUT body is; this is the I/O around it. Every loader error names where the
problem is: ``file:line: key: message`` for YAML (through
:mod:`camperhub.yamlconf`), ``file:line: column: message`` for CSV (the line of
the row in the file, so a spreadsheet user finds it).

CSV (one row per visit, the weekly plan a spreadsheet holds)::

    stop,name,neighbourhood,address,lat,lon,radius_m,weekday,date,start,end,services
    bobbiate,Bobbiate,Bobbiate,"Via ..., Varese",45.8125,8.7890,120,tue,,09:00,12:00,energy_workshop;paperwork_help

A stop's details (name .. radius_m) are needed on its first row; later rows
of the same stop may leave them empty, and if they fill them they must agree.
``weekday`` (mon..sun) or ``date`` (YYYY-MM-DD, a one-off visit); services
separated by ``;``. Exceptions are not in the CSV: pass them in (e.g. those of
the schedule being replaced).

The repository keeps one schedule per camper as its JSON in a small SQLite
file (CAMPERHUB_SCHEDULE_PATH); a save replaces the whole schedule in one
transaction, so a reader sees the old or the new one, never a mix, and it is
there after a restart.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time as _time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from camperhub.schedule import (
    DEFER_CROSS_CHECK, PathKey, Schedule, ScheduleException, ScheduleSettings, ServiceOverride, Stop, Visit,
)
from camperhub.yamlconf import ConfigError, ConfigIssue, load_model, validate_yaml

CSV_STOP_COLUMNS = ("name", "neighbourhood", "address", "lat", "lon", "radius_m")
CSV_VISIT_COLUMNS = ("weekday", "date", "start", "end", "services")
CSV_COLUMNS = ("stop", *CSV_STOP_COLUMNS, *CSV_VISIT_COLUMNS)
_CTX = {DEFER_CROSS_CHECK: True}


def load_schedule_yaml(path: str | Path) -> Schedule:
    """Read a schedule YAML file; ConfigError lists every problem with file, line and key."""
    return load_model(Schedule, path, context=_CTX)


def parse_schedule_yaml(text: str, file: str = "<string>") -> Schedule:
    """Validate schedule YAML text (an upload); ConfigError as :func:`load_schedule_yaml`."""
    return validate_yaml(Schedule, text, file, context=_CTX)


def _issue_key(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if isinstance(p, str) and not p.startswith("function"))


def parse_schedule_csv(
    text: str, camper: str, file: str = "<string>", exceptions: Sequence[ScheduleException] = (), timezone: str = "Europe/Rome"
) -> Schedule:
    """Build a schedule from CSV text (see the module doc); ConfigError names row line and column."""
    issues: list[ConfigIssue] = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise ConfigError([ConfigIssue(file, None, "", "file is empty (expected a header row)")])
    reader.fieldnames = header
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown:
        msg = "; ".join(filter(None, [missing and f"missing columns {missing}", unknown and f"unknown columns {unknown}"]))
        raise ConfigError([ConfigIssue(file, 1, "header", f"{msg} (expected {', '.join(CSV_COLUMNS)})")])

    stops: dict[str, tuple[Stop, int]] = {}
    visits: list[Visit] = []
    visit_lines: list[int] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            issues.append(ConfigIssue(file, line, "row", f"{len(header) + len(row[None])} cells, the header has {len(header)}"))
            continue
        cells = {k: (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue
        stop_id = cells["stop"]
        given = {c: cells[c] for c in CSV_STOP_COLUMNS if cells[c]}
        if stop_id in stops:
            known = stops[stop_id][0]
            for c, v in given.items():
                same = str(getattr(known, c)) == v if c in ("name", "neighbourhood", "address") else _float_eq(getattr(known, c), v)
                if not same:
                    issues.append(ConfigIssue(file, line, c, f"{v!r} differs from stop {stop_id!r} on line {stops[stop_id][1]} ({getattr(known, c)!r})"))
        else:
            try:
                stops[stop_id] = (Stop.model_validate({"id": stop_id, **given}), line)
            except ValidationError as exc:
                issues += [ConfigIssue(file, line, _issue_key(e["loc"]) or "stop", _msg(e)) for e in exc.errors()]
        data: dict[str, Any] = {"stop": stop_id, "start": cells["start"], "end": cells["end"],
                                "services": [s.strip() for s in cells["services"].split(";") if s.strip()]}
        for c in ("weekday", "date"):
            if cells[c]:
                data[c] = cells[c].lower() if c == "weekday" else cells[c]
        try:
            visits.append(Visit.model_validate(data))
            visit_lines.append(line)
        except ValidationError as exc:
            for e in exc.errors():
                key = _issue_key(e["loc"]) or "weekday/date/start/end"
                issues.append(ConfigIssue(file, line, key, _msg(e)))
    if issues:
        raise ConfigError(issues)
    if not stops:
        raise ConfigError([ConfigIssue(file, None, "", "no rows (at least one visit is needed)")])
    try:
        schedule = Schedule.model_validate(
            {"camper": camper, "timezone": timezone, "stops": [s for s, _ in stops.values()], "visits": visits,
             "exceptions": list(exceptions)},
            context=_CTX,
        )
    except ValidationError as exc:
        raise ConfigError([ConfigIssue(file, None, _issue_key(e["loc"]), _msg(e)) for e in exc.errors()]) from exc
    stop_lines = [ln for _, ln in stops.values()]
    problems = schedule.cross_check()
    if problems:
        raise ConfigError([ConfigIssue(file, _csv_line(p, visit_lines, stop_lines), _csv_key(p), m) for p, m in problems])
    return schedule


def load_schedule_csv(path: str | Path, camper: str, exceptions: Sequence[ScheduleException] = ()) -> Schedule:
    """Read a schedule CSV file; ConfigError names the file, the row's line and the column."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # spreadsheets like to write a BOM
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"not UTF-8 text: {exc}")]) from exc
    return parse_schedule_csv(text, camper, str(p), exceptions)


def _float_eq(a: float, text: str) -> bool:
    try:
        return abs(float(text) - a) < 1e-9
    except ValueError:
        return False


def _msg(err: Any) -> str:
    ctx = err.get("ctx") or {}
    if err["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if err["type"] == "missing":
        return "required value is missing"
    return str(err["msg"])


def _csv_line(path: PathKey, visit_lines: list[int], stop_lines: list[int]) -> int | None:
    if len(path) >= 2 and path[0] == "visits" and isinstance(path[1], int):
        return visit_lines[path[1]]
    if len(path) >= 2 and path[0] == "stops" and isinstance(path[1], int):
        return stop_lines[path[1]]
    return None


def _csv_key(path: PathKey) -> str:
    if len(path) >= 3 and path[0] in ("visits", "stops"):
        return str(path[2])
    return "start/end" if path and path[0] == "visits" else ".".join(str(p) for p in path)


class ScheduleRepository:
    """Per-camper schedules in one SQLite file; a save replaces a camper's schedule atomically.

    A connection per call keeps it safe to use from the API's threads; the file
    is small (a schedule is a few KB) so the cost is negligible.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else ScheduleSettings().schedule_path
        self._parsed: dict[str, tuple[str, Schedule]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS schedule ("
                " camper TEXT PRIMARY KEY, body TEXT NOT NULL, updated_ms INTEGER NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS service_override (camper TEXT PRIMARY KEY, body TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level="DEFERRED")

    def save(self, schedule: Schedule) -> None:
        """Store ``schedule`` for its camper, replacing the one before in one transaction."""
        # re-validate: a model built with the cross-checks deferred must not be stored unchecked
        checked = Schedule.model_validate_json(schedule.model_dump_json())
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO schedule (camper, body, updated_ms) VALUES (?, ?, ?)"
                " ON CONFLICT(camper) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms",
                (checked.camper, checked.model_dump_json(), int(_time.time() * 1000)),
            )

    def get(self, camper: str) -> Schedule | None:
        """The camper's schedule, or None when it has none.

        The public location reads it on every request; validating the JSON cost more
        than the rest of the view, so the parsed schedule is kept while its stored
        text stays the same (compared whole: another process may have saved since).
        Callers must not mutate what they get.
        """
        with closing(self._connect()) as db:
            row = db.execute("SELECT body FROM schedule WHERE camper = ?", (camper,)).fetchone()
        if row is None:
            return None
        cached = self._parsed.get(camper)
        if cached is not None and cached[0] == row[0]:
            return cached[1]
        schedule = Schedule.model_validate_json(row[0])
        self._parsed[camper] = (row[0], schedule)
        return schedule

    def campers(self) -> list[str]:
        """Campers that have a schedule, sorted."""
        with closing(self._connect()) as db:
            return [r[0] for r in db.execute("SELECT camper FROM schedule ORDER BY camper")]

    def set_override(self, camper: str, override: ServiceOverride) -> None:
        """Switch the camper's public service state by hand until ``override.until_utc`` (replaces any switch)."""
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO service_override (camper, body) VALUES (?, ?) ON CONFLICT(camper) DO UPDATE SET body = excluded.body",
                (camper, override.model_dump_json()),
            )

    def override(self, camper: str) -> ServiceOverride | None:
        """The camper's staff switch (possibly expired: see :meth:`ServiceOverride.active`), or None."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT body FROM service_override WHERE camper = ?", (camper,)).fetchone()
        return None if row is None else ServiceOverride.model_validate_json(row[0])

    def clear_override(self, camper: str) -> bool:
        """Back to the schedule and the GPIO switch; True when a switch was set."""
        with closing(self._connect()) as db, db:
            return db.execute("DELETE FROM service_override WHERE camper = ?", (camper,)).rowcount > 0

    def delete(self, camper: str) -> bool:
        """Remove the camper's schedule; True when there was one."""
        with closing(self._connect()) as db, db:
            return db.execute("DELETE FROM schedule WHERE camper = ?", (camper,)).rowcount > 0
