"""The hour tier of the energy rollups (``energy_1h``), on both backends (camperhub/store/rollup.py).

What must hold: a read of whole hours answers exactly what raw answers, whether or
not rollup() ran, for every aggregate and field kind, across gaps, late data, windows
starting inside an hour or a minute, and Rome's DST days; and the whole hours really
come from the hour tier (the minute tier removed, they still answer). SQLite: a file
from before the hour tier gets it filled by the next rollup().
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from camperhub.store import rollup
from camperhub.store.base import Store
from camperhub.store.influx import InfluxStore
from camperhub.store.rollup import HOUR_TIER, MINUTE_TIER, RAW, Segment, split_window
from camperhub.store.sqlite import SqliteStore
from camperhub.workshops.analysis import daily_totals
from tests.camperhub.store.test_conformance import DAY0, DAY_MS, E, MIN, T0, a_day, answers, assert_same, at, ms_of, smp

HOUR_MS = 3_600_000
HOURLY = [timedelta(hours=1), timedelta(hours=2), timedelta(days=1)]
#: A sample of a later day (after the windows asked): its hour is the camper's newest, so every
#: hour of the day before is one a reader takes from the hour tier (see drop_minute_tier).
LATER = smp(E, DAY0 + DAY_MS + 2 * 3_600_000, pv_power_w=1.0)


def hour_rows(store: Store, camper: str = "van-1") -> list[int]:
    """Starts (epoch ms) of the camper's points in the hour tier, read from the backend itself."""
    if isinstance(store, SqliteStore):
        return [r[0] for r in store._conn.execute("SELECT hour_ms FROM energy_1h WHERE camper = ? ORDER BY hour_ms", (camper,))]
    assert isinstance(store, InfluxStore)
    rows = store._rollups._rows(store._rollups._run_rollups([f"SELECT * FROM \"energy_1h\" WHERE \"camper\" = '{camper}'"])[0])
    return sorted(r["time"] for r in rows)


def drop_minute_tier(store: Store, camper: str = "van-1") -> int:
    """Delete the camper's per-minute rollups before its newest hour (what is left to answer
    those hours is the hour tier); that hour's start. The newest hour keeps its minutes: a
    reader uses an hour only once a newer one exists (influx_rollup.py), and InfluxDB finds
    the folded horizon from the newest minute."""
    newest = hour_rows(store, camper)[-1]
    if isinstance(store, SqliteStore):
        store._conn.execute("DELETE FROM energy_1m WHERE camper = ? AND minute_ms < ?", (camper, newest))
    else:
        assert isinstance(store, InfluxStore)
        store._rollups._run_rollups([f"DELETE FROM \"energy_1m\" WHERE \"camper\" = '{camper}' AND time < {newest * 1_000_000}"])
    return newest


# -- split_window (pure logic) ----------------------------------------------------------


def _seg(a: str, b: str, source: str) -> Segment:
    return Segment(datetime.fromisoformat(a), datetime.fromisoformat(b), source)


def test_split_window_takes_whole_hours_from_the_hour_tier_and_the_rest_from_minutes_or_raw() -> None:
    d = "2026-05-04T"
    start, end = datetime.fromisoformat(d + "10:30:30+00:00"), datetime.fromisoformat(d + "16:45:00+00:00")
    horizon = int(datetime.fromisoformat(d + "16:20:00+00:00").timestamp() * 1000)
    hours = int(datetime.fromisoformat(d + "15:00:00+00:00").timestamp() * 1000)
    got = split_window(start, end, timedelta(hours=1), horizon, hours)
    assert got == [
        _seg(d + "10:30:30+00:00", d + "11:00:00+00:00", RAW),  # the first bucket starts inside a minute
        _seg(d + "11:00:00+00:00", d + "15:00:00+00:00", HOUR_TIER),
        _seg(d + "15:00:00+00:00", d + "16:00:00+00:00", MINUTE_TIER),  # not yet recomputed as an hour
        _seg(d + "16:00:00+00:00", d + "16:45:00+00:00", RAW),  # after the folded horizon
    ]
    # a window starting inside an hour (on a minute): that bucket from the minute tier
    got = split_window(datetime.fromisoformat(d + "10:30:00+00:00"), end, timedelta(hours=1), horizon, hours)
    assert [s.source for s in got] == [MINUTE_TIER, HOUR_TIER, MINUTE_TIER, RAW]
    assert got[0].start == datetime.fromisoformat(d + "10:30:00+00:00") and got[0].end == datetime.fromisoformat(d + "11:00:00+00:00")
    # whole minutes that are not whole hours never use the hour tier; no hour horizon: none either
    assert all(s.source != HOUR_TIER for s in split_window(start, end, timedelta(minutes=15), horizon, hours))
    assert all(s.source != HOUR_TIER for s in split_window(start, end, timedelta(hours=1), horizon, None))
    # a daily bucket partly inside the window: its part is whole hours, so the hour tier serves it
    day = split_window(datetime.fromisoformat("2026-03-28T23:00:00+00:00"), datetime.fromisoformat("2026-03-29T22:00:00+00:00"),
                       timedelta(days=1), horizon, hours)
    assert [s.source for s in day] == [HOUR_TIER]


