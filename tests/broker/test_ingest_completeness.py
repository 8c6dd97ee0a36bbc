"""Replays, live seq gaps and the completeness report, on real parts: a camper's messages through
Mosquitto and the ingest into SQLite and a real InfluxDB 1.x, then the report read from the store."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from camperhub import completeness as cm
from camperhub import contract
from camperhub.contract import READINGS_LOST_EVENT, ReadingsLost, Stream
from camperhub.store.base import Store, StoredSample, StoreUnavailable
from camperhub.store.sqlite import SqliteStore
from tests.broker.test_ingest import NOW_MS, _ingest, _start, _wait
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

ROME = ZoneInfo("Europe/Rome")
TOPIC = "camperhub/v1/varese-1/{}"
FIELDS = {"battery_voltage_v": 13.2, "pv_power_w": 50.5, "charge_state": "float"}




def _publish(pub: MqttTestClient, stream: str, samples: list[dict[str, Any]], camper: str = "varese-1") -> None:
    assert pub.publish(f"camperhub/v1/{camper}/{stream}", contract.encode_envelope(camper, stream, samples)).value < 0x80


def _snapshot(store: Store) -> tuple[Any, ...]:
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1)
    fields = [f for f in contract.STORAGE_KINDS[Stream.ENERGY]]
    summary = store.seq_summary("varese-1", Stream.ENERGY, [start, end])
    return (
        store.series("varese-1", Stream.ENERGY, fields, start, end),
        store.series("varese-1", Stream.EVENT, ["seq", "kind", "detail"], start, end),
        summary.periods, summary.breaks, store.latest("varese-1", Stream.ENERGY), store.dead_letters(),
    )


def test_a_replayed_envelope_changes_nothing_in_the_store(mosquitto: MosquittoBroker, store: Store) -> None:
    camper = mosquitto.add_camper("varese-1")
    ingest = _ingest(mosquitto, store)
    energy = [{"seq": i, "ts": NOW_MS - 600_000 + i * 5000, **FIELDS, "pv_power_w": float(i)} for i in range(1, 41)]
    energy[20] = {"seq": 32, "ts": energy[20]["ts"], "readings_n": 12, "battery_voltage_v": 13.0}  # a folded minute
    energy = energy[:21] + [{**s, "seq": s["seq"] + 11} for s in energy[21:]]
    events = [{"seq": 1, "ts": NOW_MS - 300_000, "kind": "button"}]
    _start(ingest)
    try:
        with MqttTestClient(mosquitto, camper) as pub:
            pub.connect()
            _publish(pub, "energy", energy)
            _publish(pub, "event", events)
            _wait(lambda: ingest.counters["acked_messages"] >= 2, 20, "the first delivery stored")
            before = _snapshot(store)
            _publish(pub, "energy", energy)  # the camper replays the whole envelope (its PUBACK was lost) ...
            _publish(pub, "energy", energy[10:25])  # ... and a part of it in another batch
            _publish(pub, "event", events)
            _wait(lambda: ingest.counters["acked_messages"] >= 5, 20, "the replays stored")
    finally:
        ingest.stop()
    after = _snapshot(store)
    for b, a in zip(before, after):
        if isinstance(b, pd.DataFrame):
            pd.testing.assert_frame_equal(b, a)
        else:
            assert b == a
    assert len(after[0]) == 40 and after[0]["readings_n"].dropna().tolist() == [12.0]
    assert ingest.counters["replayed"] == 40 + 15 + 1 and ingest.counters["seq_gaps"] == 0 and ingest.counters["dead_letters"] == 0


def test_live_seq_gaps_are_counted_and_logged_once(mosquitto: MosquittoBroker, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    camper = mosquitto.add_camper("varese-1")
    other = mosquitto.add_camper("varese-2")
    t0 = NOW_MS - 3_600_000
    store.write([StoredSample("varese-1", Stream.ENERGY, t0 + i * 5000, {"seq": i, "battery_voltage_v": 13.0}) for i in range(1, 101)])
    ingest = _ingest(mosquitto, store)
    caplog.set_level(logging.INFO, logger="camperhub.broker.ingest")

    def at(seq: int, **extra: Any) -> dict[str, Any]:
        return {"seq": seq, "ts": t0 + seq * 5000, **FIELDS, **extra}

    _start(ingest)
    try:
        with MqttTestClient(mosquitto, camper) as pub, MqttTestClient(mosquitto, other) as pub2:
            pub.connect()
            pub2.connect()
            _publish(pub, "energy", [at(s) for s in (101, 102, 103)])  # goes on from what the store holds: no gap
            _publish(pub, "energy", [at(107)])  # 104..106 missing
            _publish(pub, "energy", [at(119, readings_n=12), at(123, readings_n=3)])  # folds: 108..119 folded, 120 missing
            _publish(pub, "energy", [at(102)])  # a late replay
            _publish(pub, "energy", [{"seq": 1, "ts": t0 + 200 * 5000, **FIELDS}])  # seq restarted, with a newer reading
            _publish(pub, "energy", [{"seq": 4, "ts": t0 + 201 * 5000, **FIELDS}])  # 2..3 missing after the restart
            _publish(pub2, "energy", [{"seq": 500, "ts": t0, **FIELDS}], camper="varese-2")  # a new camper: nothing to compare
            _wait(lambda: ingest.counters["acked_messages"] >= 7, 20, "everything stored")
    finally:
        ingest.stop()
    c = ingest.counters
    assert (c["seq_gaps"], c["seq_missing"], c["replayed"], c["seq_restarts"], c["dead_letters"]) == (3, 3 + 1 + 2, 1, 1, 0)
    gaps = [r.getMessage() for r in caplog.records if "seq gap" in r.getMessage()]
    assert gaps == [
        "seq gap on varese-1/energy: 3 readings missing (seq 104..106)",
        "seq gap on varese-1/energy: 1 readings missing (seq 120..120)",
        "seq gap on varese-1/energy: 2 readings missing (seq 2..3)",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if "seq gap" in r.getMessage())
    assert store.dead_letters() == []


# -- end to end: a camper's two days through Mosquitto and the ingest, and the report ----------------

STEP = 10_000
DAY_A = date(2026, 10, 25)  # Europe/Rome falls back: a 25-hour day


def _scenario() -> tuple[list[tuple[int, int, str]], int]:
    """Every reading the camper took, (seq, ts, what became of it), from the evening before 2026-10-25
    to 12:30 on 2026-10-26 every 10 s, and the local midnight of the first day (ms). Hours count from
    that midnight (the day has 25 of them): 02:00-02:30 folded into 1-minute means, every 1000th
    reading a poll cycle without data, 10-11 lost in transit, 14-15 dropped by the camper (300 of the
    360 in its event; the other 60 unexplained), 16-16.5 removed as unsynced, 24.5-25.5 (23:30 to
    00:30 local) lost in transit, and from 12:00 on the second day still in the camper's queue."""
    start = int(datetime.combine(DAY_A, datetime.min.time(), ROME).timestamp() * 1000)
    out = [(5000, start - STEP, "data")]
    seq, ts = 5000, start
    dropped = 0
    while ts < start + (25 + 12.5) * 3_600_000:
        seq += 1
        h = (ts - start) / 3_600_000
        what = "data"
        if 2 <= h < 2.5:
            what = "fold"
        elif 10 <= h < 11 or 24.5 <= h < 25.5:
            what = "transit"
        elif 14 <= h < 15:
            what = "dropped" if dropped < 300 else "transit"
            dropped += what == "dropped"
        elif 16 <= h < 16.5:
            what = "unsynced"
        elif h >= 25 + 12:
            what = "queued"
        elif seq % 1000 == 7:
            what = "fault"
        out.append((seq, ts, what))
        ts += STEP
    return out, start


