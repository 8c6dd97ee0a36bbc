"""One conformance suite for every store backend (camperhub/store/base.py is the spec).

Each test runs against SQLite and against a real InfluxDB 1.x (fixture
``influx_store``, a fresh database per test), so analyses written over
``Store.series`` get the same frames whichever backend is configured. Tests
named ``..._sqlite_...`` at the end cover what only the SQLite backend has
(schema migration, locking, its two aggregation plans).

Times are fixed dates in 2026 (the contract refuses anything before 2020),
in epoch milliseconds, the unit of ``ts``.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from camperhub.contract import SAMPLE_MODELS, ChargeState, Stream
from camperhub.settings import StoreSettings
from camperhub.store import base, open_store
from camperhub.store import sqlite as sqlite_backend
from camperhub.store.base import AGGREGATES, DeadLetter, Store, StoredSample, StoreRejected, StoreUnavailable
from camperhub.store.sqlite import SqliteStore

E = Stream.ENERGY
MIN = 60_000
T0 = 1_777_896_000_000  # 2026-05-04T12:00:00Z, a whole hour
_seq = itertools.count(1)




def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def ms_of(frame: pd.DataFrame) -> list[int]:
    """The index as epoch ms, whatever datetime unit the backend chose."""
    return frame.index.as_unit("ms").asi8.tolist()


def smp(stream: Stream, ts: int, camper: str = "van-1", seq: int | None = None, **fields: Any) -> StoredSample:
    """A sample as the ingest stores it: validated by the contract model, ``seq`` plus the present fields."""
    m = SAMPLE_MODELS[stream](seq=next(_seq) if seq is None else seq, ts=ts, **fields)
    return StoredSample(camper, stream, ts, {"seq": m.seq, **m.fields()})


def assert_frame_shape(frame: pd.DataFrame, fields: list[str]) -> None:
    assert list(frame.columns) == fields
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC" and frame.index.name == "time"
    assert frame.index.is_monotonic_increasing


# -- write / latest ------------------------------------------------------------------


def test_round_trip_of_every_stream(store: Store) -> None:
    energy = dict(
        pv_voltage_v=38.2, pv_current_a=5.25, pv_power_w=200.5, battery_voltage_v=13.31, battery_current_a=-4.5,
        battery_power_w=-59.9, battery_soc_pct=87.5, battery_temp_c=-3.0, load_current_a=2.0, load_power_w=26.6,
        charge_state=ChargeState.ABSORPTION, pv_yield_today_wh=812.0, load_today_wh=230.0, controller_temp_c=31.0,
        shore_power=True, cell_voltage_min_v=3.301, cell_voltage_max_v=3.342, battery_cycles=312, battery_soh_pct=97.0,
    )
    written = [
        smp(E, T0, seq=7, **energy),
        smp(Stream.POSITION, T0 + 1, seq=8, lat=45.8206, lon=8.8251, alt_m=382.0, speed_kmh=0.0, course_deg=359.5, hdop=0.9, sats=9, fix=3),
        smp(Stream.STATUS, T0 + 2, seq=9, state="online", agent_version="1.2.3", uptime_s=3600.5, queue_depth=0,
            oldest_queued_s=0.0, clock="gps", in_service=False, mode="live", last_error="modbus timeout"),
        smp(Stream.EVENT, T0 + 3, seq=10, kind="alarm_low_battery", detail="SoC below 20 % — è così"),
    ]
    store.write(written)
    for s in written:
        got = store.latest("van-1", s.stream)
        assert got is not None and (got.camper, got.stream, got.ts_ms) == ("van-1", s.stream, s.ts_ms)
        assert got.fields == s.fields
        for name, value in got.fields.items():  # stored types are the contract's, not whatever JSON gave back
            expected = type(s.fields[name].value) if isinstance(s.fields[name], ChargeState) else type(s.fields[name])
            assert isinstance(value, expected) and (type(value) is bool) == (expected is bool), (name, value)
    assert store.latest("van-1", E).fields["charge_state"] == "absorption"


def test_an_integer_given_for_a_float_field_is_stored_as_float(store: Store) -> None:
    store.write([StoredSample("van-1", E, T0, {"seq": 1, "pv_power_w": 100})])
    store.write([StoredSample("van-1", E, T0 + 1000, {"seq": 2, "pv_power_w": 100.5})])  # no type conflict after an int
    first = store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 2000))
    assert first["pv_power_w"].tolist() == [100.0, 100.5] and first["pv_power_w"].dtype == np.float64


def test_latest_of_an_unknown_camper_or_empty_stream_is_none(store: Store) -> None:
    assert store.latest("nobody", E) is None
    store.write([smp(E, T0, battery_voltage_v=13.0)])
    assert store.latest("nobody", E) is None
    assert store.latest("van-1", Stream.POSITION) is None


def test_a_replayed_batch_is_stored_once(store: Store) -> None:
    batch = [smp(E, T0 + i * 5000, seq=i + 1, pv_power_w=float(i), battery_voltage_v=12.0 + i / 100) for i in range(30)]
    store.write(batch)
    before = store.series("van-1", E, ["pv_power_w", "battery_voltage_v", "seq"], at(T0), at(T0 + 10 * MIN))
    store.write(batch)
    store.write(batch[10:20])  # a partly replayed envelope
    after = store.series("van-1", E, ["pv_power_w", "battery_voltage_v", "seq"], at(T0), at(T0 + 10 * MIN))
    pd.testing.assert_frame_equal(before, after)
    assert len(after) == 30
    counted = store.series("van-1", E, ["seq"], at(T0), at(T0 + 10 * MIN), every=timedelta(minutes=10), aggregate="count")
    assert counted["seq"].tolist() == [30.0]


def test_a_rewrite_of_the_same_ts_overwrites_the_given_fields_and_keeps_the_others(store: Store) -> None:
    store.write([smp(E, T0, seq=1, battery_voltage_v=12.5, pv_power_w=100.0)])
    store.write([smp(E, T0, seq=1, battery_voltage_v=12.7)])
    got = store.latest("van-1", E)
    assert got is not None and got.fields == {"seq": 1, "battery_voltage_v": 12.7, "pv_power_w": 100.0}
    frame = store.series("van-1", E, ["battery_voltage_v", "pv_power_w"], at(T0), at(T0 + 1))
    assert len(frame) == 1 and frame.iloc[0].tolist() == [12.7, 100.0]


BAD_SAMPLES = {
    "unknown field": (StoredSample("van-1", E, T0 + 1000, {"seq": 2, "bogus_field": 1.0}), "bogus_field"),
    "text for a float": (StoredSample("van-1", E, T0 + 1000, {"seq": 2, "battery_voltage_v": "high"}), "battery_voltage_v"),
    "NaN": (StoredSample("van-1", E, T0 + 1000, {"seq": 2, "pv_power_w": math.nan}), "pv_power_w"),
    "no fields": (StoredSample("van-1", E, T0 + 1000, {}), "field"),
    "bad camper id": (StoredSample("Van 1!", E, T0 + 1000, {"seq": 2}), "camper"),
}


@pytest.mark.parametrize("case", BAD_SAMPLES)
def test_a_bad_sample_refuses_the_whole_batch(store: Store, case: str) -> None:
    bad, named = BAD_SAMPLES[case]
    with pytest.raises(StoreRejected, match=named):
        store.write([smp(E, T0, battery_voltage_v=13.0), bad])
    assert store.latest("van-1", E) is None  # all or none: the good sample is not stored either
    assert store.campers() == []


# -- raw series -------------------------------------------------------------------------


def test_raw_series_is_ordered_half_open_and_has_exactly_the_asked_columns(store: Store) -> None:
    samples = [smp(E, T0 + i * 10_000, seq=i + 1, battery_voltage_v=12.0 + i / 10, **({"pv_power_w": 10.0 * i} if i % 2 == 0 else {})) for i in range(10)]
    store.write(samples[::-1])  # written newest first: the store orders by time, not by arrival
    fields = ["pv_power_w", "battery_voltage_v", "battery_cycles"]
    frame = store.series("van-1", E, fields, at(T0 + 10_000), at(T0 + 60_000))  # [10 s, 60 s): 10..50 s
    assert_frame_shape(frame, fields)
    assert ms_of(frame) == [T0 + i * 10_000 for i in range(1, 6)]
    assert frame["battery_voltage_v"].tolist() == pytest.approx([12.1, 12.2, 12.3, 12.4, 12.5])
    assert frame["pv_power_w"].isna().tolist() == [True, False, True, False, True]
    assert frame["pv_power_w"].dropna().tolist() == [20.0, 40.0]
    assert frame["battery_cycles"].isna().all()  # never reported: a column of NaN
    assert all(frame[f].dtype == np.float64 for f in fields)
    swapped = store.series("van-1", E, ["battery_cycles", "battery_voltage_v"], at(T0), at(T0 + 2 * MIN))
    assert list(swapped.columns) == ["battery_cycles", "battery_voltage_v"] and len(swapped) == 10


def test_text_and_bool_fields_come_back_as_object_columns(store: Store) -> None:
    store.write([
        smp(E, T0, charge_state="bulk", shore_power=False),
        smp(E, T0 + 1000, charge_state="float", shore_power=True),
        smp(E, T0 + 2000, battery_voltage_v=13.0),
    ])
    frame = store.series("van-1", E, ["charge_state", "shore_power"], at(T0), at(T0 + MIN))
    assert frame["charge_state"].dtype == object and frame["shore_power"].dtype == object
    assert frame["charge_state"].tolist() == ["bulk", "float"] and frame["shore_power"].tolist() == [False, True]
    assert type(frame["shore_power"].iloc[0]) is bool


def test_an_empty_window_gives_an_empty_frame_with_the_columns(store: Store) -> None:
    fields = ["pv_power_w", "battery_voltage_v"]
    for every in (None, timedelta(minutes=1)):  # nothing stored at all
        frame = store.series("van-1", E, fields, at(T0), at(T0 + MIN), every=every)
        assert frame.empty and list(frame.columns) == fields and str(frame.index.tz) == "UTC"
    store.write([smp(E, T0 + 5 * MIN, pv_power_w=5.0)])
    for every in (None, timedelta(minutes=1)):  # data, but not in the window
        frame = store.series("van-1", E, fields, at(T0), at(T0 + 5 * MIN), every=every)
        assert frame.empty and list(frame.columns) == fields and str(frame.index.tz) == "UTC"
    assert store.series("van-1", E, ["battery_voltage_v"], at(T0), at(T0 + 10 * MIN)).empty  # only other fields reported


def test_a_window_without_end_ends_now(store: Store) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    store.write([smp(E, now_ms - 3_600_000, pv_power_w=1.0), smp(E, now_ms + 3_600_000, pv_power_w=2.0)])
    frame = store.series("van-1", E, ["pv_power_w"], at(now_ms - 7_200_000))
    assert ms_of(frame) == [now_ms - 3_600_000] and frame["pv_power_w"].tolist() == [1.0]
    hourly = store.series("van-1", E, ["pv_power_w"], at(now_ms - 7_200_000), every=timedelta(hours=1), aggregate="count")
    assert hourly["pv_power_w"].sum() == 1.0


def test_bad_windows_and_arguments_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.series("van-1", E, ["pv_power_w"], datetime(2026, 5, 4, 12), datetime(2026, 5, 4, 13, tzinfo=UTC))
    with pytest.raises(ValueError):
        store.series("van-1", E, ["pv_power_w"], at(T0), datetime(2026, 5, 4, 13))
    with pytest.raises(ValueError):
        store.series("van-1", E, ["pv_power_w"], at(T0 + MIN), at(T0))
    with pytest.raises(ValueError):
        store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + MIN), every=timedelta(milliseconds=1500))
    with pytest.raises(ValueError):
        store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate="median")  # type: ignore[arg-type]


def test_an_unknown_field_is_refused_not_a_silent_nan_column(store: Store) -> None:
    store.write([smp(E, T0, pv_power_w=1.0)])
    with pytest.raises(StoreRejected, match="pv_pwoer_w"):
        store.series("van-1", E, ["pv_power_w", "pv_pwoer_w"], at(T0), at(T0 + MIN))


def test_the_raw_row_limit_asks_for_an_interval(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_ROWS", 5)  # backends read base.MAX_ROWS at call time
    store.write([smp(E, T0 + i * 1000, pv_power_w=float(i)) for i in range(6)])
    assert len(store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 5000))) == 5
    with pytest.raises(StoreRejected, match="every"):
        store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + MIN))
    assert store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + MIN), every=timedelta(minutes=1))["pv_power_w"].tolist() == [2.5]


# -- aggregated series ---------------------------------------------------------------


def _three_minutes() -> list[StoredSample]:
    """Minute m (m = 0, 1, 2) holds 12 samples 5 s apart with pv_power_w = 100 m + 0..11;
    battery_voltage_v only in minute 0 (13.0 .. 14.1)."""
    out = []
    for m in range(3):
        for i in range(12):
            extra = {"battery_voltage_v": 13.0 + i / 10} if m == 0 else {}
            out.append(smp(E, T0 + m * MIN + i * 5000, pv_power_w=100.0 * m + i, **extra))
    return out


EXPECTED = {  # per minute m, of pv_power_w = 100 m + 0..11
    "mean": lambda m: 100 * m + 5.5, "min": lambda m: 100 * m, "max": lambda m: 100 * m + 11,
    "sum": lambda m: 1200 * m + 66, "count": lambda m: 12, "first": lambda m: 100 * m, "last": lambda m: 100 * m + 11,
}
EXPECTED_VOLTAGE = {"mean": 13.55, "min": 13.0, "max": 14.1, "sum": 162.6, "count": 12, "first": 13.0, "last": 14.1}


@pytest.mark.parametrize("aggregate", AGGREGATES)
def test_aggregates_per_minute_have_known_answers(store: Store, aggregate: str) -> None:
    store.write(_three_minutes())
    fields = ["pv_power_w", "battery_voltage_v", "battery_cycles"]
    frame = store.series("van-1", E, fields, at(T0), at(T0 + 3 * MIN), every=timedelta(seconds=60), aggregate=aggregate)  # type: ignore[arg-type]
    assert_frame_shape(frame, fields)
    assert ms_of(frame) == [T0, T0 + MIN, T0 + 2 * MIN]  # labelled by the interval's start
    assert all(frame[f].dtype == np.float64 for f in fields)  # counts too
    assert frame["pv_power_w"].tolist() == pytest.approx([EXPECTED[aggregate](m) for m in range(3)])
    assert frame["battery_voltage_v"].iloc[0] == pytest.approx(EXPECTED_VOLTAGE[aggregate])
    assert frame["battery_voltage_v"].iloc[1:].isna().all()  # no value in the interval: NaN, even for count
    assert frame["battery_cycles"].isna().all()


def test_intervals_are_aligned_to_the_epoch_not_to_the_window_start(store: Store) -> None:
    store.write(_three_minutes())
    frame = store.series("van-1", E, ["pv_power_w"], at(T0 + 30_000), at(T0 + 90_000), every=timedelta(minutes=1), aggregate="count")
    assert ms_of(frame) == [T0, T0 + MIN] and frame["pv_power_w"].tolist() == [6.0, 6.0]


def test_first_and_last_skip_missing_values(store: Store) -> None:
    rows = [smp(E, T0 + i * 5000, pv_power_w=float(i), **({"battery_voltage_v": 12.0 + i / 10} if 1 <= i <= 10 else {})) for i in range(12)]
    store.write(rows)  # battery_voltage_v missing in the first (0 s) and last (55 s) samples of the minute
    last = store.series("van-1", E, ["battery_voltage_v", "pv_power_w"], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate="last")
    first = store.series("van-1", E, ["battery_voltage_v", "pv_power_w"], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate="first")
    assert last.iloc[0].tolist() == pytest.approx([13.0, 11.0])
    assert first.iloc[0].tolist() == pytest.approx([12.1, 0.0])


def test_first_and_last_of_text_and_bool_fields(store: Store) -> None:
    store.write([smp(E, T0, charge_state="bulk", shore_power=True), smp(E, T0 + 5000, charge_state="float"), smp(E, T0 + 9000, pv_power_w=1.0)])
    last = store.series("van-1", E, ["charge_state", "shore_power"], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate="last")
    assert last["charge_state"].tolist() == ["float"] and last["shore_power"].tolist() == [True]
    counted = store.series("van-1", E, ["charge_state", "shore_power"], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate="count")
    assert counted.iloc[0].tolist() == [2.0, 1.0]
    low = store.series("van-1", E, ["shore_power"], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate="min")
    assert low["shore_power"].dtype == object and low["shore_power"].tolist() == [True]
    for field, aggregate in [("charge_state", "mean"), ("charge_state", "max"), ("shore_power", "mean"), ("shore_power", "sum")]:
        with pytest.raises(StoreRejected, match=field):
            store.series("van-1", E, [field], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate=aggregate)  # type: ignore[arg-type]


def test_a_gap_is_absent_never_a_zero(store: Store) -> None:
    store.write([smp(E, T0 + s * 1000, pv_power_w=50.0) for s in range(0, 40 * 60, 10) if not 20 * 60 <= s < 30 * 60])
    for aggregate in ("mean", "count", "sum"):
        frame = store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 40 * MIN), every=timedelta(minutes=1), aggregate=aggregate)  # type: ignore[arg-type]
        assert ms_of(frame) == [T0 + m * MIN for m in [*range(20), *range(30, 40)]]
        assert (frame["pv_power_w"] > 0).all()


@pytest.mark.parametrize("local_day", ["2026-03-29", "2026-10-25"])
def test_storage_is_utc_across_daylight_saving_changes(store: Store, local_day: str) -> None:
    """Europe/Rome springs forward on 2026-03-29 01:00 UTC (a 23-hour local day) and falls back
    on 2026-10-25 01:00 UTC (25 hours). One sample a minute through the local day: every
    sample comes back at its exact UTC time, and hourly intervals are real UTC hours."""
    rome = ZoneInfo("Europe/Rome")
    day = datetime.fromisoformat(local_day)
    start, end = day.replace(tzinfo=rome).astimezone(UTC), (day + timedelta(days=1)).replace(tzinfo=rome).astimezone(UTC)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    hours = (end_ms - start_ms) // 3_600_000
    assert hours == (23 if local_day.endswith("03-29") else 25)
    times = list(range(start_ms, end_ms, MIN))
    store.write([smp(E, t, battery_soc_pct=float(i % 100)) for i, t in enumerate(times)])
    raw = store.series("van-1", E, ["battery_soc_pct"], start, end)
    assert ms_of(raw) == times
    hourly = store.series("van-1", E, ["battery_soc_pct"], start, end, every=timedelta(hours=1), aggregate="count")
    assert ms_of(hourly) == list(range(start_ms, end_ms, 3_600_000)) and hourly["battery_soc_pct"].tolist() == [60.0] * hours
    local = hourly.index.tz_convert(rome)
    assert local[0].hour == 0 and local[-1].hour == 23 and len(set(local.hour)) == (23 if hours == 23 else 24)


# -- campers, dead letters, threads ---------------------------------------------------


def test_campers_do_not_see_each_other(store: Store) -> None:
    store.write([smp(E, T0, "van-1", pv_power_w=1.0), smp(E, T0, "van-2", pv_power_w=2.0), smp(E, T0 + 1000, "van-2", pv_power_w=3.0)])
    store.write([smp(Stream.EVENT, T0, "van-3", kind="button")])
    assert store.latest("van-1", E).fields["pv_power_w"] == 1.0  # type: ignore[union-attr]
    assert store.latest("van-2", E).fields["pv_power_w"] == 3.0  # type: ignore[union-attr]
    assert store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + MIN))["pv_power_w"].tolist() == [1.0]
    assert store.series("van-2", E, ["pv_power_w"], at(T0), at(T0 + MIN), every=timedelta(minutes=1), aggregate="sum")["pv_power_w"].tolist() == [5.0]
    assert store.latest("van-3", E) is None
    assert store.campers() == ["van-1", "van-2", "van-3"]


def test_campers_of_an_empty_store(store: Store) -> None:
    assert store.campers() == []


def test_dead_letters_round_trip_newest_first(store: Store) -> None:
    letters = [
        DeadLetter(T0, "camperhub/v1/van-1/energy", "not UTF-8 JSON", b"\xff\xfe\x00\x80garbage", "van-1"),
        DeadLetter(T0 + 1000, "camperhub/v1/??/energy", "camper id does not match", b'{"v":1}'),
        DeadLetter(T0 + 2000, "camperhub/v1/van-2/position", "samples.0.lat: too big", b'{"lat": 91}', "van-2"),
        DeadLetter(T0 + 2000, "camperhub/v1/van-2/position", "same millisecond, kept too", b"", "van-2"),
    ]
    store.write_dead_letters(letters[:2])
    store.write_dead_letters(letters[2:])
    got = store.dead_letters()
    assert [d.received_ms for d in got] == [T0 + 2000, T0 + 2000, T0 + 1000, T0]
    assert set(got[:2]) == set(letters[2:]) and got[2:] == [letters[1], letters[0]]
    assert got[3].payload == b"\xff\xfe\x00\x80garbage" and got[2].camper is None
    assert [d.received_ms for d in store.dead_letters(limit=3)] == [T0 + 2000, T0 + 2000, T0 + 1000]
    assert store.dead_letters(since=at(T0 + 1000)) == got[:3]
    assert store.dead_letters(since=at(T0 + 3000)) == []
    assert store.campers() == []  # a refused message is not a camper's data
    with pytest.raises(ValueError):
        store.dead_letters(since=datetime(2026, 5, 4, 12))


def test_writes_from_several_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(25):
                store.write([smp(E, T0 + (k * 25 + i) * 1000, pv_power_w=float(k))])
                store.latest("van-1", E)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,), name=f"writer-{k}") for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    counted = store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 10 * MIN), every=timedelta(minutes=10), aggregate="count")
    assert counted["pv_power_w"].tolist() == [100.0]


# -- rollups and raw retention --------------------------------------------------------

DAY_MS = 86_400_000
DAY0 = T0 - 12 * 3_600_000  # 2026-05-04T00:00:00Z
EVERIES = [timedelta(seconds=60), timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)]
NUMERIC = ["pv_power_w", "battery_soc_pct", "battery_cycles", "seq"]


def fields_for(aggregate: str) -> list[str]:
    """The fields of the day below for which ``aggregate`` is defined (text: first/last/count; bool: no mean/sum)."""
    return NUMERIC + (["charge_state"] if aggregate in ("first", "last", "count") else []) + (["shore_power"] if aggregate not in ("mean", "sum") else [])


def a_day(start_ms: int = DAY0, minutes: int = 1440, step_ms: int = 5000) -> list[StoredSample]:
    """Samples every 5 s with floats that do not sum exactly, fields missing here and there,
    every kind (float, int, text, bool), and an hour without anything (05:00-06:00)."""
    out = []
    for i in range(minutes * 60_000 // step_ms):
        ts = start_ms + i * step_ms
        if 300 <= (ts - start_ms) // MIN < 360:
            continue
        f: dict[str, Any] = {"pv_power_w": (i * 37 % 1000) / 7}
        if i % 3:
            f["battery_soc_pct"] = 20 + (i % 800) / 10
        if i % 7 != 3:
            f["battery_cycles"] = 100 + i // 5000
        if i % 4 == 0:
            f["charge_state"] = ("bulk", "absorption", "float")[(i // 50) % 3]
        if i % 5 != 1:
            f["shore_power"] = (i // 30) % 2 == 0
        out.append(smp(E, ts, **f))
    return out


def assert_same(got: pd.DataFrame, want: pd.DataFrame, what: object = "") -> None:
    """Same buckets, columns and dtypes; floats to 1e-9 relative (sums in another order), the rest exactly."""
    assert list(got.columns) == list(want.columns), what
    assert ms_of(got) == ms_of(want), what
    for c in want.columns:
        g, w = got[c], want[c]
        assert g.dtype == w.dtype, (what, c)
        if w.dtype == np.float64:
            np.testing.assert_allclose(g.to_numpy(), w.to_numpy(), rtol=1e-9, atol=0, equal_nan=True, err_msg=f"{what} {c}")
        else:
            assert [(type(v), v) for v in g.dropna()] == [(type(v), v) for v in w.dropna()], (what, c)
            assert g.isna().tolist() == w.isna().tolist(), (what, c)


def answers(store: Store, start: int, end: int, everies: list[timedelta] = EVERIES) -> dict[tuple[timedelta, str], pd.DataFrame]:
    return {(e, a): store.series("van-1", E, fields_for(a), at(start), at(end), every=e, aggregate=a) for e in everies for a in AGGREGATES}  # type: ignore[arg-type]


def test_rollups_answer_exactly_what_raw_answers(store: Store) -> None:
    samples = a_day()
    store.write(samples)
    raw = answers(store, DAY0, DAY0 + DAY_MS)  # nothing folded yet: every bucket from raw
    assert not raw[(timedelta(days=1), "count")].empty
    assert store.rollup() == 1440 - 60  # every minute with data, the empty hour has none
    assert store.rollup() == 0  # nothing dirty left
    for key, frame in answers(store, DAY0, DAY0 + DAY_MS).items():
        assert_same(frame, raw[key], key)
    assert store.prune_raw(at(DAY0 + DAY_MS)) == len(samples)
    assert store.series("van-1", E, ["pv_power_w"], at(DAY0), at(DAY0 + DAY_MS)).empty  # raw is gone ...
    for key, frame in answers(store, DAY0, DAY0 + DAY_MS).items():  # ... so these come from the rollups alone
        assert_same(frame, raw[key], key)
    assert store.campers() == ["van-1"]  # its history is still there


def _per_minute(values: dict[int, list[float]]) -> dict[str, list[float]]:
    return {
        "mean": [sum(v) / len(v) for v in values.values()], "min": [min(v) for v in values.values()],
        "max": [max(v) for v in values.values()], "sum": [sum(v) for v in values.values()],
        "count": [float(len(v)) for v in values.values()], "first": [v[0] for v in values.values()], "last": [v[-1] for v in values.values()],
    }


def test_late_data_refolds_its_minute(store: Store) -> None:
    early = [smp(E, T0 + i * 5000, pv_power_w=float(i)) for i in range(24)]  # minutes 0 and 1
    store.write(early)
    assert store.rollup() == 2

    def check() -> None:
        expected = _per_minute({0: [0.5, *map(float, range(1, 12)), 77.0], 1: [float(i) for i in range(12, 24)]})
        for aggregate in AGGREGATES:
            frame = store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 2 * MIN), every=timedelta(minutes=1), aggregate=aggregate)  # type: ignore[arg-type]
            assert ms_of(frame) == [T0, T0 + MIN]
            assert frame["pv_power_w"].tolist() == pytest.approx(expected[aggregate], rel=1e-12), aggregate

    # a backlog delivered late: a rewrite of the minute's first sample, a new one at its end, a replay
    store.write([smp(E, T0, seq=early[0].fields["seq"], pv_power_w=0.5), smp(E, T0 + 59_000, pv_power_w=77.0), early[5]])
    check()  # minute 0 is dirty: read from raw
    assert store.rollup() == 1  # only minute 0 is folded again, whole, from raw
    check()
    assert store.prune_raw(at(T0 + 2 * MIN)) == 25
    check()  # from the rollups alone


def test_a_gap_stays_a_gap_after_rollup(store: Store) -> None:
    store.write([smp(E, T0 + s * 1000, pv_power_w=50.0) for s in range(0, 40 * 60, 10) if not 20 * 60 <= s < 30 * 60])
    store.rollup()
    store.prune_raw(at(T0 + 40 * MIN))
    for aggregate in ("mean", "count", "sum"):
        frame = store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 40 * MIN), every=timedelta(minutes=1), aggregate=aggregate)  # type: ignore[arg-type]
        assert ms_of(frame) == [T0 + m * MIN for m in [*range(20), *range(30, 40)]]
        assert (frame["pv_power_w"] > 0).all()
        tens = store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 40 * MIN), every=timedelta(minutes=10), aggregate=aggregate)  # type: ignore[arg-type]
        assert ms_of(tens) == [T0, T0 + 10 * MIN, T0 + 30 * MIN]


def test_prune_raw_keeps_dirty_minutes_and_rollups_answer_for_the_rest(store: Store) -> None:
    samples = [smp(E, T0 + i * 10_000, pv_power_w=float(i % 50)) for i in range(720)]  # two hours
    store.write(samples)
    assert store.rollup() == 120
    store.write([smp(E, T0 + 30 * MIN + 1000, pv_power_w=99.0)])  # late: minute 30 is dirty again
    want = answers(store, T0, T0 + 120 * MIN, [timedelta(minutes=15)])
    assert store.prune_raw(at(T0 + 120 * MIN)) == 180  # the 30 minutes before the dirty one, 6 samples each
    assert ms_of(store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 120 * MIN)))[0] == T0 + 30 * MIN
    for key, frame in answers(store, T0, T0 + 120 * MIN, [timedelta(minutes=15)]).items():
        assert_same(frame, want[key], key)
    assert store.rollup() == 1
    assert store.prune_raw(at(T0 + 120 * MIN)) == 720 - 180 + 1
    assert store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 120 * MIN)).empty
    for key, frame in answers(store, T0, T0 + 120 * MIN, [timedelta(minutes=15)]).items():
        assert_same(frame, want[key], key)
    # a sample older than the raw retention: its minute's raw is gone, so it is not folded
    # (the rollup of the whole minute is kept) and the answers stay as they were
    store.write([smp(E, T0 + 5 * MIN + 500, pv_power_w=1000.0)])
    for key, frame in answers(store, T0, T0 + 120 * MIN, [timedelta(minutes=15)]).items():
        assert_same(frame, want[key], key)
    assert store.rollup() == 0
    for key, frame in answers(store, T0, T0 + 120 * MIN, [timedelta(minutes=15)]).items():
        assert_same(frame, want[key], key)


def test_a_window_across_the_folded_horizon_takes_each_bucket_whole_from_one_source(store: Store) -> None:
    store.write(a_day(T0, minutes=180))
    aligned = answers(store, T0, T0 + 180 * MIN, [timedelta(minutes=15), timedelta(hours=1)])
    ragged = answers(store, T0 + 7500, T0 + 180 * MIN - 2500, [timedelta(minutes=15)])  # partial first and last buckets
    assert store.rollup(now=at(T0 + 120 * MIN + 5000)) == 120  # minutes that ended 5 s before "now"
    for key, frame in answers(store, T0, T0 + 180 * MIN, [timedelta(minutes=15), timedelta(hours=1)]).items():
        assert_same(frame, aligned[key], key)
    for key, frame in answers(store, T0 + 7500, T0 + 180 * MIN - 2500, [timedelta(minutes=15)]).items():
        assert_same(frame, ragged[key], key)
    assert store.prune_raw(at(T0 + 120 * MIN)) == len(a_day(T0, minutes=120))
    for key, frame in answers(store, T0, T0 + 180 * MIN, [timedelta(minutes=15), timedelta(hours=1)]).items():
        assert_same(frame, aligned[key], key)  # before 2 h only rollups are left, after it only raw


def test_writers_and_rollups_in_threads_end_exact(store: Store) -> None:
    """Two writers fill the same minutes and fold as they go: the result is exact."""
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(60):
                store.write([smp(E, T0 + (2 * i + k) * 2500, pv_power_w=float(1000 * k + i))])
                if i % 4 == k * 2:
                    store.rollup()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,), name=f"writer-{k}") for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store.rollup()
    assert store.prune_raw(at(T0 + 5 * MIN)) == 120
    per_minute: dict[int, list[float]] = {}
    for n in range(120):  # sample n is at T0 + n * 2.5 s, written by worker n % 2
        per_minute.setdefault(n * 2500 // MIN, []).append(float(1000 * (n % 2) + n // 2))
    expected = _per_minute(per_minute)
    for aggregate in AGGREGATES:
        frame = store.series("van-1", E, ["pv_power_w"], at(T0), at(T0 + 5 * MIN), every=timedelta(minutes=1), aggregate=aggregate)  # type: ignore[arg-type]
        assert ms_of(frame) == [T0 + m * MIN for m in range(5)]
        assert frame["pv_power_w"].tolist() == pytest.approx(expected[aggregate], rel=1e-12), aggregate


def test_rollup_and_prune_of_an_empty_store(store: Store) -> None:
    assert store.rollup() == 0
    assert store.prune_raw(at(T0)) == 0
    store.write([smp(Stream.POSITION, T0, lat=1.0, lon=2.0, fix=3)])  # only energy is rolled up
    assert store.rollup() == 0
    assert store.prune_raw(at(T0 + MIN)) == 0
    with pytest.raises(ValueError):
        store.prune_raw(datetime(2026, 5, 4, 12))


# -- SQLite only ---------------------------------------------------------------------


def test_open_store_gives_sqlite_by_default(tmp_path: Path) -> None:
    s = open_store(StoreSettings(sqlite_path=tmp_path / "deep" / "folder" / "hub.sqlite"))
    try:
        assert isinstance(s, SqliteStore)
        s.ping()
        assert (tmp_path / "deep" / "folder" / "hub.sqlite").exists()
    finally:
        s.close()


def test_sqlite_file_is_wal_and_versioned(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.sqlite").close()
    with sqlite3.connect(tmp_path / "s.sqlite") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == sqlite_backend.SCHEMA_VERSION
    c.close()


def test_sqlite_adds_the_columns_the_contract_gained(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as c:  # a file from when energy had three fields
        c.execute("CREATE TABLE energy (camper TEXT NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER, battery_voltage_v REAL, "
                  "retired_field REAL, PRIMARY KEY (camper, ts_ms)) WITHOUT ROWID")
        c.execute("INSERT INTO energy VALUES ('van-1', ?, 1, 12.9, 4.0)", (T0,))
        c.execute("PRAGMA user_version = 1")
    c.close()
    with SqliteStore(path) as s:
        assert s.latest("van-1", E).fields == {"seq": 1, "battery_voltage_v": 12.9, "retired_field": 4.0}  # type: ignore[union-attr]
        s.write([smp(E, T0 + 1000, seq=2, battery_voltage_v=13.0, shore_power=True, charge_state="float", battery_cycles=3)])
        got = s.latest("van-1", E)
        assert got is not None and got.fields == {"seq": 2, "battery_voltage_v": 13.0, "shore_power": True, "charge_state": "float", "battery_cycles": 3}
        assert s.series("van-1", E, ["retired_field", "battery_voltage_v"], at(T0), at(T0 + MIN))["retired_field"].tolist()[0] == 4.0


def test_sqlite_refuses_a_file_from_newer_software(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "new.sqlite") as c:
        c.execute("PRAGMA user_version = 99")
    c.close()
    with pytest.raises(StoreRejected, match="newer"):
        SqliteStore(tmp_path / "new.sqlite")


def test_sqlite_locked_file_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SqliteStore(path, busy_timeout_s=0.1) as s:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable, match="locked") as info:
            s.write([smp(E, T0, pv_power_w=1.0)])
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
        other.close()
        s.write([smp(E, T0, pv_power_w=1.0)])
        assert s.latest("van-1", E) is not None


def test_sqlite_closed_store_does_not_answer(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.sqlite")
    s.close()
    s.close()
    with pytest.raises(StoreUnavailable):
        s.ping()


def test_sqlite_both_aggregation_plans_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-interval seeks (few intervals) and one GROUP BY scan (many) must give the same frames."""
    with SqliteStore(tmp_path / "s.sqlite") as s:
        rows = []
        for i in range(0, 3 * 3600, 7):  # 7-s cadence, gaps, fields missing here and there
            if 3000 <= i < 5000:
                continue
            f: dict[str, Any] = {"pv_power_w": float(i % 97)}
            if i % 3:
                f["battery_voltage_v"] = 12.0 + (i % 50) / 10
            if i % 11 == 0:
                f["charge_state"] = "bulk" if i % 2 else "float"
            rows.append(smp(E, T0 + i * 1000, **f))
        s.write(rows)
        fields = ["pv_power_w", "battery_voltage_v", "battery_cycles"]
        for aggregate in AGGREGATES:
            for every in (timedelta(seconds=90), timedelta(minutes=17)):
                args = ("van-1", E, fields + (["charge_state"] if aggregate in ("first", "last", "count") else []), at(T0 + 1234), at(T0 + 3 * 3600 * 1000 - 999))
                monkeypatch.setattr(sqlite_backend, "PER_BUCKET_MAX", 10**9)
                seek = s.series(*args, every=every, aggregate=aggregate)  # type: ignore[arg-type]
                monkeypatch.setattr(sqlite_backend, "PER_BUCKET_MAX", 0)
                scan = s.series(*args, every=every, aggregate=aggregate)  # type: ignore[arg-type]
                pd.testing.assert_frame_equal(seek, scan)
                assert not seek.empty and not math.isnan(seek["pv_power_w"].iloc[0])


