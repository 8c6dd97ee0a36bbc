"""Position by distance and time: which fixes the agent publishes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camperhub.edge.gps import GpsFix
from camperhub.edge.position_filter import EARTH_RADIUS_M, PositionThrottle, haversine_m

VARESE = (45.8200, 8.8300)
#: One metre of latitude, in degrees.
M_LAT = 1 / 111_195.0


def fix_at(lat: float, lon: float) -> GpsFix:
    return GpsFix(fix=3, time_ms=None, boot_ms=0, lat=lat, lon=lon)


NO_FIX = GpsFix(fix=0, time_ms=None, boot_ms=0)


def north(metres: float) -> GpsFix:
    return fix_at(VARESE[0] + metres * M_LAT, VARESE[1])


# -- distance ------------------------------------------------------------------


def test_haversine_known_distances() -> None:
    assert haversine_m(*VARESE, *VARESE) == 0
    # one degree of latitude on the mean sphere
    assert haversine_m(0, 0, 1, 0) == pytest.approx(EARTH_RADIUS_M * math.pi / 180, rel=1e-12)
    # Varese station to Milano Centrale: about 50 km
    assert haversine_m(45.8164, 8.8329, 45.4859, 9.2043) == pytest.approx(46_000, rel=0.03)
    assert haversine_m(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_M)


lat_st = st.floats(-90, 90, allow_nan=False)
lon_st = st.floats(-180, 180, allow_nan=False)


@given(lat_st, lon_st, lat_st, lon_st)
def test_haversine_is_a_symmetric_bounded_distance(la1: float, lo1: float, la2: float, lo2: float) -> None:
    d = haversine_m(la1, lo1, la2, lo2)
    assert 0 <= d <= math.pi * EARTH_RADIUS_M + 1e-6
    assert d == pytest.approx(haversine_m(la2, lo2, la1, lo1), abs=1e-6)


@given(lat_st, lon_st, lat_st, lon_st, lat_st, lon_st)
def test_haversine_triangle_inequality(a1: float, o1: float, a2: float, o2: float, a3: float, o3: float) -> None:
    assert haversine_m(a1, o1, a3, o3) <= haversine_m(a1, o1, a2, o2) + haversine_m(a2, o2, a3, o3) + 1e-3


# -- the throttle ----------------------------------------------------------------


def test_first_fix_is_accepted_then_nothing_while_parked_until_the_heartbeat() -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    assert t.accept(fix_at(*VARESE), 0.0) and t.reason == "first"
    assert not any(t.accept(fix_at(*VARESE), s) for s in range(1, 900))
    assert t.accept(fix_at(*VARESE), 900.0) and t.reason == "heartbeat"
    assert not t.accept(fix_at(*VARESE), 901.0)
    assert (t.accepted, t.rejected) == (2, 900)


def test_moving_needs_both_distance_and_interval() -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    t.accept(north(0), 0.0)
    assert not t.accept(north(500), 10.0)  # far, but too soon
    assert not t.accept(north(99), 40.0)  # late enough, but not far enough (99 m from the last accepted)
    assert t.accept(north(101), 41.0) and t.reason == "moved"
    # distance counts from the last *accepted* position, not from the last seen one
    assert not t.accept(north(150), 80.0)
    assert t.accept(north(201.5), 81.0)


def test_losing_and_regaining_the_fix_is_reported_at_once() -> None:
    t = PositionThrottle()
    t.accept(north(0), 0.0)
    assert t.accept(NO_FIX, 1.0) and t.reason == "fix_lost"
    assert not t.accept(NO_FIX, 2.0)  # still lost: nothing new to say
    assert t.accept(north(0), 3.0) and t.reason == "fix_regained"
    assert not t.accept(north(0), 4.0)


def test_no_fix_from_the_start_then_heartbeat_and_regain() -> None:
    t = PositionThrottle(max_interval_s=600)
    assert t.accept(NO_FIX, 0.0) and t.reason == "first"
    assert not t.accept(NO_FIX, 599.0)
    assert t.accept(NO_FIX, 600.0) and t.reason == "heartbeat"
    assert t.accept(north(0), 601.0) and t.reason == "fix_regained"


def test_flapping_can_be_damped_without_losing_the_change() -> None:
    t = PositionThrottle(min_change_interval_s=10)
    t.accept(north(0), 0.0)
    assert not t.accept(NO_FIX, 5.0)  # held back
    assert t.accept(NO_FIX, 10.0) and t.reason == "fix_lost"  # reported once the wait is over
    assert not t.accept(north(0), 12.0)
    assert not t.accept(NO_FIX, 13.0)  # back to what was last reported: nothing to say
    assert t.accept(north(0), 20.0) and t.reason == "fix_regained"


def test_clock_going_back_restarts_the_intervals() -> None:
    t = PositionThrottle(max_interval_s=100)
    t.accept(north(0), 1000.0)
    assert not t.accept(north(0), 10.0)
    assert t.accept(north(0), 110.0) and t.reason == "heartbeat"


@pytest.mark.parametrize("kwargs", [
    {"min_distance_m": -1}, {"min_interval_s": -1}, {"max_interval_s": 0}, {"min_interval_s": 60, "max_interval_s": 30},
    {"min_change_interval_s": -1},
])
def test_refuses_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PositionThrottle(**kwargs)


# -- properties over random drives ----------------------------------------------------


step_st = st.tuples(
    st.floats(0.1, 120, allow_nan=False),  # seconds since the previous fix
    st.floats(-300, 300, allow_nan=False),  # metres moved north
    st.booleans(),  # has a fix
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step_st, min_size=1, max_size=200))
def test_random_drive_respects_distance_time_and_heartbeat(steps: list[tuple[float, float, bool]]) -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    now, pos = 0.0, 0.0
    accepted: list[tuple[float, GpsFix, str]] = []
    for i, (dt, dn, has) in enumerate(steps):
        now += dt if i else 0.0
        pos += dn
        fix = north(pos) if has else NO_FIX
        if t.accept(fix, now):
            assert t.reason is not None
            accepted.append((now, fix, t.reason))
    assert accepted[0][0] == 0.0 and accepted[0][2] == "first"
    for (t0, f0, _), (t1, f1, why) in zip(accepted, accepted[1:]):
        gap = t1 - t0
        if why == "moved":
            assert gap >= 30 and f0.has_fix and f1.has_fix
            assert haversine_m(f0.lat, f0.lon, f1.lat, f1.lon) >= 100  # type: ignore[arg-type]
        elif why == "heartbeat":
            assert gap >= 900
        else:
            assert why in ("fix_lost", "fix_regained") and f0.has_fix != f1.has_fix
    # never silent for a heartbeat: a fix seen 900 s after the last accepted one is accepted
    times = [0.0]
    for dt, _, _ in steps[1:]:
        times.append(times[-1] + dt)
    acc_times = [a[0] for a in accepted]
    for s in times:
        assert s - max(a for a in acc_times if a <= s) < 900


@settings(max_examples=100, deadline=None)
@given(st.floats(1, 5, allow_nan=False), st.integers(60, 3000))
def test_parked_camper_sends_one_fix_per_heartbeat(period_s: float, n: int) -> None:
    t = PositionThrottle(min_distance_m=100, min_interval_s=30, max_interval_s=900)
    sent: list[tuple[float, str | None]] = []
    for i in range(n):
        if t.accept(north((i % 7) * 3.0), i * period_s):  # a parked receiver's jitter of a few metres
            sent.append((i * period_s, t.reason))
    assert sent[0] == (0.0, "first") and all(why == "heartbeat" for _, why in sent[1:])
    assert all(900 <= b - a < 900 + period_s for (a, _), (b, _) in zip(sent, sent[1:]))
    assert (n - 1) * period_s - sent[-1][0] < 900