def test_hour_horizon_is_the_minute_horizon_floored_and_before_the_oldest_dirty_hour() -> None:
    assert rollup.hour_horizon(T0 + 90 * MIN, None) == T0 + HOUR_MS
    assert rollup.hour_horizon(T0 + 90 * MIN, T0) == T0
    assert rollup.hour_horizon(T0 + 90 * MIN, T0 + 5 * HOUR_MS) == T0 + HOUR_MS


# -- both backends ------------------------------------------------------------------------


def test_whole_hours_and_days_answer_what_raw_answers_and_come_from_the_hour_tier(store: Store) -> None:
    samples = a_day()  # every kind of field, fields missing here and there, an empty hour (05:00-06:00)
    store.write(samples)
    store.write([LATER])
    raw = answers(store, DAY0, DAY0 + DAY_MS, HOURLY)  # nothing folded: every bucket from raw
    assert len(raw[(timedelta(hours=1), "count")]) == 23  # the empty hour is absent, not a zero
    assert store.rollup() == 1440 - 60 + 1  # minutes written (the hours are counted apart)
    assert hour_rows(store) == [DAY0 + h * HOUR_MS for h in range(24) if h != 5] + [LATER.ts_ms]
    for key, frame in answers(store, DAY0, DAY0 + DAY_MS, HOURLY).items():
        assert_same(frame, raw[key], key)
    assert store.prune_raw(at(DAY0 + DAY_MS)) == len(samples)
    drop_minute_tier(store)  # whole hours still answer, from the hour tier alone
    for key, frame in answers(store, DAY0, DAY0 + DAY_MS, HOURLY).items():
        assert_same(frame, raw[key], key)
    assert store.series("van-1", E, ["pv_power_w"], at(DAY0), at(DAY0 + DAY_MS), every=timedelta(minutes=15)).empty


def test_late_data_refolds_its_hour(store: Store) -> None:
    store.write([smp(E, T0 + i * 10_000, pv_power_w=10.0, charge_state="bulk") for i in range(2 * 360)])  # two hours
    store.write([LATER])
    store.rollup()
    store.write([smp(E, T0 + 70 * MIN + 500, pv_power_w=1000.0, charge_state="float"), smp(E, T0 + 2 * HOUR_MS - 1, pv_power_w=0.5)])
    want = answers(store, T0, T0 + 2 * HOUR_MS, HOURLY)  # minute 70 is dirty: the second hour from raw
    assert want[(timedelta(hours=1), "max")]["pv_power_w"].tolist() == [10.0, 1000.0]
    assert want[(timedelta(hours=1), "last")]["charge_state"].tolist() == ["bulk", "bulk"]
    assert store.rollup() == 2  # minutes 70 and 119 again, whole, from raw; then their hour
    assert store.prune_raw(at(T0 + 2 * HOUR_MS)) == 2 * 360 + 2
    drop_minute_tier(store)
    for key, frame in answers(store, T0, T0 + 2 * HOUR_MS, HOURLY).items():
        assert_same(frame, want[key], key)


