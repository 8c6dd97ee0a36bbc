"""Alerts kept in one small SQLite file (``CAMPERHUB_ALERTS_PATH``, default ``var/alerts.sqlite``).

Why SQLite and not the telemetry store: alerts are a few rows that change
(open → updated → closed), and a restart of the alerts service must neither
lose an open alert nor announce it again; telemetry stores are append-only
series. The house pattern of :class:`camperhub.api.auth.TokenStore`: one
connection per call, so the API's threads and the service may share the file.

De-duplication is enforced by the database too: a partial unique index allows
at most one ``open`` row per (camper, kind). The debounce timers
(:class:`~camperhub.fleet.alerts_rules.Tracker`) are kept next to the alerts
and written in the same transaction, so a restart resumes them.

Read API for the fleet page and ``/api/v1/fleet/alerts``: :meth:`AlertRepository.open_alerts`,
:meth:`AlertRepository.history`, :meth:`AlertRepository.get`; each item is an
:class:`~camperhub.fleet.alerts_rules.Alert` (``.model_dump(mode="json")``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from camperhub.fleet.alerts_rules import Alert, AlertKind, Tracker, Transition

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alert ("
    " id TEXT PRIMARY KEY, camper TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL,"
    " opened_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, closed_ms INTEGER, value TEXT, unit TEXT, message TEXT NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS alert_one_open ON alert (camper, kind) WHERE state = 'open'",
    "CREATE INDEX IF NOT EXISTS alert_by_time ON alert (opened_ms)",
    "CREATE TABLE IF NOT EXISTS tracker ("
    " camper TEXT NOT NULL, kind TEXT NOT NULL, bad_since_ms INTEGER, good_since_ms INTEGER, PRIMARY KEY (camper, kind))",
)
_COLUMNS = "id, camper, kind, severity, state, opened_ms, updated_ms, closed_ms, value, unit, message"


class AlertRepository:
    """Open and closed alerts plus the debounce timers, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # camper names and faults: staff business only
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._shared: sqlite3.Connection | None = None
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            for stmt in _SCHEMA:
                db.execute(stmt)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The round's connection inside :meth:`session`, else a fresh one committed and closed."""
        if self._shared is not None:
            yield self._shared
            return
        with closing(self._connect()) as db, db:
            yield db

    @contextmanager
    def session(self) -> Iterator[None]:
        """One connection and one transaction for a whole evaluation round (this thread only).

        Why: a commit per camper is most of the cost of a round on a slow disk; WAL
        lets the API read the previous state meanwhile. On an exception the round's
        changes are rolled back together, so no camper is half-stored.
        """
        if self._shared is not None:
            yield
            return
        with closing(self._connect()) as db:
            self._shared = db
            try:
                with db:
                    yield
            finally:
                self._shared = None

    # -- reads ---------------------------------------------------------------------------
    def open_alerts(self, camper: str | None = None) -> list[Alert]:
        """Open alerts, most severe first then oldest first (what the staff look at first)."""
        where, args = ("state = 'open' AND camper = ?", (camper,)) if camper else ("state = 'open'", ())
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM alert WHERE {where} ORDER BY opened_ms", args).fetchall()
        rank = {"critical": 0, "warning": 1, "info": 2}
        return sorted((_alert(r) for r in rows), key=lambda a: rank[a.severity])

    def history(self, camper: str | None = None, since: datetime | None = None, limit: int = 500) -> list[Alert]:
        """Alerts that were open at any time since ``since`` (still open, or closed at or after it;
        every alert without ``since``), optionally of one camper, newest first, at most ``limit``."""
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be timezone-aware (UTC)")
        clauses, args = [], []
        if camper:
            clauses.append("camper = ?")
            args.append(camper)
        if since is not None:
            clauses.append("(closed_ms IS NULL OR closed_ms >= ?)")
            args.append(_ms(since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM alert {where} ORDER BY opened_ms DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [_alert(r) for r in rows]

    def get(self, alert_id: str) -> Alert | None:
        with closing(self._connect()) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM alert WHERE id = ?", (alert_id,)).fetchone()
        return _alert(row) if row else None

    def state_of(self, camper: str) -> tuple[dict[AlertKind, Alert], dict[AlertKind, Tracker]]:
        """A camper's open alerts and debounce timers by kind: one read per evaluation."""
        with self._db() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM alert WHERE state = 'open' AND camper = ?", (camper,)).fetchall()
            trows = db.execute("SELECT kind, bad_since_ms, good_since_ms FROM tracker WHERE camper = ?", (camper,)).fetchall()
        alerts = {a.kind: a for a in map(_alert, rows)}
        trackers = {AlertKind(k): Tracker(_dt(b), _dt(g)) for k, b, g in trows if k in AlertKind._value2member_map_}
        return alerts, trackers

    # -- writes --------------------------------------------------------------------------
    def apply(self, camper: str, trackers: dict[AlertKind, Tracker], transitions: list[Transition]) -> None:
        """Store a camper's evaluation in one transaction: its timers and every alert change.

        sqlite3.IntegrityError if an ``open`` would make a second open alert of a
        (camper, kind): the state machine never asks for that.
        """
        with self._db() as db:
            db.executemany(
                "INSERT INTO tracker (camper, kind, bad_since_ms, good_since_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (camper, kind) DO UPDATE SET bad_since_ms = excluded.bad_since_ms, good_since_ms = excluded.good_since_ms",
                [(camper, k.value, _ms(t.bad_since), _ms(t.good_since)) for k, t in trackers.items()],
            )
            for t in transitions:
                if t.alert is None or t.action == "none":
                    continue
                a = t.alert
                db.execute(
                    f"INSERT INTO alert ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, state = excluded.state,"
                    " updated_ms = excluded.updated_ms, closed_ms = excluded.closed_ms, value = excluded.value,"
                    " message = excluded.message",
                    (a.id, a.camper, a.kind.value, a.severity, a.state, _ms(a.opened_at), _ms(a.updated_at), _ms(a.closed_at),
                     json.dumps(a.value), a.unit, a.message),
                )


def _ms(t: datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _alert(row: tuple) -> Alert:
    aid, camper, kind, severity, state, opened, updated, closed, value, unit, message = row
    return Alert(id=aid, camper=camper, kind=AlertKind(kind), severity=severity, state=state, opened_at=_dt(opened),
                 updated_at=_dt(updated), closed_at=_dt(closed), value=json.loads(value) if value else None, unit=unit,
                 message=message)
