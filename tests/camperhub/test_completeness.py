"""Completeness report (camperhub/completeness.py): the pure accounting, then the report read
from real stores (SQLite and InfluxDB 1.x), then the ``camperhub completeness`` command."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camperhub import completeness as cm
from camperhub.cli import main
from camperhub.completeness import Break, QueueState, account, day_edges
from camperhub.contract import READINGS_LOST_EVENT, ReadingsLost, Stream
from camperhub.store.base import Store, StoredSample
from camperhub.store.sqlite import SqliteStore

DAY = 86_400_000
D0 = date(2026, 5, 4)
E0 = int(day_edges(D0, D0)[0].timestamp() * 1000)  # 2026-05-04 00:00 in Rome = 2026-05-03T22:00Z
EDGES = [E0, E0 + DAY, E0 + 2 * DAY]
STEP = 5000


def lost(first: int, last: int, n: int, reason: str = "dropped") -> ReadingsLost:
    return ReadingsLost(stream="energy", reason=reason, seq_first=first, seq_last=last, n=n)  # type: ignore[arg-type]


def queue(status_ms: int, depth: int, oldest_s: float) -> QueueState:
    return QueueState(status_time=datetime.fromtimestamp(status_ms / 1000, UTC), queue_depth=depth, oldest_queued_s=oldest_s)


def causes_add_up(days: list[dict[str, int]]) -> None:
    for d in days:
        assert d["taken"] == sum(d[c] for c in cm.CAUSES), d
        assert all(v >= 0 for v in d.values()), d


# -- the pure accounting ------------------------------------------------------------------------


def test_a_complete_day() -> None:
    days = account(EDGES, [(17_280, 17_280), (0, 0)], [Break(E0, 1001, 1, 1000, E0 - STEP)], [], None, E0 + DAY - STEP)
    causes_add_up(days)
    assert days[0] == {**dict.fromkeys(days[0], 0), "taken": 17_280, "arrived": 17_280}
    assert days[1]["taken"] == 0


def test_a_gap_nothing_explains_is_unknown_and_counts_as_taken() -> None:
    breaks = [Break(E0 + 3600_000, 2000, 1, 1499, E0 + 1800_000)]  # 500 readings between 00:30 and 01:00 never came
    days = account(EDGES, [(1000, 1000), (0, 0)], breaks, [], None, None)
    causes_add_up(days)
    assert days[0]["taken"] == 1500 and days[0]["unknown"] == 500 and days[0]["gaps"] == 1


def test_folded_samples_count_their_readings_and_make_no_gap() -> None:
    breaks = [Break(E0 + k * 60_000, 12 * (k + 1), 12, 12 * k, E0 + (k - 1) * 60_000) for k in range(1, 61)]  # an hour of 1-minute means
    days = account(EDGES, [(60, 60), (0, 0)], breaks, [], None, None)
    causes_add_up(days)
    assert days[0]["taken"] == 720 and days[0]["arrived"] == 60 and days[0]["folded"] == 660 and days[0]["unknown"] == 0


def test_a_fold_after_a_gap_is_both() -> None:
    days = account(EDGES, [(1, 1), (0, 0)], [Break(E0 + 600_000, 100, 12, 50, E0)], [], None, None)
    causes_add_up(days)
    assert (days[0]["folded"], days[0]["unknown"], days[0]["taken"]) == (11, 38, 50)


def test_device_faults_are_samples_without_data() -> None:
    days = account(EDGES, [(100, 93), (10, 10)], [], [], None, None)
    causes_add_up(days)
    assert days[0]["device_fault"] == 7 and days[0]["arrived"] == 93 and days[1]["device_fault"] == 0


def test_lost_events_explain_the_gaps_their_seq_ranges_fall_in() -> None:
    breaks = [
        Break(E0 + 1000_000, 200, 1, 99, E0 + 500_000),  # 100..199 missing
        Break(E0 + 2000_000, 400, 1, 299, E0 + 1500_000),  # 300..399 missing
        Break(E0 + DAY + 1000, 1000, 1, 899, E0 + 3000_000),  # 900..999 missing, straddling midnight: day 2
    ]
    events = [
        lost(100, 149, 50),  # the first half of gap 1
        lost(150, 160, 11, "unsynced"),
        lost(180, 320, 30),  # ends gap 1 (20 of it) and begins gap 2 (its remaining 10)
        lost(950, 2000, 5, "unsynced"),  # a range wider than its n (folded rows inside it)
        lost(100, 149, 50),  # the same event replayed: once
        lost(5000, 5100, 101),  # no gap of the window
    ]
    days = account(EDGES, [(500, 500), (500, 500)], breaks, events, None, None)
    causes_add_up(days)
    assert (days[0]["dropped"], days[0]["unsynced"], days[0]["unknown"]) == (50 + 30, 11, 200 - 50 - 11 - 30)
    assert (days[1]["unsynced"], days[1]["unknown"], days[1]["gaps"], days[0]["gaps"]) == (5, 95, 1, 2)


def test_gaps_younger_than_the_oldest_queued_reading_are_offline() -> None:
    breaks = [
        Break(E0 + 1000_000, 200, 1, 99, E0 + 500_000),  # old: before the oldest queued reading
        Break(E0 + 50_000_000, 700, 1, 599, E0 + 49_000_000),
        Break(E0 + 60_000_000, 900, 1, 799, E0 + 59_000_000),
    ]
    status = E0 + 70_000_000
    q = queue(status, depth=150, oldest_s=(status - (E0 + 40_000_000)) / 1000)  # the queue began at E0 + 40,000 s
    days = account(EDGES, [(500, 500), (0, 0)], breaks, [], q, E0 + 60_000_000)
    causes_add_up(days)
    assert days[0]["offline"] == 150 and days[0]["unknown"] == 100 + 50  # newest first: all of the last gap, half the one before


def test_the_tail_after_the_newest_sample_is_offline_spread_over_its_days() -> None:
    last = E0 + DAY - 6 * 3600_000  # 18:00 on day 1
    status = E0 + DAY + 18 * 3600_000  # 18:00 on day 2: a day later
    q = queue(status, depth=17_281, oldest_s=(status - last - STEP) / 1000)
    days = account(EDGES, [(1000, 1000), (0, 0)], [], [], q, last)
    causes_add_up(days)
    assert days[0]["offline"] + days[1]["offline"] == 17_281
    six_of_24 = (6 * 3600_000 - STEP) / (24 * 3600_000 - STEP)  # from the oldest queued reading, 5 s after the newest stored
    assert days[0]["offline"] == pytest.approx(17_281 * six_of_24, abs=1) and days[1]["taken"] == days[1]["offline"]
    stale = account(EDGES, [(1000, 1000), (0, 0)], [], [], queue(last - 1000, 500, 60), last)  # a status older than what arrived
    assert stale[0]["offline"] == stale[1]["offline"] == 0
    inside = account(EDGES, [(1000, 1000), (0, 0)], [], [], queue(E0 + DAY + 1000, 50, 0.0), last)  # nothing old queued: at the status
    assert inside[1]["offline"] == 50 and inside[0]["offline"] == 0


def test_a_queue_with_nothing_left_for_the_tail() -> None:
    q = queue(E0 + 10_000_000, 30, 9000)
    days = account(EDGES, [(10, 10), (0, 0)], [Break(E0 + 5_000_000, 100, 1, 49, E0 + 4_000_000)], [], q, E0 + 5_000_000)
    causes_add_up(days)
    assert days[0]["offline"] == 30 and days[0]["unknown"] == 20 and days[1]["taken"] == 0


def test_restarts_and_samples_with_nothing_before_count_their_own_readings_only() -> None:
    breaks = [Break(E0, 5000, 1, None, None), Break(E0 + 60_000, 12, 12, 5100, E0 + 55_000)]
    days = account(EDGES, [(200, 200), (0, 0)], breaks, [], None, None)
    causes_add_up(days)
    assert days[0]["taken"] == 211 and days[0]["folded"] == 11 and days[0]["gaps"] == 0


def test_a_fold_overlapping_what_arrived_counts_only_the_new_readings() -> None:
    days = account(EDGES, [(2, 2), (0, 0)], [Break(E0 + 60_000, 11, 12, 5, E0)], [], None, None)
    causes_add_up(days)
    assert (days[0]["taken"], days[0]["folded"]) == (7, 5)


def test_a_break_outside_the_window_is_a_bug_not_a_number() -> None:
    with pytest.raises(ValueError, match="outside"):
        account(EDGES, [(1, 1), (0, 0)], [Break(E0 - 1, 5, 1, 3, E0 - 10)], [], None, None)


@pytest.mark.parametrize(("local_day", "hours"), [("2026-03-29", 23), ("2026-10-25", 25), ("2026-05-04", 24)])
def test_local_days_across_daylight_saving_changes(local_day: str, hours: int) -> None:
    d = date.fromisoformat(local_day)
    edges = [int(e.timestamp() * 1000) for e in day_edges(d, d + timedelta(days=1))]
    assert edges[1] - edges[0] == hours * 3600_000 and edges[2] - edges[1] == 24 * 3600_000
    per_day = hours * 720  # 5-s readings
    # readings 1.. from local midnight; a gap from 23:00 to 01:00 (straddling midnight) belongs to the second day
    breaks = [Break(edges[1] + 3600_000, per_day + 721, 1, per_day - 720, edges[1] - 3600_000 - STEP)]
    days = account(edges, [(per_day - 720, per_day - 720), (24 * 720 - 720, 24 * 720 - 720)], breaks, [], None, None)
    causes_add_up(days)
    assert days[0]["taken"] == per_day - 720 and days[0]["gaps"] == 0
    assert days[1]["unknown"] == 1440 and days[1]["taken"] == 24 * 720 + 720 and days[1]["gaps"] == 1


def test_day_edges_refuse_an_end_before_the_start() -> None:
    with pytest.raises(ValueError, match="before"):
        day_edges(D0, D0 - timedelta(days=1))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2 * DAY - 1), st.integers(0, 5000), st.integers(1, 12), st.one_of(st.none(), st.integers(0, 5000))), max_size=30),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 300), st.integers(1, 400), st.sampled_from(["dropped", "unsynced"])), max_size=8),
    st.one_of(st.none(), st.tuples(st.integers(0, 3 * DAY), st.integers(0, 5000), st.integers(0, 3 * 86_400))),
    st.one_of(st.none(), st.integers(0, 2 * DAY)),
)
def test_the_causes_always_add_up_to_what_was_taken(raw_breaks: list, raw_lost: list, raw_queue: Any, last: int | None) -> None:
    breaks = sorted((Break(E0 + t, s, n, p, None if p is None else E0 + t - 1000) for t, s, n, p in raw_breaks), key=lambda b: b.ts_ms)
    events = [lost(f, f + w, n, r) for f, w, n, r in raw_lost]
    q = None if raw_queue is None else queue(E0 + raw_queue[0], raw_queue[1], raw_queue[2])
    per_day = [sum(1 for b in breaks if E0 + k * DAY <= b.ts_ms < E0 + (k + 1) * DAY) for k in range(2)]
    days = account(EDGES, [(n + 3, n + 1) for n in per_day], breaks, events, q, None if last is None else E0 + last)
    causes_add_up(days)
    if q is not None:
        assert sum(d["offline"] for d in days) <= q.queue_depth
    assert sum(d["dropped"] + d["unsynced"] for d in days) <= sum(e.n for e in {(e.seq_first, e.seq_last, e.reason, e.n): e for e in events}.values())


# -- the report from real stores ------------------------------------------------------------------




def sample(stream: Stream, ts: int, seq: int, camper: str = "van-1", **fields: Any) -> StoredSample:
    return StoredSample(camper, stream, ts, {"seq": seq, **fields})


def three_days() -> list[StoredSample]:
    """2026-05-04..06 in Rome, 5-s readings: day 1 with a poll cycle without data every 5,000 s and a folded hour;
    day 2 a 2-hour outage from 23:00 on day 1 (part dropped, part unknown); day 3 the camper
    went offline at noon and still holds the rest in its queue."""
    out: list[StoredSample] = []
    seq, ts = 1000, E0 - STEP
    out.append(sample(Stream.ENERGY, ts, seq, battery_voltage_v=13.0))  # the day before
    while ts + STEP < E0 + 3 * DAY - 12 * 3600_000:
        ts += STEP
        seq += 1
        t = ts - E0
        if 3600_000 <= t < 2 * 3600_000:  # day 1, 01:00-02:00: folded into 1-minute means
            if (t + STEP) % 60_000 == 0:
                out.append(sample(Stream.ENERGY, ts, seq, readings_n=12, battery_voltage_v=13.1))
            continue
        if DAY - 3600_000 <= t < DAY + 3600_000:  # 23:00 on day 1 to 01:00 on day 2: gone
            continue
        if t % 5000_000 == 0:  # every 5,000 s (17 a day): a poll cycle without data
            out.append(sample(Stream.ENERGY, ts, seq))
        else:
            out.append(sample(Stream.ENERGY, ts, seq, pv_power_w=100.0, charge_state="bulk"))
    return out


def test_the_report_from_a_store(store: Store) -> None:
    energy = three_days()
    first_missing = 1000 + (DAY - 3600_000) // STEP + 1  # seq of 23:00 on day 1
    events = [
        sample(Stream.EVENT, E0 + DAY + 7200_000, 1, kind=READINGS_LOST_EVENT,
               detail=lost(first_missing, first_missing + 1000 - 1, 1000).model_dump_json()),
        sample(Stream.EVENT, E0 + DAY + 7300_000, 2, kind=READINGS_LOST_EVENT, detail="not json"),  # skipped, logged
        sample(Stream.EVENT, E0 + DAY + 7400_000, 3, kind="button"),
    ]
    status_ms = E0 + 3 * DAY - 6 * 3600_000  # 18:00 on day 3, six hours after the last reading arrived
    statuses = [
        sample(Stream.STATUS, status_ms - 60_000, 7, state="online", queue_depth=4320, oldest_queued_s=6 * 3600.0 + 55),
        sample(Stream.STATUS, status_ms, 8, state="offline"),  # the Last Will: no queue figures
    ]
    store.write([*energy, *events, *statuses])
    report = cm.completeness(store, "van-1", D0, D0 + timedelta(days=3), now=datetime.fromtimestamp((E0 + 4 * DAY) / 1000, UTC))
    d1, d2, d3, d4 = report.days
    assert [d.day for d in report.days] == [D0 + timedelta(days=k) for k in range(4)]
    for d in (d1, d2, d3, d4, report.total):
        assert d.taken == sum(getattr(d, c) for c in cm.CAUSES)
    # day 1: its last hour's readings are part of the gap that ends on day 2; 16 device faults (the one at
    # 01:23:20 fell in the folded hour)
    assert (d1.taken, d1.folded, d1.device_fault, d1.gaps) == (17_280 - 720, 60 * 11, 16, 0)
    assert d1.arrived == 17_280 - 720 - 660 - 16
    # day 2: the two-hour gap (1,440 readings), 1,000 dropped by the camper, the rest unknown
    assert (d2.taken, d2.dropped, d2.unknown, d2.gaps) == (17_280 + 720, 1000, 440, 1)
    # day 3: half a day arrived, the afternoon is still on the camper (the Last Will has no figures:
    # the status before it does): 4,320 readings queued from 12:00 to 18:00
    assert d3.offline == 4320 and d3.taken == 17_280 // 2 + 4320 and d3.arrived_pct == pytest.approx(100 * d3.arrived / d3.taken, abs=0.01)
    assert d4.taken == 0 and d4.arrived_pct is None
    assert report.queue is not None and report.queue.queue_depth == 4320 and not any(d.raw_pruned for d in report.days)
    text = cm.render_text(report)
    assert "2026-05-05" in text and "dropped" in text and "4,320 readings queued" in text
    assert cm.CompletenessReport.model_validate_json(report.model_dump_json()) == report


def test_days_whose_raw_was_pruned_are_marked(store: Store) -> None:
    store.write([sample(Stream.ENERGY, E0 + i * 60_000, i + 1, pv_power_w=1.0) for i in range(2 * 1440)])
    store.rollup(now=datetime.fromtimestamp((E0 + 3 * DAY) / 1000, UTC))
    store.prune_raw(datetime.fromtimestamp((E0 + DAY + 6 * 3600_000) / 1000, UTC))  # all of day 1, a quarter of day 2
    report = cm.completeness(store, "van-1", D0, D0 + timedelta(days=1), now=datetime.fromtimestamp((E0 + 3 * DAY) / 1000, UTC))
    assert [d.raw_pruned for d in report.days] == [True, True]
    assert report.days[0].taken == 0 and report.days[1].taken == 1440 - 360
    assert "raw samples pruned" in cm.render_text(report)


# -- the command ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "influx"])
def test_the_completeness_command(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        monkeypatch.setenv("CAMPERHUB_STORE", "sqlite")
        monkeypatch.setenv("CAMPERHUB_SQLITE_PATH", str(tmp_path / "hub.sqlite"))
        target: Store = SqliteStore(tmp_path / "hub.sqlite")
    else:
        target = request.getfixturevalue("influx_store")
        server = request.getfixturevalue("influx_server")
        monkeypatch.setenv("CAMPERHUB_STORE", "influx")
        monkeypatch.setenv("CAMPERHUB_INFLUX_URL", server.url)
        monkeypatch.setenv("CAMPERHUB_INFLUX_DB", target.database)  # type: ignore[attr-defined]
        monkeypatch.setenv("CAMPERHUB_ROLLUP_JOURNAL", "")
    target.write([sample(Stream.ENERGY, E0 + i * STEP, 10 + i + (i >= 100) * 20, pv_power_w=1.0) for i in range(200)])
    if backend == "sqlite":
        target.close()
    assert main(["completeness", "van-1", "--start", "2026-05-04", "--end", "2026-05-05", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [d["day"] for d in report["days"]] == ["2026-05-04", "2026-05-05"]
    assert report["days"][0]["taken"] == 220 and report["days"][0]["unknown"] == 20 and report["days"][0]["arrived_pct"] == pytest.approx(90.91)
    assert main(["completeness", "van-1", "--start", "2026-05-04", "--end", "2026-05-04"]) == 0
    out = capsys.readouterr().out
    assert "2026-05-04" in out and "90.9%" in out and "2026-05-05" not in out


def test_the_command_refuses_what_it_cannot_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CAMPERHUB_SQLITE_PATH", str(tmp_path / "hub.sqlite"))
    monkeypatch.delenv("CAMPERHUB_STORE", raising=False)
    assert main(["completeness", "Van 1!", "--start", "2026-05-04", "--end", "2026-05-04"]) == 2
    assert "camper id" in capsys.readouterr().err
    assert main(["completeness", "van-1", "--start", "2026-05-05", "--end", "2026-05-04"]) == 2
    assert "before" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["completeness", "van-1", "--start", "4 May", "--end", "2026-05-04"])
    assert exc.value.code == 2
    monkeypatch.setenv("CAMPERHUB_STORE", "influx")  # without CAMPERHUB_INFLUX_URL
    assert main(["completeness", "van-1", "--start", "2026-05-04", "--end", "2026-05-04"]) == 78
    assert "CAMPERHUB_INFLUX_URL" in capsys.readouterr().err


def test_lost_events_are_found_among_more_events_than_one_read_may_return(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from camperhub.store import base

    events = [sample(Stream.EVENT, E0 + k * 12 * DAY, k + 1, kind="button") for k in range(12)]
    events.append(sample(Stream.EVENT, E0 + 50 * DAY + 1, 99, kind=READINGS_LOST_EVENT, detail=lost(10, 19, 10, "unsynced").model_dump_json()))
    events.append(sample(Stream.EVENT, E0 + 51 * DAY, 100, kind=READINGS_LOST_EVENT,
                         detail=ReadingsLost(stream="position", reason="dropped", seq_first=1, seq_last=2, n=2).model_dump_json()))
    store.write(events)
    monkeypatch.setattr(base, "MAX_ROWS", 5)  # more than one read may return: read 30 days at a time
    since, until = datetime.fromtimestamp(E0 / 1000, UTC), datetime.fromtimestamp((E0 + 100 * DAY) / 1000, UTC)
    assert cm.lost_readings(store, "van-1", since, until) == [lost(10, 19, 10, "unsynced")]  # energy only


def test_no_status_or_none_with_queue_figures(store: Store) -> None:
    assert cm.latest_queue(store, "van-1") is None
    store.write([sample(Stream.STATUS, E0, 1, state="offline")])
    assert cm.latest_queue(store, "van-1") is None
    store.write([sample(Stream.STATUS, E0 - 1000, 0, state="online", queue_depth=12)])  # oldest_queued_s missing: 0
    q = cm.latest_queue(store, "van-1")
    assert q is not None and (q.queue_depth, q.oldest_queued_s, q.oldest_ms) == (12, 0.0, E0 - 1000)