def test_windows_starting_inside_an_hour_or_a_minute_answer_the_same_before_and_after_rollup(store: Store) -> None:
    store.write(a_day(T0, minutes=300))
    windows = [(T0 + 30 * MIN, T0 + 270 * MIN), (T0 + 30 * MIN + 7500, T0 + 290 * MIN - 2500), (T0 + 59 * MIN, T0 + 300 * MIN)]
    before = {w: answers(store, *w, HOURLY) for w in windows}
    assert store.rollup(now=at(T0 + 200 * MIN + 5000)) == 200  # the horizon inside an hour (03:20)
    for w in windows:
        for key, frame in answers(store, *w, HOURLY).items():
            assert_same(frame, before[w][key], (w, key))
    assert store.rollup() == 100
    for w in windows:
        for key, frame in answers(store, *w, HOURLY).items():
            assert_same(frame, before[w][key], (w, key))


def test_a_local_dst_day_reads_whole_from_hours(store: Store) -> None:
    """Europe/Rome's 23-hour day (2026-03-29): UTC hours are unaffected; the day's buckets and
    the analysis of a long window (read at one hour) count exactly its 23 hours."""
    lo, hi = int(datetime(2026, 3, 28, 20, tzinfo=UTC).timestamp() * 1000), int(datetime(2026, 3, 30, 2, tzinfo=UTC).timestamp() * 1000)
    store.write([smp(E, ts, pv_power_w=100.0, load_power_w=40.0, shore_power=False) for ts in range(lo, hi, 30_000)])
    day_start, day_end = datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC)  # local midnights
    raw = {a: store.series("van-1", E, ["pv_power_w"], day_start, day_end, every=timedelta(days=1), aggregate=a) for a in ("sum", "count")}
    assert store.rollup() == (hi - lo) // MIN
    for a in ("sum", "count"):
        got = store.series("van-1", E, ["pv_power_w"], day_start, day_end, every=timedelta(days=1), aggregate=a)  # type: ignore[arg-type]
        assert_same(got, raw[a], a)
    assert raw["count"]["pv_power_w"].sum() == 23 * 120  # two UTC days' parts: 1 h + 22 h
    store.prune_raw(at(hi))
    drop_minute_tier(store)
    days = {d.day: d for d in daily_totals(store, "van-1", date(2026, 3, 1), date(2026, 4, 10))}  # 41 days: read at one hour
    assert days[date(2026, 3, 29)].pv_wh == pytest.approx(100.0 * 23) and days[date(2026, 3, 29)].coverage_pct == 100.0
    assert days[date(2026, 3, 29)].load_wh == pytest.approx(40.0 * 23)


def test_two_processes_folding_at_once_end_exact(store: Store) -> None:
    """Writers and folds in threads over the same hours: every hour ends exact."""
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(40):
                store.write([smp(E, T0 + (2 * i + k) * MIN, pv_power_w=float(100 * k + i))])  # 80 minutes
                if i % 5 == k:
                    store.rollup()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    want = answers(store, T0, T0 + 2 * HOUR_MS, [timedelta(hours=1)])
    store.write([LATER])
    store.rollup()
    store.prune_raw(at(T0 + 2 * HOUR_MS))
    drop_minute_tier(store)
    for key, frame in answers(store, T0, T0 + 2 * HOUR_MS, [timedelta(hours=1)]).items():
        assert_same(frame, want[key], key)
    assert want[(timedelta(hours=1), "count")]["seq"].tolist() == [60.0, 20.0]


# -- migration of a store from before the hour tier -----------------------------------------


def test_sqlite_file_from_before_the_hour_tier_gets_its_hours_on_the_next_rollup(tmp_path: Path) -> None:
    path = tmp_path / "minutes.sqlite"
    with SqliteStore(path) as s:
        s.write([*a_day(T0, minutes=300), LATER])
        want = answers(s, T0, T0 + 300 * MIN, HOURLY)
        assert s.rollup() == 301
    with sqlite3.connect(path) as c:  # back to the layout before the hour tier (schema version 2 as well)
        c.execute("DROP TABLE energy_1h")
        c.execute("DROP TABLE dirty_hour")
    c.close()
    with SqliteStore(path) as s:
        assert hour_rows(s) == []
        assert s._conn.execute("SELECT COUNT(*) FROM dirty_hour").fetchone()[0] == 15  # 12:00 to 02:00, marked at migration
        for key, frame in answers(s, T0, T0 + 300 * MIN, HOURLY).items():  # until rollup(): minute tier
            assert_same(frame, want[key], key)
        assert s.rollup() == 0  # no minute to fold; the hours are computed
        assert hour_rows(s) == [T0 + h * HOUR_MS for h in range(5)] + [LATER.ts_ms]
        s.prune_raw(at(T0 + 300 * MIN))
        drop_minute_tier(s)
        for key, frame in answers(s, T0, T0 + 300 * MIN, HOURLY).items():
            assert_same(frame, want[key], key)


