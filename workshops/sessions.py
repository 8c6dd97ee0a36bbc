"""Workshop sessions: the leader starts and stops one; the platform recaps it.

A session is a window ``[started, stopped)`` of one camper, opened by the GPIO
workshop button, the kiosk or the API, with an unguessable share token
(``secrets.token_urlsafe``) that makes its recap readable by link only.

Kept in a small SQLite file (``CAMPERHUB_SESSIONS_PATH``, default
``var/sessions.sqlite``) the way :class:`camperhub.schedule_io.ScheduleRepository`
keeps schedules: a connection per call, so it is safe from the API's threads.
At most one session per camper is open (a partial unique index says so, so
two racing starts cannot both open one). Starting while one is open answers
the open one (idempotent: a double tap on the kiosk does not split the
workshop); stopping when none is open raises :class:`NoOpenSession` (the API's
409).

The button: the edge publishes an ``event`` sample with ``kind: "button"`` for
each press, and a press toggles the session (start when none is open, else
stop). Why the toggle is derived from the *stored* events
(:meth:`SessionRepository.sync_buttons`) and not from the API's live MQTT
listener:

* the ingest acknowledges a message only after the store accepted it, and the
  edge replays its queue in order, so the store is the complete, ordered
  record of presses; the API's live listener keeps no persistent session and
  misses every press made while the API is down or restarting;
* several API processes may run at once: each would see the live message;
* a press delivered twice (at-least-once: same camper and ``seq``) lands once
  in the store, and the repository also remembers every applied
  ``(camper, seq)`` in the same transaction as the toggle it caused, so no
  re-read, second process or replay toggles twice.

The API syncs a camper's presses whenever its sessions are read or changed
(the kiosk polls its session state), so a press shows up on the next look;
the session's times are the presses' own timestamps (when the button was
pressed, not when the message arrived). Presses older than the look-back
(7 days) when they first reach the store are not applied.
"""

from __future__ import annotations

import secrets
import sqlite3
import time as _time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from camperhub.contract import Stream
from camperhub.store.base import Store

StartedBy = Literal["button", "kiosk", "api"]
SOURCES: tuple[str, ...] = ("button", "kiosk", "api")
#: The kiosk's start/stop control, served by the API at /workshop/session.js.
SESSION_JS = Path(__file__).parent / "templates" / "session.js"
#: How far back :meth:`SessionRepository.sync_buttons` reads the stored button events.
BUTTON_LOOKBACK = timedelta(days=7)


class SessionSettings(BaseSettings):
    """Where sessions are kept and the kiosk's key (``CAMPERHUB_*``)."""

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_", extra="ignore")

    sessions_path: Path = Field(default=Path("var/sessions.sqlite"), description="SQLite file of the workshop sessions")
    kiosk_key: SecretStr | None = Field(
        default=None, min_length=16,
        description="Shared secret of the workshop kiosk (header X-Kiosk-Key): lets it start and stop sessions without a staff token",
    )


class NoOpenSession(LookupError):
    """Stop was asked while the camper has no open session."""


@dataclass(frozen=True)
class Session:
    """One workshop session; times UTC (aware); ``stopped`` None while it is open."""

    id: int
    camper: str
    started: datetime
    stopped: datetime | None
    started_by: str
    stopped_by: str | None
    share_token: str

    @property
    def open(self) -> bool:
        return self.stopped is None

    def end(self, now: datetime) -> datetime:
        """Where the session's window ends: its stop, or ``now`` while it is open."""
        return self.stopped if self.stopped is not None else max(now, self.started)


def _ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError(f"time {t!r} has no timezone (sessions keep UTC)")
    return int(t.timestamp() * 1000)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


_COLUMNS = "id, camper, started_ms, stopped_ms, started_by, stopped_by, share_token"


def _row(r: tuple) -> Session:  # type: ignore[type-arg]
    return Session(r[0], r[1], _dt(r[2]), _dt(r[3]), r[4], r[5], r[6])  # type: ignore[arg-type]


