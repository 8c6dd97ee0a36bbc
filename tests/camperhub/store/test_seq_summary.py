"""Conformance of Store.seq_summary on both backends (camperhub/store/base.py is the spec).

The answer is compared with a brute-force reference computed here from the
samples themselves, on hand-made cases (gaps, folds, device faults, restarts,
a window whose first sample continues or breaks from the one before it) and on
random ones, against SQLite and a real InfluxDB 1.x.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from camperhub.contract import Stream
from camperhub.store import base
from camperhub.store.base import Store, StoredSample, StoreRejected
from tests.camperhub.store.test_conformance import at, smp

E = Stream.ENERGY
T0 = 1_777_896_000_000  # 2026-05-04T12:00:00Z
H = 3_600_000




def energy(ts: int, seq: int, *, n: int | None = None, data: bool = True, camper: str = "van-1", **fields: Any) -> StoredSample:
    """An energy sample as the ingest stores it; ``data=False`` is a poll cycle in which no device answered."""
    if data and not fields:
        fields = {"battery_voltage_v": 13.1, "pv_power_w": 12.5}
    return smp(E, ts, camper, seq=seq, **({"readings_n": n} if n else {}), **(fields if data else {}))


def reference(samples: Sequence[StoredSample], edges: Sequence[int]) -> tuple[list[tuple[int, int]], list[tuple[Any, ...]]]:
    """What seq_summary must answer, from the samples themselves (the spec in base.py, brute force)."""
    rows = sorted(samples, key=lambda s: s.ts_ms)
    counts = []
    for lo, hi in zip(edges, edges[1:]):
        inside = [s for s in rows if lo <= s.ts_ms < hi]
        counts.append((len(inside), sum(1 for s in inside if set(s.fields) - {"seq", "readings_n"})))
    breaks = []
    prev: StoredSample | None = None
    for s in rows:
        if edges[0] <= s.ts_ms < edges[-1]:
            n = s.fields.get("readings_n")
            if prev is None or s.fields["seq"] != prev.fields["seq"] + 1 or n:
                breaks.append((s.ts_ms, s.fields["seq"], n or 1, None if prev is None else prev.fields["seq"], None if prev is None else prev.ts_ms))
        if s.ts_ms < edges[-1]:
            prev = s
    return counts, breaks


def check(store: Store, samples: Sequence[StoredSample], edges: Sequence[int], camper: str = "van-1") -> base.SeqSummary:
    got = store.seq_summary(camper, E, [at(e) for e in edges])
    want_counts, want_breaks = reference([s for s in samples if s.camper == camper], edges)
    p = got.periods
    assert list(p.columns) == ["samples", "with_data"] and p.index.name == "time" and str(p.index.tz) == "UTC"
    assert p.index.as_unit("ms").asi8.tolist() == list(edges[:-1])
    assert all(p[c].dtype == "int64" for c in p.columns)
    assert list(zip(p["samples"].tolist(), p["with_data"].tolist())) == want_counts
    b = got.breaks
    assert list(b.columns) == ["seq", "readings_n", "prev_seq", "prev_time"] and b.index.name == "time" and str(b.index.tz) == "UTC"
    assert str(b["seq"].dtype) == "int64" and str(b["readings_n"].dtype) == "int64" and str(b["prev_seq"].dtype) == "Int64"
    assert str(b["prev_time"].dtype) == "datetime64[ms, UTC]"
    rows = [
        (t, int(r.seq), int(r.readings_n), None if pd.isna(r.prev_seq) else int(r.prev_seq), None if pd.isna(r.prev_time) else int(r.prev_time.value // 1_000_000))
        for t, r in zip(b.index.as_unit("ms").asi8.tolist(), b.itertuples())
    ]
    assert rows == want_breaks
    return got


def test_an_unbroken_run_has_one_break_its_first_sample(store: Store) -> None:
    samples = [energy(T0 + i * 5000, 100 + i) for i in range(50)]
    store.write(samples)
    got = check(store, samples, [T0 - H, T0, T0 + H])
    assert got.periods["samples"].tolist() == [0, 50] and len(got.breaks) == 1
    assert got.breaks["seq"].tolist() == [100] and got.breaks["prev_seq"].isna().all() and got.breaks["prev_time"].isna().all()


def test_gaps_folds_faults_and_restarts(store: Store) -> None:
    samples = [
        energy(T0, 1), energy(T0 + 5000, 2),
        energy(T0 + 10_000, 3, data=False),  # no device answered
        energy(T0 + 15_000, 10),  # 4..9 missing
        energy(T0 + 60_000, 22, n=12),  # a folded minute: 11..22
        energy(T0 + 120_000, 40, n=12),  # folded, and 23..28 missing
        energy(T0 + 125_000, 41, n=3, data=False),  # folded poll cycles without data, overlapping the one before
        energy(T0 + 130_000, 1),  # a restart (the camper lost its queue file)
        energy(T0 + 135_000, 2, controller_temp_c=30.0),  # data only in a field no witness covers
        energy(T0 + 140_000, 3, shore_power=False),  # only a bool
        energy(T0 + 145_000, 4, charge_state="float"),  # only a text
        energy(T0 + 150_000, 5, data=False),
    ]
    store.write(samples)
    got = check(store, samples, [T0, T0 + 60_000, T0 + 2 * H])
    assert got.periods["samples"].tolist() == [4, 8] and got.periods["with_data"].tolist() == [3, 6]
    assert got.breaks["seq"].tolist() == [1, 10, 22, 40, 41, 1]


def test_the_first_sample_of_a_window_is_compared_with_the_one_before_it(store: Store) -> None:
    samples = [energy(T0 + i * 5000, 7 + i) for i in range(10)] + [energy(T0 + H + i * 5000, 30 + i) for i in range(5)]
    store.write(samples)
    assert check(store, samples, [T0 + 20_000, T0 + 40_000]).breaks.empty  # seq 11 follows 10 from before the window
    got = check(store, samples, [T0 + H, T0 + 2 * H])  # 30 after 16: a jump from the sample before the window
    assert got.breaks["prev_seq"].tolist() == [16] and got.breaks["prev_time"].tolist() == [at(T0 + 45_000)]
    check(store, samples, [T0 + 45_000, T0 + H + 1])  # last of a run, then the first of the next, in a window


def test_a_fold_that_goes_on_by_one_still_breaks_and_knows_its_predecessor(store: Store) -> None:
    samples = [energy(T0, 1), energy(T0 + 5000, 2, data=False), energy(T0 + 60_000, 3, n=12)]
    store.write(samples)
    got = check(store, samples, [T0, T0 + H])
    assert got.breaks["seq"].tolist() == [1, 3] and got.breaks["prev_time"].iloc[1] == at(T0 + 5000)


def test_periods_are_all_there_and_need_not_be_whole_hours(store: Store) -> None:
    samples = [energy(T0 + i * 60_000, i + 1, data=i % 7 != 3) for i in range(180)]  # three hours, a fault every 7 minutes
    store.write(samples)
    edges = [T0 - 2 * H, T0 - H, T0 + 25 * 60_000, T0 + 90 * 60_000 + 30_000, T0 + 3 * H, T0 + 5 * H]
    got = check(store, samples, edges)
    assert got.periods["samples"].tolist() == [0, 25, 66, 89, 0]


@pytest.mark.parametrize("local_day", ["2026-03-29", "2026-10-25"])
def test_local_days_across_daylight_saving_changes(store: Store, local_day: str) -> None:
    rome = ZoneInfo("Europe/Rome")
    day = datetime.fromisoformat(local_day)
    edges = [int((day + timedelta(days=k)).replace(tzinfo=rome).timestamp() * 1000) for k in range(-1, 3)]
    samples = [energy(t, i + 1 + (i > 24 * 12 + 100) * 9) for i, t in enumerate(range(edges[0], edges[-1], 5 * 60_000))]  # a jump on the day
    store.write(samples)
    got = check(store, samples, edges)
    hours = 23 if local_day.endswith("03-29") else 25
    assert got.periods["samples"].tolist() == [24 * 12, hours * 12, 24 * 12]
    assert got.breaks["seq"].tolist() == [1, 399] and got.breaks.index[1].tz_convert(rome).date() == day.date()


def test_other_streams_and_campers_stay_apart(store: Store) -> None:
    events = [smp(Stream.EVENT, T0 + i * 1000, seq=s, kind="button") for i, s in enumerate([5, 6, 9])]
    samples = [energy(T0 + i * 5000, i + 1) for i in range(10)] + [energy(T0 + 2500, 500, camper="van-2")]
    store.write([*events, *samples])
    got = store.seq_summary("van-1", Stream.EVENT, [at(T0), at(T0 + H)])
    assert got.periods["samples"].tolist() == [3] and got.periods["with_data"].tolist() == [3]
    assert got.breaks["seq"].tolist() == [5, 9] and got.breaks["prev_seq"].tolist()[1] == 6
    check(store, samples, [T0, T0 + H])
    check(store, samples, [T0, T0 + H], camper="van-2")
    empty = check(store, samples, [T0, T0 + H], camper="nobody")
    assert empty.periods["samples"].tolist() == [0] and empty.breaks.empty


def test_a_replayed_batch_changes_nothing(store: Store) -> None:
    samples = [energy(T0 + i * 5000, i + 1 + (i > 20) * 5, n=12 if i == 30 else None) for i in range(40)]
    store.write(samples)
    before = store.seq_summary("van-1", E, [at(T0), at(T0 + H)])
    store.write(samples[10:35])
    after = check(store, samples, [T0, T0 + H])
    pd.testing.assert_frame_equal(before.periods, after.periods)
    pd.testing.assert_frame_equal(before.breaks, after.breaks)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_match_the_reference(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    samples, seq, ts = [], rng.randint(1, 10**6), T0 - H
    for _ in range(600):
        ts += rng.choice([1000, 5000, 5000, 5000, 60_000, 7 * 60_000])
        kind = rng.random()
        if kind < 0.05:
            seq += rng.randint(2, 40)  # a gap
        elif kind < 0.07:
            seq = rng.randint(1, 50)  # a restart
        else:
            seq += 1
        n = rng.randint(2, 12) if rng.random() < 0.05 else None
        if n:
            seq += n - 1
        data = rng.random() > 0.08
        fields = rng.choice([{}, {"controller_temp_c": 31.5}, {"battery_voltage_v": 12.9}, {"charge_state": "bulk", "shore_power": True}])
        samples.append(energy(ts, seq, n=n, data=data, **(fields if data else {})))
    store.write(samples)
    span = ts - T0 + H
    for parts in (1, 3, 7):
        edges = [T0 - H + span * k // parts for k in range(parts + 1)]
        edges[-1] += 1
        check(store, samples, edges)
    check(store, samples, [T0 + span // 3, T0 + span // 2])


def test_too_many_breaks_ask_for_a_shorter_window(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write([energy(T0 + i * 5000, 3 * i + 1) for i in range(8)])  # every sample a jump
    monkeypatch.setattr(base, "MAX_ROWS", 5)
    with pytest.raises(StoreRejected, match="shorter window"):
        store.seq_summary("van-1", E, [at(T0), at(T0 + H)])
    assert len(store.seq_summary("van-1", E, [at(T0), at(T0 + 25_000)]).breaks) == 5


def test_bad_edges_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="two edges"):
        store.seq_summary("van-1", E, [at(T0)])
    with pytest.raises(ValueError, match="increasing"):
        store.seq_summary("van-1", E, [at(T0), at(T0)])
    with pytest.raises(ValueError, match="aware"):
        store.seq_summary("van-1", E, [datetime(2026, 5, 4), datetime(2026, 5, 5)])


def test_pruned_raw_answers_no_samples(store: Store) -> None:
    """Documented in base.py: seq accounting reads raw only; the report marks such days itself."""
    samples = [energy(T0 + i * 5000, i + 1) for i in range(24)]
    store.write(samples)
    store.rollup(now=at(T0 + H))
    assert store.prune_raw(at(T0 + 2 * 60_000)) == 24
    got = store.seq_summary("van-1", E, [at(T0), at(T0 + H)])
    assert got.periods["samples"].tolist() == [0] and got.breaks.empty
    assert store.series("van-1", E, ["seq"], at(T0), at(T0 + H), every=timedelta(minutes=1), aggregate="count")["seq"].sum() == 24  # the rollups


def test_edges_may_be_in_any_timezone(store: Store) -> None:
    samples = [energy(T0 + i * 5000, i + 1) for i in range(12)]
    store.write(samples)
    rome = ZoneInfo("Europe/Rome")
    got = store.seq_summary("van-1", E, [at(T0).astimezone(rome), at(T0 + 30_000).astimezone(rome), at(T0 + H).astimezone(UTC)])
    assert got.periods["samples"].tolist() == [6, 6] and str(got.periods.index.tz) == "UTC"
