"""What to do with a corrupt queue file: move it aside, keep what can still be read, go on.

An SD card that dies slowly, a file system repaired after a power cut, or a
person copying the wrong file can leave the queue unreadable. Refusing to
start would lose every reading from then on; starting empty would silently
throw away the backlog. So the agent moves the file aside (``<name>.corrupt-
<UTC time>``, with its ``-wal``/``-shm`` companions: kept for a person to look
at), copies every row it can still read into a fresh file, carries over the
``seq`` counters (never reuse a ``seq`` the server may have seen), and says
what it did (the queue's ``notice``, shown in status ``last_error``).

A truncated file first gets a readable copy: SQLite refuses the whole file
when its header promises more pages than there are, so the copy's header is
set to the pages that exist (the damaged file itself is left as it was).
Reading a damaged b-tree then fails where the damage is, not before: rows are read
in ``id`` order in chunks and, at a failure, the scan probes ever further ids
(1, 2, 4, ... past the last good one) until reads work again. The holes are
what is lost.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 256
_MAX_PROBE_EXP = 48
_COLUMNS = "id, stream, seq, ts, n, body, boot_id, boot_ms, dated"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _readable_copy(damaged: Path) -> Path | None:
    """A copy of ``damaged`` whose header counts only the whole pages present; None when it is no SQLite file."""
    data = bytearray(damaged.read_bytes())
    if len(data) < 100 or not data.startswith(_SQLITE_MAGIC):
        return None
    page_size = struct.unpack(">H", data[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return None
    pages = len(data) // page_size
    data[28:32] = struct.pack(">I", pages)  # "database size in pages" (file format §1.3.7)
    copy = damaged.with_name(damaged.name + ".readable")
    copy.write_bytes(bytes(data[: pages * page_size]))
    return copy


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True for damage to the file itself (not a permission, a missing folder or a full disk)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or name.startswith(("SQLITE_CORRUPT_", "SQLITE_NOTADB_")):
        return True
    return not isinstance(exc, sqlite3.OperationalError) and not name


@dataclass
class Salvage:
    """The outcome: the fresh connection, what was kept and where the damaged file went."""

    db: sqlite3.Connection
    reason: str
    quarantined: Path
    rows_kept: int
    holes: int
    seqs_recovered: bool

    def message(self) -> str:
        """One line for the log and status ``last_error``."""
        seqs = "" if self.seqs_recovered else "; seq counters unreadable, continuing after the highest seq kept"
        return (
            f"queue file was corrupt ({self.reason}): kept {self.rows_kept} queued readings, "
            f"{self.holes} unreadable stretch(es) lost{seqs}; the damaged file is at {self.quarantined}"
        )


def _read_rows(old: sqlite3.Connection) -> tuple[list[tuple[object, ...]], int]:
    """Every readable row in id order, and how many unreadable stretches were skipped."""
    rows: list[tuple[object, ...]] = []
    holes, after = 0, 0
    while True:
        try:
            chunk = old.execute(f"SELECT {_COLUMNS} FROM samples WHERE id>? ORDER BY id LIMIT ?", (after, _CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            holes += 1
            resumed = False
            for exp in range(_MAX_PROBE_EXP):
                probe = after + 2**exp
                try:
                    chunk = old.execute(f"SELECT {_COLUMNS} FROM samples WHERE id>? ORDER BY id LIMIT ?", (probe, _CHUNK)).fetchall()
                except sqlite3.DatabaseError:
                    continue
                resumed = True
                break
            if not resumed:
                return rows, holes
        if not chunk:
            return rows, holes
        rows += chunk
        after = int(chunk[-1][0])  # type: ignore[call-overload]


def _read_table(old: sqlite3.Connection, query: str) -> list[tuple[object, ...]] | None:
    try:
        return old.execute(query).fetchall()
    except sqlite3.DatabaseError:
        return None


def quarantine_and_salvage(path: Path, exc: sqlite3.DatabaseError, connect: Callable[[Path], sqlite3.Connection]) -> Salvage:
    """Move the damaged file aside, copy what can be read into a fresh queue at ``path``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    quarantined = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(quarantined) + suffix))
    rows: list[tuple[object, ...]] = []
    holes = 1
    seqs: list[tuple[object, ...]] | None = None
    counters: list[tuple[object, ...]] | None = None
    copy = _readable_copy(quarantined)
    if copy is not None:  # else not a database at all: nothing to keep
        try:
            old = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
            try:
                rows, holes = _read_rows(old)
                seqs = _read_table(old, "SELECT stream, last FROM seqs")
                counters = _read_table(old, "SELECT name, value FROM counters")
            finally:
                old.close()
        except sqlite3.DatabaseError:
            pass
        finally:
            copy.unlink(missing_ok=True)
    highest: dict[str, int] = {}
    for row in rows:
        stream, seq = str(row[1]), int(row[2])  # type: ignore[call-overload]
        highest[stream] = max(highest.get(stream, 0), seq)
    for stream, last in seqs or []:
        highest[str(stream)] = max(highest.get(str(stream), 0), int(last))  # type: ignore[call-overload]
    db = connect(path)
    db.execute("BEGIN IMMEDIATE")
    db.executemany(f"INSERT INTO samples({_COLUMNS}) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO seqs(stream, last) VALUES(?, ?)", list(highest.items()))
    db.executemany("INSERT INTO counters(name, value) VALUES(?, ?)", counters or [])
    db.execute("COMMIT")
    salvage = Salvage(db, str(exc), quarantined, len(rows), holes, seqs is not None)
    log.error("ALARM %s", salvage.message())
    return salvage