class SessionRepository:
    """Workshop sessions and the button presses already applied, in one SQLite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else SessionSettings().sessions_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS session ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, camper TEXT NOT NULL,"
                " started_ms INTEGER NOT NULL, stopped_ms INTEGER, started_by TEXT NOT NULL, stopped_by TEXT,"
                " share_token TEXT NOT NULL UNIQUE)"
            )
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS one_open ON session(camper) WHERE stopped_ms IS NULL")
            db.execute("CREATE INDEX IF NOT EXISTS by_camper ON session(camper, started_ms)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS button_press ("
                " camper TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL, applied_ms INTEGER NOT NULL,"
                " PRIMARY KEY (camper, seq))"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: check-then-act (is one open?) without a race between processes."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _open(db: sqlite3.Connection, camper: str) -> Session | None:
        r = db.execute(f"SELECT {_COLUMNS} FROM session WHERE camper = ? AND stopped_ms IS NULL", (camper,)).fetchone()
        return None if r is None else _row(r)

    @staticmethod
    def _check_source(by: str) -> None:
        if by not in SOURCES:
            raise ValueError(f"started/stopped by {by!r} is not one of {', '.join(SOURCES)}")

    def _start(self, db: sqlite3.Connection, camper: str, by: str, at: datetime) -> tuple[Session, bool]:
        current = self._open(db, camper)
        if current is not None:
            return current, False
        token = secrets.token_urlsafe(18)
        cur = db.execute(
            "INSERT INTO session (camper, started_ms, started_by, share_token) VALUES (?, ?, ?, ?)",
            (camper, _ms(at), by, token),
        )
        return Session(int(cur.lastrowid or 0), camper, _dt(_ms(at)), None, by, None, token), True  # type: ignore[arg-type]

    def _stop(self, db: sqlite3.Connection, camper: str, by: str, at: datetime) -> Session:
        current = self._open(db, camper)
        if current is None:
            raise NoOpenSession(f"camper {camper!r} has no open workshop session")
        stopped_ms = max(_ms(at), _ms(current.started))  # a clock a little behind must not make a negative session
        db.execute("UPDATE session SET stopped_ms = ?, stopped_by = ? WHERE id = ?", (stopped_ms, by, current.id))
        return Session(current.id, camper, current.started, _dt(stopped_ms), current.started_by, by, current.share_token)

    def start(self, camper: str, by: str, at: datetime) -> tuple[Session, bool]:
        """Open a session at ``at``; when one is open already, that one. ``(session, created)``."""
        self._check_source(by)
        with self._write() as db:
            return self._start(db, camper, by, at)

    def stop(self, camper: str, by: str, at: datetime) -> Session:
        """Close the open session at ``at``; :class:`NoOpenSession` when none is open."""
        self._check_source(by)
        with self._write() as db:
            return self._stop(db, camper, by, at)

    def press_button(self, camper: str, seq: int, at: datetime) -> Session | None:
        """Apply one button press (toggle); None when this ``(camper, seq)`` was applied before.

        The press is remembered in the same transaction as its toggle: a crash
        between the two cannot make a replay toggle again, nor lose the toggle.
        """
        with self._write() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO button_press (camper, seq, ts_ms, applied_ms) VALUES (?, ?, ?, ?)",
                (camper, seq, _ms(at), int(_time.time() * 1000)),
            )
            if cur.rowcount == 0:
                return None
            if self._open(db, camper) is None:
                return self._start(db, camper, "button", at)[0]
            return self._stop(db, camper, "button", at)

    def sync_buttons(self, store: Store, camper: str, now: datetime, lookback: timedelta = BUTTON_LOOKBACK) -> int:
        """Apply the camper's stored button presses of the last ``lookback`` not applied yet,
        in time order; the number applied. Store errors propagate (the API maps them)."""
        frame = store.series(camper, Stream.EVENT, ["seq", "kind"], now - lookback, now + timedelta(seconds=1))
        if frame.empty:
            return 0
        presses = frame[frame["kind"] == "button"].sort_index()
        applied = 0
        for ts, row in presses.iterrows():
            if row["seq"] != row["seq"]:  # NaN: a sample without seq cannot be deduplicated
                continue
            if self.press_button(camper, int(row["seq"]), ts.to_pydatetime()) is not None:
                applied += 1
        return applied

    def current(self, camper: str) -> Session | None:
        """The camper's open session, or None."""
        with closing(self._connect()) as db:
            return self._open(db, camper)

    def list(self, camper: str, limit: int = 50) -> list[Session]:
        """The camper's sessions, newest first."""
        with closing(self._connect()) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM session WHERE camper = ? ORDER BY started_ms DESC, id DESC LIMIT ?", (camper, limit)
            ).fetchall()
        return [_row(r) for r in rows]

    def by_token(self, share_token: str) -> Session | None:
        """The session a share token opens, or None."""
        with closing(self._connect()) as db:
            r = db.execute(f"SELECT {_COLUMNS} FROM session WHERE share_token = ?", (share_token,)).fetchone()
        return None if r is None else _row(r)
