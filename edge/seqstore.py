"""Sequence numbers per stream, persisted across restarts (contract §4: ``seq``).

Numbers are reserved in blocks so the SD card sees one small write per block,
not one per sample: after a crash the counter jumps forward past the unused
part of the block, which keeps ``seq`` strictly increasing (gaps are allowed,
repeats are not).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from camperhub.contract import Stream

BLOCK = 1000


class SeqStore:
    """Hands out strictly increasing ``seq`` per stream, surviving restarts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seq_reserved (stream TEXT PRIMARY KEY, upto INTEGER NOT NULL)")
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._upto: dict[str, int] = {}
        for stream, upto in self._db.execute("SELECT stream, upto FROM seq_reserved"):
            self._next[stream] = upto + 1  # anything below may have been used before a crash
            self._upto[stream] = upto

    def next(self, stream: Stream) -> int:
        """The next ``seq`` for ``stream``."""
        key = stream.value
        with self._lock:
            n = self._next.get(key, 1)
            if n > self._upto.get(key, 0):
                upto = n + BLOCK - 1
                self._db.execute(
                    "INSERT INTO seq_reserved(stream, upto) VALUES(?, ?) ON CONFLICT(stream) DO UPDATE SET upto=excluded.upto",
                    (key, upto),
                )
                self._upto[key] = upto
            self._next[key] = n + 1
            return n

    def close(self) -> None:
        with self._lock:
            self._db.close()
