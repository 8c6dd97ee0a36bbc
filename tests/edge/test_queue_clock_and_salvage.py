"""The durable queue's clock handling (undated rows, restamp, earlier boots) and its corrupt-file salvage."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from camperhub.contract import READINGS_LOST_EVENT, ReadingsLost, Stream
from camperhub.edge.queue import DurableQueue
from tests.edge.offline_helpers import T0_MS, energy


def _lease_all(q: DurableQueue, stream: Stream = Stream.ENERGY) -> list:
    return q.lease(stream, 0, 10_000, 10**9)


def test_undated_readings_wait_and_are_restamped_from_time_since_boot(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite", boot_id="boot-a")
    for i in range(5):  # taken in 1970 by the wall clock, 1 s apart since boot
        q.put(Stream.ENERGY, energy(i, 1000 * i), undated=("boot-a", 60_000 + 1000 * i))
    q.flush(now_ms=T0_MS)
    assert _lease_all(q) == [], "not sent before the clock is trusted"
    assert q.depth == 5
    offset = T0_MS - 60_000  # the GPS said: boot was at T0 - 60 s
    q.restamp("boot-a", offset)
    q.put(Stream.ENERGY, energy(5, T0_MS + 5000), undated=("boot-a", 65_000))  # pending while trusted: dated on commit too
    q.flush(now_ms=T0_MS + 6000)
    rows = _lease_all(q)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.ts for r in rows] == [T0_MS + 1000 * i for i in range(6)], "the right UTC time, from time since boot"
    q.close()


def test_undated_readings_of_an_earlier_boot_are_removed_counted_and_announced(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite", boot_id="boot-a")
    q.put(Stream.ENERGY, energy(0, T0_MS), undated=None)
    for i in range(1, 4):
        q.put(Stream.ENERGY, energy(i, 1000 * i), undated=("boot-a", 1000 * i))
    q.close()  # power off before the clock was ever trusted

    q = DurableQueue(tmp_path / "q.sqlite", boot_id="boot-b")
    q.flush(now_ms=T0_MS)
    assert [r.seq for r in q.all_rows(Stream.ENERGY)] == [1], "the dated reading stays"
    assert q.stats(T0_MS)["queue_unsynced"] == 3
    (event,) = [r.sample() for r in q.all_rows(Stream.EVENT)]
    assert event["kind"] == READINGS_LOST_EVENT
    assert ReadingsLost.model_validate_json(event["detail"]) == ReadingsLost(stream="energy", reason="unsynced", seq_first=2, seq_last=4, n=3)
    q.close()


def _filled(path: Path, n: int) -> None:
    q = DurableQueue(path)
    for i in range(n):
        q.put(Stream.ENERGY, energy(i, T0_MS + 1000 * i))
    q.flush(now_ms=T0_MS)
    q.close()


def test_a_truncated_queue_file_keeps_what_it_can_and_quarantines_the_rest(tmp_path: Path):
    path = tmp_path / "q.sqlite"
    _filled(path, 3000)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    q = DurableQueue(path)
    assert q.salvage is not None and q.notice and "corrupt" in q.notice and str(q.salvage.quarantined) in q.notice
    assert q.salvage.quarantined.exists() and q.salvage.quarantined.stat().st_size == size // 2, "kept for a person to look at"
    kept = [r.seq for r in q.all_rows(Stream.ENERGY)]
    assert 0 < len(kept) < 3000 and kept == sorted(kept)
    assert set(kept) <= set(range(1, 3001))
    assert q.put(Stream.ENERGY, energy(1, T0_MS)) > max(kept), "seq never goes back"
    q.flush(now_ms=T0_MS)
    q.close()
    assert DurableQueue(path).salvage is None, "the fresh file is sound"


def test_a_garbage_queue_file_starts_fresh_and_says_so(tmp_path: Path):
    path = tmp_path / "q.sqlite"
    path.write_bytes(os.urandom(64 * 1024))
    q = DurableQueue(path)
    assert q.salvage is not None and q.salvage.rows_kept == 0
    assert "not a database" in q.notice
    assert q.put(Stream.ENERGY, energy(1, T0_MS)) == 1
    q.flush(now_ms=T0_MS)
    assert len(q.all_rows()) == 1
    q.close()


def test_an_unwritable_queue_folder_is_an_error_not_a_salvage(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    try:
        DurableQueue(blocker / "q.sqlite")
    except Exception as exc:  # noqa: BLE001 - the type is the assertion
        assert type(exc).__name__ == "QueueError" and "cannot open the queue" in str(exc)
    else:
        raise AssertionError("a queue under a file opened")
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_queue_file_from_before_the_clock_columns_is_migrated(tmp_path: Path):
    path = tmp_path / "q.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE samples (id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, seq INTEGER NOT NULL,"
        " ts INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 1, body TEXT NOT NULL);"
        f"INSERT INTO samples(stream, seq, ts, body) VALUES('energy', 7, {T0_MS}, '{{}}');"
    )
    db.commit()
    db.close()
    q = DurableQueue(path)
    assert [r.seq for r in _lease_all(q)] == [7], "old rows are dated"
    q.close()


def test_a_sent_reading_stays_until_its_receipt_and_is_resent_when_none_comes(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite")
    for i in range(10):
        q.put(Stream.ENERGY, energy(i, T0_MS + 1000 * i))
    q.flush(now_ms=T0_MS)
    rows = _lease_all(q)
    q.mark_sent(Stream.ENERGY, [(r.id, r.seq) for r in rows])  # the broker's PUBACK
    assert _lease_all(q) == [] and q.depth == 10, "kept, and not sent twice meanwhile"
    assert q.confirm(Stream.ENERGY, [(1, 3), (7, 7)]) == 4
    assert q.confirm(Stream.POSITION, [(1, 10)]) == 0, "another stream's receipt"
    q.flush(now_ms=T0_MS)
    assert [r.seq for r in q.all_rows()] == [4, 5, 6, 8, 9, 10]
    assert q.take_expired(3600) == 0
    assert q.take_expired(0) == 6, "no receipt in time: queued again"
    assert [r.seq for r in _lease_all(q)] == [4, 5, 6, 8, 9, 10]
    q.close()