def _expected(readings: list[tuple[int, int, str]], edges: list[int]) -> list[dict[str, int]]:
    """The report the scenario must give, counted reading by reading (an oracle independent of the code):
    a missing reading belongs to the day of the next sample that arrived; a folded one to its minute's sample."""
    days = [dict.fromkeys(("taken", *cm.CAUSES), 0) for _ in edges[:-1]]
    arrived_ts = {}
    nxt = None
    for seq, ts, what in reversed(readings):
        if what in ("data", "fault") or (what == "fold" and (ts + STEP) % 60_000 == 0):
            nxt = ts
        arrived_ts[seq] = ts if what in ("data", "fault", "fold", "queued") else nxt
    for seq, ts, what in readings:
        t = arrived_ts[seq]
        day = next((i for i in range(len(days)) if edges[i] <= t < edges[i + 1]), None)
        if day is None:
            continue
        d = days[day]
        d["taken"] += 1
        if what == "fold":
            d["arrived" if (ts + STEP) % 60_000 == 0 else "folded"] += 1
        else:
            d[{"data": "arrived", "fault": "device_fault", "transit": "unknown", "queued": "offline"}.get(what, what)] += 1
    return days


def test_end_to_end_the_report_says_what_became_of_every_reading(mosquitto: MosquittoBroker, store: Store) -> None:
    camper = mosquitto.add_camper("varese-1")
    readings, start = _scenario()
    samples: list[dict[str, Any]] = []
    for seq, ts, what in readings:
        if what == "data":
            samples.append({"seq": seq, "ts": ts, **FIELDS})
        elif what == "fault":
            samples.append({"seq": seq, "ts": ts})
        elif what == "fold" and (ts + STEP) % 60_000 == 0:  # the minute's last reading: its mean goes out
            samples.append({"seq": seq, "ts": ts, "readings_n": 6, "battery_voltage_v": 13.1})
    first_of = {what: min(s for s, _, w in readings if w == what) for what in ("dropped", "unsynced")}
    last_of = {what: max(s for s, _, w in readings if w == what) for what in ("dropped", "unsynced")}
    events = [
        {"seq": 70, "ts": start + int(15.2 * 3_600_000), "kind": READINGS_LOST_EVENT,
         "detail": ReadingsLost(stream="energy", reason="dropped", seq_first=first_of["dropped"], seq_last=last_of["dropped"], n=300).model_dump_json()},
        {"seq": 71, "ts": start + int(16.6 * 3_600_000), "kind": READINGS_LOST_EVENT,
         "detail": ReadingsLost(stream="energy", reason="unsynced", seq_first=first_of["unsynced"], seq_last=last_of["unsynced"], n=180).model_dump_json()},
        {"seq": 72, "ts": start + 17 * 3_600_000, "kind": "button"},
    ]
    queued = [ts for _, ts, w in readings if w == "queued"]
    status_ts = queued[-1] + STEP
    status = {"seq": 9, "ts": status_ts, "state": "online", "queue_depth": len(queued), "oldest_queued_s": (status_ts - queued[0]) / 1000}
    ingest = _ingest(mosquitto, store)
    _start(ingest)
    published = 0
    try:
        with MqttTestClient(mosquitto, camper) as pub:
            pub.connect()
            chunks = [samples[i : i + 250] for i in range(0, len(samples), 250)]
            for k, chunk in enumerate(chunks):
                _publish(pub, "energy", chunk)
                if k == 3:
                    _publish(pub, "energy", chunks[2])  # a replay after an outage: harmless
                    published += 1
            _publish(pub, "event", events)
            _publish(pub, "status", [status])
            published += len(chunks) + 2
            _wait(lambda: ingest.counters["acked_messages"] >= published, 60, "everything stored")
    finally:
        ingest.stop()
    assert ingest.counters["seq_gaps"] == 4 and ingest.counters["seq_missing"] == 360 + 360 + 180 + 360
    assert ingest.counters["replayed"] == 250

    report = cm.completeness(store, "varese-1", DAY_A, DAY_A + timedelta(days=1), now=datetime.fromtimestamp(NOW_MS / 1000, UTC))
    edges = [int(e.timestamp() * 1000) for e in cm.day_edges(DAY_A, DAY_A + timedelta(days=1))]
    want = _expected(readings, edges)
    got = [{k: getattr(d, k) for k in ("taken", *cm.CAUSES)} for d in report.days]
    assert got == want
    a, b = report.days
    assert (a.hours, b.hours) == (25, 24)
    assert (a.dropped, a.unsynced, a.unknown, a.folded, a.gaps) == (300, 180, 360 + 60, 30 * 5, 3)
    assert (b.unknown, b.offline, b.gaps) == (360, 180, 1)  # the gap over midnight counts on the day it ended
    assert a.taken == 25 * 360 - 180 and b.taken == 12.5 * 360 + 180  # 23:30-24:00 of the first day is the second's
    assert report.total.arrived_pct == pytest.approx(100 * report.total.arrived / report.total.taken, abs=0.01)


