"""The durable queue (edge/queue.py) and the queued publisher (edge/outbox.py), on a real Mosquitto."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from camperhub.contract import ReadingsLost, Stream
from camperhub.edge.config import MqttSettings, QueueConfig
from camperhub.edge.outbox import QueuedPublisher
from camperhub.edge.queue import DurableQueue
from tests.edge.offline_helpers import T0_MS, DurableSubscriber, energy, samples
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient


def _fill(q: DurableQueue, n: int, step_ms: int = 1000, start: int = T0_MS) -> list[int]:
    seqs = [q.put(Stream.ENERGY, energy(i, start + i * step_ms)) for i in range(n)]
    q.flush(now_ms=start + n * step_ms)
    return seqs


def test_seq_is_committed_with_the_readings_and_survives_a_reopen(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite")
    assert _fill(q, 3) == [1, 2, 3]
    assert q.next(Stream.STATUS) == 1
    q.put(Stream.ENERGY, energy(9, T0_MS))  # taken, never committed: a "power cut" below
    q._db.close()  # noqa: SLF001 - simulate the cut: no flush
    q = DurableQueue(tmp_path / "q.sqlite")
    assert [r.seq for r in q.all_rows()] == [1, 2, 3]
    assert q.put(Stream.ENERGY, energy(4, T0_MS + 4000)) == 4, "the lost reading's seq was never sent"
    assert q.next(Stream.STATUS) == 2
    q.close()


def test_lease_ack_flush_deletes_only_acknowledged_rows_in_order(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite")
    _fill(q, 120)
    first = q.lease(Stream.ENERGY, 0, 50, 16 * 1024)
    assert [r.seq for r in first] == list(range(1, 51))
    second = q.lease(Stream.ENERGY, first[-1].id, 50, 300)
    assert 1 <= len(second) < 50 and second[0].seq == 51, "the byte limit cuts the batch"
    q.ack([r.id for r in first])
    assert q.lease(Stream.ENERGY, 0, 5, 16 * 1024)[0].seq == 51, "acked rows are never leased again"
    q.release([r.id for r in second])
    q.flush(now_ms=T0_MS)
    assert q.depth == 70 and q.counters["acked"] == 50
    q.close()


def test_over_budget_old_readings_fold_into_minutes_then_drop(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite", max_bytes=4096)
    _fill(q, 300)  # five minutes at 1 Hz, ~30 KB
    rows = q.all_rows()
    assert len(rows) == 5 and q.counters["folded"] == 295
    assert [r.seq for r in rows] == [60, 120, 180, 240, 300], "the folded sample keeps the seq of the minute's last reading"
    first = rows[0].sample()
    assert first["battery_cycles"] == round(sum(range(60)) / 60) and first["charge_state"] == "bulk" and first["shore_power"] is True
    assert abs(first["battery_voltage_v"] - sum(12.5 + (i % 10) / 10 for i in range(60)) / 60) < 1e-3
    assert q.stats(T0_MS + 300_000)["queue_folded"] == 295
    q.close()

    q = DurableQueue(tmp_path / "q.sqlite", max_bytes=300)  # everything is folded: only dropping is left
    q.flush(now_ms=T0_MS)
    assert q.counters["folded"] == 295 and q.counters["dropped"] >= 1, "counters persisted and grown"
    assert len(q.all_rows(Stream.ENERGY)) + q.counters["folded"] + q.counters["dropped"] == 300, "nothing leaves without a counter"
    events = [r.sample() for r in q.all_rows(Stream.EVENT)]
    assert events and all(e["kind"] == "alarm_readings_lost" for e in events), "and the server is told"
    lost = [ReadingsLost.model_validate_json(e["detail"]) for e in events]
    assert sum(x.n for x in lost) == 300 - sum(abs(r.n) for r in q.all_rows(Stream.ENERGY)), "in readings: a folded row stands for its minute"
    assert {x.reason for x in lost} == {"dropped"} and lost[0].seq_first == 60
    q.close()


def test_age_budget(tmp_path: Path):
    q = DurableQueue(tmp_path / "q.sqlite", max_age_s=120)
    _fill(q, 300)  # now = T0 + 300 s: the first three minutes are too old
    stats = q.stats(T0_MS + 300_000)
    assert stats["oldest_queued_s"] <= 120 and stats["queue_dropped"] >= 1
    assert len(q.all_rows(Stream.ENERGY)) == 2, "only the minutes over the age budget are dropped"
    assert len(q.all_rows(Stream.ENERGY)) + stats["queue_folded"] + stats["queue_dropped"] == 300
    q.close()


CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    from pathlib import Path
    from camperhub.contract import ReadingsLost, Stream
    from camperhub.edge.queue import DurableQueue
    q = DurableQueue(Path(sys.argv[1]))
    rows = q.all_rows()
    n = rows[-1].sample()["battery_cycles"] if rows else 0
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    def commits():
        while True:
            time.sleep(float(sys.argv[3]))
            q.flush()
    threading.Thread(target=commits, daemon=True).start()
    while True:
        n += 1
        q.put(Stream.ENERGY, {"ts": int(time.time() * 1000), "battery_cycles": n})
        os.write(fd, f"{n} {time.monotonic()}\\n".encode())
        time.sleep(0.001)
    """
)