def test_influx_journal_new_to_the_hour_tier_computes_the_hours_from_the_minutes(influx_store: InfluxStore) -> None:
    store = influx_store
    store.write([*a_day(T0, minutes=180), LATER])
    want = answers(store, T0, T0 + 180 * MIN, HOURLY)
    assert store.rollup() == 181
    # as before the hour tier: no hour points, a journal that never caught the hours up
    store._rollups._run_rollups(['DROP MEASUREMENT "energy_1h"'])
    with store._rollups.journal._tx("test") as c:
        c.execute("DELETE FROM meta WHERE key = 'hours_caught_up'")
        c.execute("DELETE FROM dirty_hour")
    for key, frame in answers(store, T0, T0 + 180 * MIN, HOURLY).items():
        assert_same(frame, want[key], key)
    assert store.rollup() == 0
    assert hour_rows(store) == [T0 + h * HOUR_MS for h in range(3)] + [LATER.ts_ms]
    store.prune_raw(at(T0 + 180 * MIN))
    drop_minute_tier(store)
    for key, frame in answers(store, T0, T0 + 180 * MIN, HOURLY).items():
        assert_same(frame, want[key], key)


def test_campers_hours_do_not_mix(store: Store) -> None:
    store.write([smp(E, T0 + i * 20_000, camper="van-1", pv_power_w=1.0) for i in range(180)])
    store.write([smp(E, T0 + i * 20_000, camper="van-2", pv_power_w=2.0) for i in range(90)])
    store.write([smp(E, T0 + HOUR_MS, camper=c, pv_power_w=0.5) for c in ("van-1", "van-2")])  # a newer hour
    store.rollup()
    store.prune_raw(at(T0 + 2 * HOUR_MS))
    for camper in ("van-1", "van-2"):
        assert drop_minute_tier(store, camper) == T0 + HOUR_MS
    for camper, value, n in (("van-1", 1.0, 180.0), ("van-2", 2.0, 90.0)):
        frame = store.series(camper, E, ["pv_power_w"], at(T0), at(T0 + HOUR_MS), every=timedelta(hours=1), aggregate="sum")
        assert ms_of(frame) == [T0] and frame["pv_power_w"].tolist() == [value * n]


def test_first_and_last_of_an_hour_skip_the_minutes_without_the_field(store: Store) -> None:
    """first/last of an hour: the value of the earliest/latest minute that has the field, not
    of the hour's first/last minute (which lack it here)."""
    samples = [smp(E, T0 + m * MIN + 1000, pv_power_w=float(m)) for m in range(60)]
    samples += [smp(E, T0 + 1 * MIN + 2000, battery_soc_pct=50.0, charge_state="bulk", shore_power=True)]
    samples += [smp(E, T0 + 30 * MIN + 2000, battery_soc_pct=60.0, charge_state="float", shore_power=False)]
    store.write([*samples, LATER])
    fields = ["pv_power_w", "battery_soc_pct", "charge_state", "shore_power"]
    raw = {a: store.series("van-1", E, fields, at(T0), at(T0 + HOUR_MS), every=timedelta(hours=1), aggregate=a) for a in ("first", "last", "count")}
    store.rollup()
    store.prune_raw(at(T0 + HOUR_MS))
    drop_minute_tier(store)
    for a, want in raw.items():
        assert_same(store.series("van-1", E, fields, at(T0), at(T0 + HOUR_MS), every=timedelta(hours=1), aggregate=a), want, a)  # type: ignore[arg-type]
    assert raw["first"].iloc[0].tolist() == [0.0, 50.0, "bulk", True]
    assert raw["last"].iloc[0].tolist() == [59.0, 60.0, "float", False]
