"""The audit log of staff reads of position history (ARCHITECTURE.md §10; ``CAMPERHUB_AUDIT_PATH``).

Why a log at all: where a camper was is where the people it served were; the
staff may look, but every look is written down: who (the token's *name*, never
the token nor its hash), what, when, which camper, which window, from where.

Why an append-only SQLite table: one row per read, written in its own
transaction *before* the positions are read (a read that cannot be audited is
refused with 503, "fail closed"); triggers refuse UPDATE and DELETE, so the
API process cannot rewrite history through this module or a stray query. The
file is created 0600 like the token file. Same house pattern as
:class:`camperhub.api.auth.TokenStore`: one connection per call, safe from
the API's threads.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, who TEXT NOT NULL, role TEXT NOT NULL,"
    " action TEXT NOT NULL, camper TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, client TEXT)",
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)


class AuditError(Exception):
    """The audit line could not be written: the read it stands for must not happen."""


@dataclass(frozen=True)
class AuditEntry:
    """One audited read (times UTC)."""

    at: datetime
    who: str
    role: str
    action: str
    camper: str
    start: datetime
    end: datetime
    client: str | None

    def public(self) -> dict[str, object]:
        d = asdict(self)
        for k in ("at", "start", "end"):
            d[k] = d[k].isoformat().replace("+00:00", "Z")
        return d


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class AuditLog:
    """Append-only audit rows in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            with closing(self._connect()) as db, db:
                for stmt in _SCHEMA:
                    db.execute(stmt)
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot open the audit log {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def record(self, entry: AuditEntry) -> None:
        """Append one row; AuditError when it could not be written."""
        try:
            with closing(self._connect()) as db, db:
                db.execute(
                    "INSERT INTO audit (at_ms, who, role, action, camper, start_ms, end_ms, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (_ms(entry.at), entry.who, entry.role, entry.action, entry.camper, _ms(entry.start), _ms(entry.end), entry.client),
                )
        except sqlite3.Error as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc

    def entries(self, camper: str | None = None, since: datetime | None = None, limit: int = 500) -> list[AuditEntry]:
        """Newest first, at most ``limit``; optionally one camper's, or only those at or after ``since``."""
        clauses, args = [], []
        if camper:
            clauses.append("camper = ?")
            args.append(camper)
        if since is not None:
            clauses.append("at_ms >= ?")
            args.append(_ms(since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with closing(self._connect()) as db:
            rows = db.execute(
                f"SELECT at_ms, who, role, action, camper, start_ms, end_ms, client FROM audit {where} ORDER BY id DESC LIMIT ?",
                (*args, int(limit)),
            ).fetchall()
        return [AuditEntry(_dt(a), w, r, act, c, _dt(s), _dt(e), cl) for a, w, r, act, c, s, e, cl in rows]