class _LatestFailsOnce(SqliteStore):
    """A SQLite store whose first latest() fails as if the disk were busy."""

    failures = 1

    def latest(self, camper: str, stream: Stream) -> StoredSample | None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("database is locked")
        return super().latest(camper, stream)


def test_a_store_that_cannot_seed_the_seq_watch_holds_up_nothing(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    camper = mosquitto.add_camper("varese-1")
    store = _LatestFailsOnce(tmp_path / "store.sqlite")
    store.write([StoredSample("varese-1", Stream.ENERGY, NOW_MS - 100_000, {"seq": 10, "pv_power_w": 1.0})])
    ingest = _ingest(mosquitto, store)
    _start(ingest)
    try:
        with MqttTestClient(mosquitto, camper) as pub:
            pub.connect()
            _publish(pub, "energy", [{"seq": 12, "ts": NOW_MS - 90_000, **FIELDS}])  # not watched: the seed failed
            _wait(lambda: ingest.counters["acked_messages"] >= 1, 20, "the first batch stored all the same")
            _publish(pub, "energy", [{"seq": 15, "ts": NOW_MS - 80_000, **FIELDS}])  # seeded now (seq 12 from the store)
            _wait(lambda: ingest.counters["acked_messages"] >= 2, 20, "the second batch stored")
    finally:
        ingest.stop()
    assert (ingest.counters["seq_gaps"], ingest.counters["seq_missing"], ingest.counters["store_retries"]) == (1, 2, 0)
    assert store.latest("varese-1", Stream.ENERGY).fields["seq"] == 15  # type: ignore[union-attr]
    store.close()