def test_a_power_cut_loses_at_most_the_last_commit_interval(tmp_path: Path):
    """SIGKILL at random moments, ten times: a gap-free prefix survives, no repeat, no corrupt file."""
    path, log = tmp_path / "q.sqlite", tmp_path / "taken.log"
    interval, slack = 0.2, 0.15
    rng = random.Random(7)
    seqs_seen: list[int] = []
    for _ in range(10):
        offset = log.stat().st_size if log.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(log), str(interval)], env={**os.environ, "PYTHONPATH": os.getcwd()})
        try:
            deadline = time.monotonic() + 10
            while (not log.exists() or log.stat().st_size == offset) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.8))
            t_kill = time.monotonic()
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(5)
        with log.open() as fh:
            fh.seek(offset)
            taken = [(int(a), float(b)) for a, b in (line.split() for line in fh.read().splitlines())]
        db = sqlite3.connect(str(path))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        q = DurableQueue(path)
        rows = q.all_rows()
        q.close()
        numbers = [r.sample()["battery_cycles"] for r in rows]
        assert numbers == list(range(1, len(numbers) + 1)), "a gap-free prefix, no duplicate"
        kept, last_taken = numbers[-1] if numbers else 0, taken[-1][0]
        assert kept <= last_taken + 1  # +1: killed between put() and the log line
        lost = [t for n, t in taken if n > kept]
        assert all(t >= t_kill - interval - slack for t in lost), f"lost {len(lost)} readings older than one commit interval"
        seqs = [r.seq for r in rows]
        assert seqs == sorted(set(seqs))
        assert seqs[: len(seqs_seen)] == seqs_seen[: len(seqs)], "a committed seq is never reused"
        seqs_seen = seqs
    assert len(seqs_seen) > 100


def _publisher(camper: str, url: str, tmp: Path, **queue: object) -> QueuedPublisher:
    cfg = QueueConfig(path=tmp / "queue.sqlite", **{"delete_on": "broker", **queue})  # type: ignore[arg-type]
    return QueuedPublisher(camper, MqttSettings(url=url), cfg)


def test_a_backlog_of_10000_is_released_in_order_at_least_10x_real_time(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    q = DurableQueue(tmp_path / "queue.sqlite")
    _fill(q, 10_000)  # 10,000 s of readings at 1 Hz, taken offline
    q.close()
    with MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/energy")
        pub = _publisher("varese-1", mosquitto.url(camper), tmp_path)
        t0 = time.monotonic()
        pub.start()
        try:
            sub.pump_until(lambda: len(samples(sub.messages, "varese-1")) >= 10_000, 60, "the whole backlog")
            elapsed = time.monotonic() - t0
        finally:
            pub.stop()
    got = samples(sub.messages, "varese-1")
    assert [s["seq"] for s in got] == list(range(1, 10_001)), "in order, exactly once"
    rate = 10_000 / elapsed
    print(f"replayed 10,000 readings in {elapsed:.2f} s: {rate:.0f} readings/s = {rate:.0f}x real time at 1 Hz")
    assert rate >= 10
    assert max(len(m.payload) for m in sub.messages) <= 16 * 1024 + 512
    q = DurableQueue(tmp_path / "queue.sqlite")
    assert q.depth == 0 and q.counters["acked"] == 10_000
    q.close()


def test_a_refused_publish_stays_queued_and_is_counted(mosquitto: MosquittoBroker, tmp_path: Path):
    creds = mosquitto.add_camper("varese-1")
    mosquitto.add_camper("varese-2")
    # varese-1's credentials, publishing under varese-2's prefix: MQTT 5 PUBACK 135
    pub = _publisher("varese-2", mosquitto.url(creds), tmp_path, commit_interval_s=0.1)
    pub.start()
    try:
        for i in range(5):
            pub.put(Stream.ENERGY, energy(i, T0_MS + i * 1000))
        deadline = time.monotonic() + 10
        while pub.counters["refused_samples"] < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = pub.status_fields()
    finally:
        pub.stop()
    assert pub.counters["refused_samples"] >= 10, "refused, retried after a back-off, refused again"
    assert pub.counters["delivered"] == 0
    assert "refused" in status["last_error"] and "135" in status["last_error"] or "authori" in status["last_error"]
    assert status["queue_depth"] == 5
    q = DurableQueue(tmp_path / "queue.sqlite")
    assert [r.seq for r in q.all_rows()] == [1, 2, 3, 4, 5], "still queued after the stop"
    q.close()


def test_a_broker_outage_loses_nothing(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    pub = _publisher("varese-1", mosquitto.url(camper), tmp_path, commit_interval_s=0.2)
    with DurableSubscriber(mosquitto, ingest, client_id="ingest-durable") as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/energy")
        pub.start()
        n = 0
        try:
            for _ in range(10):
                pub.put(Stream.ENERGY, energy(n, T0_MS + n * 1000))
                n += 1
            sub.pump_until(lambda: len(samples(sub.messages, "varese-1")) >= 10, 10, "before the outage")
            sub.settle()
            mosquitto.stop()
            for _ in range(20):
                pub.put(Stream.ENERGY, energy(n, T0_MS + n * 1000))
                n += 1
                time.sleep(0.05)
            assert pub.status_fields()["queue_depth"] == 20
            mosquitto.start()
            sub.reconnect()
            sub.pump_until(lambda: len(samples(sub.messages, "varese-1")) >= n, 15, "the readings of the outage")
        finally:
            pub.stop()
    assert [s["seq"] for s in samples(sub.messages, "varese-1")] == list(range(1, n + 1))
