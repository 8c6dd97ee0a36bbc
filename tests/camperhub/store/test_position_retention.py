"""Store.prune_positions: the position history (staff only) is kept for a bounded time
(ARCHITECTURE.md §10). Runs on SQLite and on a real InfluxDB 1.x (the shared ``store`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from camperhub.contract import Stream
from camperhub.store.base import Store
from tests.camperhub.store.test_conformance import MIN, T0, at, ms_of, smp

P = Stream.POSITION
ALL = (at(T0 - 365 * 24 * 60 * MIN), at(T0 + 24 * 60 * MIN))


def _positions(camper: str, start: int, n: int, step: int = MIN) -> list:
    return [smp(P, start + i * step, camper=camper, lat=45.8 + i * 1e-4, lon=8.8, fix=3) for i in range(n)]


def _stored(store: Store, camper: str, stream: Stream = P, field: str = "lat") -> list[int]:
    return ms_of(store.series(camper, stream, [field], *ALL))


def test_positions_before_the_cutoff_go_for_every_camper_the_rest_stays(store: Store) -> None:
    store.write(_positions("van-1", T0 - 10 * MIN, 20) + _positions("van-2", T0 - 30 * MIN, 5))
    store.write([smp(Stream.ENERGY, T0 - 20 * MIN, camper="van-1", pv_power_w=10.0)])
    store.write([smp(Stream.EVENT, T0 - 20 * MIN, camper="van-1", kind="arrival", detail="piazza")])
    store.write([smp(Stream.STATUS, T0 - 20 * MIN, camper="van-1", state="online")])

    # a sample exactly at the cutoff stays; the 10 before it (van-1) and all 5 of van-2 go
    assert store.prune_positions(at(T0)) == 15
    assert _stored(store, "van-1") == [T0 + i * MIN for i in range(10)]
    assert _stored(store, "van-2") == []
    # other streams are not the position history: untouched
    assert _stored(store, "van-1", Stream.ENERGY, "pv_power_w") == [T0 - 20 * MIN]
    assert _stored(store, "van-1", Stream.EVENT, "kind") == [T0 - 20 * MIN]
    assert store.latest("van-1", Stream.STATUS) is not None
    latest = store.latest("van-1", P)
    assert latest is not None and latest.ts_ms == T0 + 9 * MIN
    # idempotent: nothing more to delete
    assert store.prune_positions(at(T0)) == 0
    # a cutoff inside a millisecond: the sample of that millisecond is before it
    assert store.prune_positions(at(T0) + timedelta(microseconds=1)) == 1
    assert _stored(store, "van-1")[0] == T0 + MIN


def test_pruning_an_empty_store_or_with_a_naive_time(store: Store) -> None:
    assert store.prune_positions(datetime.now(UTC)) == 0
    with pytest.raises(ValueError):
        store.prune_positions(datetime(2026, 5, 4, 12))


def test_many_positions_are_pruned_in_chunks(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from camperhub.store import sqlite as sqlite_backend

    monkeypatch.setattr(sqlite_backend, "PRUNE_POSITIONS_CHUNK", 7)  # several transactions (SQLite)
    store.write(_positions("van-1", T0 - 50 * 10_000, 60, step=10_000))
    assert store.prune_positions(at(T0)) == 50
    assert _stored(store, "van-1") == [T0 + i * 10_000 for i in range(10)]
    # a replay of pruned positions (an old backlog) lands again and is pruned again next time
    store.write(_positions("van-1", T0 - 50 * 10_000, 3, step=10_000))
    assert store.prune_positions(at(T0)) == 3
