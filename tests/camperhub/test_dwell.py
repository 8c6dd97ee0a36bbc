"""Arrival and departure from dwell inside a geofence, with hysteresis against GPS jitter."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camperhub.dwell import DwellDetector, DwellEvent
from camperhub.schedule import Stop

pytestmark = pytest.mark.timeout(60)

M_PER_DEG_LAT = 111_195.0
A = Stop(id="a", name="A", neighbourhood="A", address="Via Roma 1", lat=45.8100, lon=8.8200, radius_m=100)
B = Stop(id="b", name="B", neighbourhood="B", address="Via Milano 2", lat=45.8200, lon=8.8200, radius_m=100)
T0 = 1_777_000_000_000  # ms


def offset(stop: Stop, north_m: float, east_m: float = 0.0) -> tuple[float, float]:
    return (stop.lat + north_m / M_PER_DEG_LAT,
            stop.lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(stop.lat))))


def detector() -> DwellDetector:
    return DwellDetector([A, B], arrival_dwell_s=120, departure_dwell_s=120, exit_radius_factor=1.5)


def drive(start_s: int, stop: Stop, from_m: float, to_m: float, speed_mps: float = 10, every_s: int = 5) -> list[tuple[int, float, float]]:
    """Fixes along the north-south line through ``stop``, from ``from_m`` to ``to_m`` north of it."""
    n = int(abs(to_m - from_m) / speed_mps / every_s)
    step = (to_m - from_m) / max(n, 1)
    return [(T0 + (start_s + i * every_s) * 1000, *offset(stop, from_m + i * step)) for i in range(n + 1)]


def park(start_s: int, stop: Stop, seconds: int, jitter_m: float, seed: int = 1, every_s: int = 5) -> list[tuple[int, float, float]]:
    rnd = random.Random(seed)
    out = []
    for i in range(seconds // every_s):
        r, angle = jitter_m * math.sqrt(rnd.random()), rnd.uniform(0, 2 * math.pi)
        out.append((T0 + (start_s + i * every_s) * 1000, *offset(stop, r * math.cos(angle), r * math.sin(angle))))
    return out


def test_an_hour_parked_with_jitter_is_one_arrival_and_no_departure():
    d = detector()
    approach = drive(0, A, 1003, 3)  # 100 s at 10 m/s, fixes every 5 s, none exactly on the fence
    events = d.feed_many(approach + park(105, A, 3600, jitter_m=140))  # jitter beyond the radius, within the exit radius
    first_inside = next(ts for ts, lat, lon in approach if abs(lat - A.lat) * M_PER_DEG_LAT <= 100)
    assert events == [DwellEvent("arrival", "a", first_inside)]
    assert d.at_stop == A


def test_leaving_gives_a_departure_at_the_first_fix_outside():
    d = detector()
    d.feed_many(drive(0, A, 1000, 0) + park(105, A, 600, jitter_m=30))
    leave = drive(705, A, 3, 2003)
    events = d.feed_many(leave)
    first_out = next(ts for ts, lat, _ in leave if (lat - A.lat) * M_PER_DEG_LAT > 150)
    assert events == [DwellEvent("departure", "a", first_out)]
    assert d.at_stop is None
    assert events[0].event_fields() == {"kind": "departure", "detail": "a"}


def test_driving_through_a_fence_is_nothing():
    assert detector().feed_many(drive(0, A, 1000, -1000, speed_mps=5)) == []  # 60 s inside at 5 m/s


def test_a_short_step_outside_is_not_a_departure():
    d = detector()
    d.feed_many(park(0, A, 300, jitter_m=20))
    out = [(T0 + (300 + s) * 1000, *offset(A, 200)) for s in range(0, 100, 5)]  # 95 s beyond the exit radius
    back = park(400, A, 600, jitter_m=20, seed=2)
    assert d.feed_many(out + back) == []
    assert d.at_stop == A


def test_hysteresis_at_the_edge():
    # flapping between 95 m and 145 m: inside the exit radius all the time -> one arrival, no departure
    d = detector()
    fixes = [(T0 + s * 1000, *offset(A, 95 if (s // 5) % 2 else 145)) for s in range(0, 3600, 5)]
    assert [e.kind for e in d.feed_many(fixes)] == ["arrival"]
    # flapping between 95 m and 160 m never stays near long enough: no arrival at all
    d = detector()
    fixes = [(T0 + s * 1000, *offset(A, 95 if (s // 5) % 2 else 160)) for s in range(0, 3600, 5)]
    assert d.feed_many(fixes) == []


def test_from_one_stop_straight_to_the_next():
    d = detector()
    events = d.feed_many(park(0, A, 600, 20) + drive(600, A, 0, 1112, speed_mps=10) + park(715, B, 600, 20))
    assert [(e.kind, e.stop_id) for e in events] == [("arrival", "a"), ("departure", "a"), ("arrival", "b")]
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)


def test_replayed_and_duplicate_fixes_change_nothing():
    d = detector()
    fixes = park(0, A, 600, 20) + drive(600, A, 0, 2000)
    first = d.feed_many(fixes)
    assert [e.kind for e in first] == ["arrival", "departure"]
    assert d.feed_many(fixes) == []  # the same fixes again (a replayed backlog)
    assert d.feed(fixes[-1][0], A.lat, A.lon) == []  # same time, other place: ignored


def test_defaults_come_from_settings_and_bad_factor_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CAMPERHUB_ARRIVAL_DWELL_S", "30")
    assert DwellDetector([A]).arrival_dwell_ms == 30_000
    with pytest.raises(ValueError, match="exit_radius_factor"):
        DwellDetector([A], exit_radius_factor=0.5)


places = st.sampled_from(["a", "b", "far"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 200), places, st.floats(0, 250), st.floats(0, 2 * math.pi)), max_size=120))
def test_events_alternate_and_name_the_stop_they_leave(steps):
    d = detector()
    t, events = 0, []
    for dt, where, r, angle in steps:
        t += dt
        stop = A if where == "a" else B
        north, east = r * math.cos(angle), r * math.sin(angle)
        lat, lon = offset(stop, north + (5000 if where == "far" else 0), east)
        events += d.feed(T0 + t * 1000, lat, lon)
    kinds = [e.kind for e in events]
    assert kinds == ["arrival", "departure"] * (len(kinds) // 2) + ["arrival"] * (len(kinds) % 2)
    for arrival, departure in zip(events[::2], events[1::2]):
        assert departure.stop_id == arrival.stop_id and departure.ts_ms > arrival.ts_ms
    assert (d.at_stop is not None) == (len(kinds) % 2 == 1)


@settings(max_examples=60, deadline=None)
@given(seconds=st.integers(120, 4 * 3600), every_s=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_parked_with_jitter_inside_the_exit_radius_never_departs(seconds, every_s, seed):
    rnd = random.Random(seed)
    d = detector()
    fixes = [(T0, A.lat, A.lon)] + [
        (T0 + s * 1000, *offset(A, rnd.uniform(-105, 105), rnd.uniform(-105, 105)))  # at most 148.5 m away
        for s in range(every_s, seconds + every_s, every_s)  # the last fix at or past the dwell
    ]
    assert d.feed_many(fixes) == [DwellEvent("arrival", "a", T0)]