def test_sqlite_file_from_before_rollups_gets_its_history_folded(tmp_path: Path) -> None:
    """A version-1 file (no rollup tables): opening it marks every minute it holds dirty, so
    reads stay right at once (from raw) and the next rollup() folds its whole history."""
    path = tmp_path / "v1.sqlite"
    with SqliteStore(path) as s:
        s.write(a_day(T0, minutes=90))
        want = answers(s, T0, T0 + 90 * MIN, [timedelta(minutes=15)])
    with sqlite3.connect(path) as c:  # back to the layout of version 1
        c.execute("DROP TABLE dirty_minute")
        c.execute("DROP TABLE energy_1m")
        c.execute("DROP TABLE raw_pruned")
        c.execute("PRAGMA user_version = 1")
    c.close()
    with SqliteStore(path) as s:
        for key, frame in answers(s, T0, T0 + 90 * MIN, [timedelta(minutes=15)]).items():
            assert_same(frame, want[key], key)
        assert s.rollup() == 90
        s.prune_raw(at(T0 + 90 * MIN))
        for key, frame in answers(s, T0, T0 + 90 * MIN, [timedelta(minutes=15)]).items():
            assert_same(frame, want[key], key)
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == sqlite_backend.SCHEMA_VERSION == 2
    c.close()


def test_sqlite_rollup_plans_agree_and_a_fold_is_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollup reads use the same two plans as raw reads; folding in chunks of 7 minutes folds the same."""
    monkeypatch.setattr(sqlite_backend.sqlite_rollup, "FOLD_CHUNK", 7)
    with SqliteStore(tmp_path / "s.sqlite") as s:
        s.write(a_day(T0, minutes=100))
        assert s.rollup() == 100
        s.prune_raw(at(T0 + 100 * MIN))
        for aggregate in AGGREGATES:
            args = ("van-1", E, fields_for(aggregate), at(T0), at(T0 + 100 * MIN))
            monkeypatch.setattr(sqlite_backend, "PER_BUCKET_MAX", 10**9)
            seek = s.series(*args, every=timedelta(minutes=10), aggregate=aggregate)  # type: ignore[arg-type]
            monkeypatch.setattr(sqlite_backend, "PER_BUCKET_MAX", 0)
            scan = s.series(*args, every=timedelta(minutes=10), aggregate=aggregate)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(seek, scan)
            assert len(seek) == 10
