"""The schedule: model checks, expansion into UTC windows (DST, exceptions), loaders, repository."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from camperhub.edge.stops import DEMO_STOPS_FILE, load_stops
from camperhub.schedule import Schedule, ScheduleSettings, Service, Stop, Weekday
from camperhub.schedule_io import (
    ScheduleRepository,
    load_schedule_csv,
    load_schedule_yaml,
    parse_schedule_csv,
    parse_schedule_yaml,
)
from camperhub.yamlconf import ConfigError

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
DEMO_YAML = ROOT / "firmware-config" / "demo" / "schedule.yaml"
DEMO_CSV = ROOT / "firmware-config" / "demo" / "schedule.csv"
ROME = ZoneInfo("Europe/Rome")
#: The agent's geofences (edge/stops.py): the schedule's stops must be the same places.
DEMO_STOPS = {s.id: (s.lat, s.lon) for s in load_stops(DEMO_STOPS_FILE)}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def stop(id: str = "a", **kw) -> dict:
    return {"id": id, "name": id.title(), "neighbourhood": id.title(), "address": "Via Roma 1, Varese",
            "lat": 45.81, "lon": 8.82, "radius_m": 100, **kw}


def daily(start: str = "09:00", end: str = "12:00", **kw) -> Schedule:
    """Every day of the week at stop a."""
    return Schedule.model_validate({
        "camper": "test-1", "stops": [stop("a"), stop("b", lat=45.82)],
        "visits": [{"stop": "a", "weekday": wd.value, "start": start, "end": end, "services": ["energy_workshop"]} for wd in Weekday],
        **kw,
    })


@pytest.fixture(scope="module")
def demo() -> Schedule:
    return load_schedule_yaml(DEMO_YAML)


# --- the demo files -------------------------------------------------------------------------


def test_demo_week_is_realistic(demo: Schedule):
    assert demo.camper == "varese-1" and demo.timezone == "Europe/Rome"
    assert {s.id: (s.lat, s.lon) for s in demo.stops} == DEMO_STOPS
    assert all(80 <= s.radius_m <= 150 for s in demo.stops)
    per_day = {wd: [v for v in demo.visits if v.weekday == wd] for wd in Weekday}
    assert all(2 <= len(per_day[wd]) <= 3 for wd in list(Weekday)[:6])
    assert per_day[Weekday.SUN] == []
    assert any(v.start < time(12) for v in demo.visits) and any(v.start >= time(14) for v in demo.visits)
    assert {s for v in demo.visits for s in v.services} == set(Service)
    holidays = {e.date for e in demo.exceptions if e.kind == "holiday"}
    assert {date(2026, 12, 8), date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 1), date(2027, 1, 6)} <= holidays


def test_demo_csv_is_the_same_weekly_plan(demo: Schedule):
    from_csv = load_schedule_csv(DEMO_CSV, "varese-1")
    assert sorted(from_csv.stops, key=lambda s: s.id) == sorted(demo.stops, key=lambda s: s.id)
    assert from_csv.visits == demo.visits
    assert from_csv.exceptions == []


def test_demo_holidays_and_exceptions(demo: Schedule):
    assert demo.visits_on(date(2026, 12, 8)) == []  # Tuesday, Immacolata
    assert [w.stop.id for w in demo.visits_on(date(2026, 12, 15))] == ["bobbiate", "valle-olona", "giubiano"]
    # Christmas Eve (Thursday): the San Fermo afternoon is cancelled, the rest stays
    assert [w.stop.id for w in demo.visits_on(date(2026, 12, 24))] == ["valle-olona", "bustecche"]
    extra = demo.visits_on(date(2026, 12, 20))  # a Sunday with the extra visit
    assert [(w.stop.id, w.start_utc) for w in extra] == [("san-fermo", utc(2026, 12, 20, 9))]
    nxt = demo.next_visit(utc(2026, 12, 24, 20))
    assert nxt is not None and (nxt.local_date, nxt.stop.id) == (date(2026, 12, 28), "bustecche")
    nxt = demo.next_visit(utc(2026, 12, 7, 20))  # Monday evening, Tuesday is a holiday
    assert nxt is not None and (nxt.local_date, nxt.stop.id, nxt.start_utc) == (date(2026, 12, 9), "biumo-inferiore", utc(2026, 12, 9, 8, 30))


# --- expansion, DST ---------------------------------------------------------------------------


def test_dst_spring_forward_keeps_local_time():
    s = daily()
    wins = s.visits_between(utc(2026, 3, 28), utc(2026, 3, 31))
    assert [(w.local_date, w.start_utc, w.end_utc) for w in wins] == [
        (date(2026, 3, 28), utc(2026, 3, 28, 8), utc(2026, 3, 28, 11)),  # CET, +01:00
        (date(2026, 3, 29), utc(2026, 3, 29, 7), utc(2026, 3, 29, 10)),  # CEST, +02:00
        (date(2026, 3, 30), utc(2026, 3, 30, 7), utc(2026, 3, 30, 10)),
    ]


def test_dst_fall_back_keeps_local_time():
    s = daily()
    wins = s.visits_between(utc(2026, 10, 24), utc(2026, 10, 26))
    assert [(w.start_utc, w.end_utc) for w in wins] == [
        (utc(2026, 10, 24, 7), utc(2026, 10, 24, 10)),  # CEST
        (utc(2026, 10, 25, 8), utc(2026, 10, 25, 11)),  # CET
    ]


def test_window_across_the_change_is_as_long_as_the_clock_says():
    spring = daily("01:00", "04:00").visits_on(date(2026, 3, 29))[0]
    assert (spring.start_utc, spring.end_utc) == (utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))  # the night is an hour short
    autumn = daily("01:00", "04:00").visits_on(date(2026, 10, 25))[0]
    assert (autumn.start_utc, autumn.end_utc) == (utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))  # and an hour long
    # a local time that does not exist reads with the offset before the change: 02:30 CET = 03:30 CEST
    gap = daily("02:30", "05:00").visits_on(date(2026, 3, 29))[0]
    assert gap.start_utc == utc(2026, 3, 29, 1, 30)


def test_visits_between_is_half_open_and_checks_its_arguments():
    s = daily()
    assert s.visits_between(utc(2026, 5, 4, 10), utc(2026, 5, 4, 10)) == []  # empty window: nothing
    assert len(s.visits_between(utc(2026, 5, 4, 9, 59), utc(2026, 5, 4, 10))) == 1  # overlaps the end
    assert s.visits_between(utc(2026, 5, 4, 10), utc(2026, 5, 4, 12)) == []  # starts at the end
    assert s.visits_between(utc(2026, 5, 4, 5), utc(2026, 5, 4, 7)) == []  # ends at the start
    with pytest.raises(ValueError, match="timezone-aware"):
        s.visits_between(datetime(2026, 5, 4), utc(2026, 5, 5))
    with pytest.raises(ValueError, match="before it starts"):
        s.visits_between(utc(2026, 5, 5), utc(2026, 5, 4))


@pytest.mark.parametrize(("now", "expected"), [
    (utc(2026, 3, 29, 7), True),  # exactly at start (09:00 CEST)
    (utc(2026, 3, 29, 6, 59, 59), False),  # one second before
    (utc(2026, 3, 29, 9, 59, 59), True),  # last second
    (utc(2026, 3, 29, 10), False),  # exactly at end
    (utc(2026, 10, 25, 8), True),  # fall-back day, 09:00 CET
    (utc(2026, 10, 25, 7, 59, 59), False),
    (utc(2026, 10, 25, 11), False),
])
def test_current_visit_edges(now: datetime, expected: bool):
    assert (daily().current_visit(now) is not None) is expected


def test_current_visit_with_grace_prefers_the_window_it_is_inside():
    s = Schedule.model_validate({
        "camper": "test-1", "stops": [stop("a"), stop("b", lat=45.82)],
        "visits": [{"stop": "a", "weekday": "mon", "start": "09:00", "end": "10:00", "services": ["paperwork_help"]},
                   {"stop": "b", "weekday": "mon", "start": "10:05", "end": "11:00", "services": ["paperwork_help"]}],
    })
    g = timedelta(minutes=10)
    assert s.current_visit(utc(2026, 5, 4, 7, 50), g, g).stop.id == "a"  # 09:50 local, inside a
    assert s.current_visit(utc(2026, 5, 4, 8, 2), g, g).stop.id == "a"  # 10:02 in a's after-grace and b's before-grace
    assert s.current_visit(utc(2026, 5, 4, 8, 5), g, g).stop.id == "b"  # 10:05 inside b
    assert s.current_visit(utc(2026, 5, 4, 9, 10), g, g) is None  # 11:10: grace over
    assert s.current_visit(utc(2026, 5, 4, 9, 9, 59), g, g).stop.id == "b"


def test_next_visit_is_strictly_after_now():
    s = daily()
    assert s.next_visit(utc(2026, 5, 4, 7)).start_utc == utc(2026, 5, 5, 7)  # at a start: the next one
    assert s.next_visit(utc(2026, 5, 4, 6, 59, 59)).start_utc == utc(2026, 5, 4, 7)
    empty = Schedule(camper="test-1", stops=[Stop.model_validate(stop())])
    assert empty.next_visit(utc(2026, 5, 4)) is None


windows = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))


@settings(max_examples=60, deadline=None)
@given(start=windows, hours=st.integers(0, 24 * 9))
def test_expansion_properties(start: datetime, hours: int):
    s = load_schedule_yaml(DEMO_YAML)
    end = start + timedelta(hours=hours)
    wins = s.visits_between(start, end)
    for w in wins:
        assert w.start_utc < end and w.end_utc > start
        local_start, local_end = w.start_utc.astimezone(ROME), w.end_utc.astimezone(ROME)
        assert (local_start.time(), local_end.time()) == (w.visit.start, w.visit.end)  # no visit is at night, so exact
        assert local_start.date() == w.local_date
    assert all(a.end_utc <= b.start_utc for a, b in zip(wins, wins[1:]))  # sorted, one place at a time
    cur = s.current_visit(start)
    assert cur is None or cur.contains(start)
    assert (cur is None) == (not any(w.contains(start) for w in wins))
    nxt = s.next_visit(start)
    if nxt is not None:
        assert nxt.start_utc > start
        assert not [w for w in s.visits_between(start, nxt.start_utc) if w.start_utc > start]


# --- model checks -----------------------------------------------------------------------------


def _schedule_error(**overrides) -> str:
    data = {"camper": "test-1", "stops": [stop("a")],
            "visits": [{"stop": "a", "weekday": "mon", "start": "09:00", "end": "12:00", "services": ["job_orientation"]}]}
    data.update(overrides)
    with pytest.raises(ValidationError) as err:
        Schedule.model_validate(data)
    return str(err.value)


def test_cross_checks_name_the_problem():
    v = {"stop": "a", "weekday": "mon", "start": "09:00", "end": "12:00", "services": ["job_orientation"]}
    assert "visits[0].stop: unknown stop 'zz'" in _schedule_error(visits=[{**v, "stop": "zz"}])
    assert "visits[1]: overlaps visits[0] on mon" in _schedule_error(visits=[v, {**v, "start": "11:00", "end": "13:00"}])
    assert "end 08:00 is not after start 09:00" in _schedule_error(visits=[{**v, "end": "08:00"}])
    assert "exactly one of weekday" in _schedule_error(visits=[{**v, "date": "2026-05-04"}])
    assert "radius_m" in _schedule_error(stops=[stop("a", radius_m=5)])
    assert "radius_m" in _schedule_error(stops=[stop("a", radius_m=900)])
    assert "String should match pattern" in _schedule_error(stops=[stop("Piazza A")])
    assert "stops[1].id: stop id 'a' already used" in _schedule_error(stops=[stop("a"), stop("a")])
    assert "service is listed twice" in _schedule_error(visits=[{**v, "services": ["job_orientation"] * 2}])
    assert "unknown time zone" in _schedule_error(timezone="Europe/Varese")
    assert "extra_forbidden" in _schedule_error(colour="red")
    extra = {"date": "2026-05-04", "kind": "extra", "visit": {**v, "weekday": None, "start": "11:30", "end": "13:00"}}
    assert "exceptions[0].visit: overlaps visits[0] on 2026-05-04" in _schedule_error(exceptions=[extra])
    assert "cancels nothing" in _schedule_error(exceptions=[{"date": "2026-05-05", "kind": "cancelled", "stop": "a"}])
    assert "a holiday cancels the whole day" in _schedule_error(exceptions=[{"date": "2026-05-04", "kind": "holiday", "stop": "a"}])


def test_cancelled_exception_picks_one_visit():
    v = {"stop": "a", "weekday": "mon", "services": ["job_orientation"]}
    s = Schedule.model_validate({
        "camper": "test-1", "stops": [stop("a")],
        "visits": [{**v, "start": "09:00", "end": "10:00"}, {**v, "start": "14:00", "end": "15:00"}],
        "exceptions": [{"date": "2026-05-04", "kind": "cancelled", "stop": "a", "start": "14:00"}],
    })
    assert [w.start_utc for w in s.visits_on(date(2026, 5, 4))] == [utc(2026, 5, 4, 7)]
    assert len(s.visits_on(date(2026, 5, 11))) == 2


def test_json_round_trip_is_the_put_body(demo: Schedule):
    body = demo.model_dump_json()
    assert Schedule.model_validate_json(body) == demo
    broken = body.replace('"stop":"giubiano"', '"stop":"nowhere"', 1)
    with pytest.raises(ValidationError, match=r"visits\[\d+\]\.stop: unknown stop 'nowhere'"):
        Schedule.model_validate_json(broken)


# --- YAML and CSV loaders ---------------------------------------------------------------------

YAML = """\
camper: test-1
stops:
  - {id: a, name: A, neighbourhood: A, address: "Via Roma 1", lat: 45.8, lon: 8.8, radius_m: 100}
visits:
  - {stop: a, weekday: mon, start: "09:00", end: "12:00", services: [paperwork_help]}
  - stop: b
    weekday: tue
    start: "09:00"
    end: "12:00"
    services: [paperwork_help]
  - {stop: a, weekday: mon, start: "11:00", end: "13:00", services: [knitting]}
"""


def test_yaml_errors_name_file_line_and_key():
    with pytest.raises(ConfigError) as err:
        parse_schedule_yaml(YAML, "s.yaml")
    assert [str(i) for i in err.value.issues] == [
        "s.yaml:11: visits[2].services[0]: Input should be 'maintenance_desk', 'paperwork_help', 'arrears_mediation', "
        "'energy_workshop', 'job_orientation' or 'cultural_mediation'",
    ]
    fixed = YAML.replace("knitting", "job_orientation")
    with pytest.raises(ConfigError) as err:
        parse_schedule_yaml(fixed, "s.yaml")
    lines = [str(i) for i in err.value.issues]
    assert "s.yaml:6: visits[1].stop: unknown stop 'b' (not in stops)" in lines
    assert any(x.startswith("s.yaml:11: visits[2]: overlaps visits[0] on mon") for x in lines)


def test_yaml_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_schedule_yaml(tmp_path / "missing.yaml")


CSV_HEAD = "stop,name,neighbourhood,address,lat,lon,radius_m,weekday,date,start,end,services\n"
CSV_A = 'a,A,A,"Via Roma 1, Varese",45.8,8.8,100,mon,,09:00,12:00,paperwork_help;job_orientation\n'


def test_csv_loads_and_reuses_stop_details():
    s = parse_schedule_csv(CSV_HEAD + CSV_A + "a,,,,,,,tue,,14:00,15:30,energy_workshop\n" + "a,,,,,,,,2026-05-09,10:00,11:00,arrears_mediation\n", "test-1")
    assert s.stop("a").address == "Via Roma 1, Varese"
    assert [(v.weekday, v.date, v.start, v.services) for v in s.visits] == [
        (Weekday.MON, None, time(9), [Service.PAPERWORK_HELP, Service.JOB_ORIENTATION]),
        (Weekday.TUE, None, time(14), [Service.ENERGY_WORKSHOP]),
        (None, date(2026, 5, 9), time(10), [Service.ARREARS_MEDIATION]),
    ]


@pytest.mark.parametrize(("rows", "expected"), [
    ("a,A,A,x,45.8,8.8,100,mon,,9h,12:00,paperwork_help\n", "f.csv:2: start: Input should be in a valid time format"),
    ("a,A,A,x,45.8,8.8,100,mon,,09:00,12:00,knitting\n", "f.csv:2: services: Input should be 'maintenance_desk'"),
    ("a,A,A,x,north,8.8,100,mon,,09:00,12:00,paperwork_help\n", "f.csv:2: lat: Input should be a valid number"),
    ("a,A,A,x,45.8,8.8,100,mon,,12:00,09:00,paperwork_help\n", "f.csv:2: weekday/date/start/end: end 09:00 is not after start 12:00"),
    ("a,A,A,x,45.8,8.8,100,monday,,09:00,12:00,paperwork_help\n", "f.csv:2: weekday: Input should be 'mon'"),
    (CSV_A + "a,B,,,,,,tue,,09:00,12:00,paperwork_help\n", "f.csv:3: name: 'B' differs from stop 'a' on line 2"),
    (CSV_A + "b,,,,,,,tue,,09:00,12:00,paperwork_help\n", "f.csv:3: name: required value is missing"),
    (CSV_A + "a,,,,,,,mon,,11:00,13:00,paperwork_help\n", "f.csv:3: start/end: overlaps visits[0] on mon"),
    (CSV_A + "a,,,,,,,mon,,14:00,15:00,paperwork_help,extra\n", "f.csv:3: row: 13 cells, the header has 12"),
])
def test_csv_errors_name_row_and_column(rows: str, expected: str):
    with pytest.raises(ConfigError) as err:
        parse_schedule_csv(CSV_HEAD + rows, "test-1", "f.csv")
    assert any(str(i).startswith(expected) for i in err.value.issues), [str(i) for i in err.value.issues]


def test_csv_header_and_empty_file():
    with pytest.raises(ConfigError, match=r"f.csv:1: header: missing columns \['services'\]; unknown columns \['servizi'\]"):
        parse_schedule_csv(CSV_HEAD.replace("services", "servizi") + CSV_A, "test-1", "f.csv")
    with pytest.raises(ConfigError, match="file is empty"):
        parse_schedule_csv("", "test-1", "f.csv")
    with pytest.raises(ConfigError, match="no rows"):
        parse_schedule_csv(CSV_HEAD, "test-1", "f.csv")


def test_csv_file_with_bom(tmp_path: Path):
    p = tmp_path / "s.csv"
    p.write_bytes(b"\xef\xbb\xbf" + (CSV_HEAD + CSV_A).encode())
    assert load_schedule_csv(p, "test-1").stops[0].id == "a"


# --- repository and settings ------------------------------------------------------------------


def test_repository_keeps_schedules_across_reopen(tmp_path: Path, demo: Schedule):
    path = tmp_path / "var" / "schedules.sqlite"
    repo = ScheduleRepository(path)
    assert repo.get("varese-1") is None
    repo.save(demo)
    other = daily()
    repo.save(other)
    reopened = ScheduleRepository(path)
    assert reopened.get("varese-1") == demo
    assert reopened.campers() == ["test-1", "varese-1"]
    changed = demo.model_copy(update={"exceptions": []})
    reopened.save(changed)  # replaces the whole schedule
    assert ScheduleRepository(path).get("varese-1") == changed
    assert reopened.delete("test-1") and not reopened.delete("test-1")
    assert ScheduleRepository(path).campers() == ["varese-1"]


def test_repository_refuses_an_unchecked_schedule(tmp_path: Path):
    bad = Schedule.model_validate(
        {"camper": "test-1", "stops": [stop("a")], "visits": [{"stop": "zz", "weekday": "mon", "start": "09:00", "end": "10:00",
                                                                 "services": ["paperwork_help"]}]},
        context={"defer_cross_check": True},
    )
    repo = ScheduleRepository(tmp_path / "s.sqlite")
    with pytest.raises(ValidationError, match="unknown stop 'zz'"):
        repo.save(bad)
    assert repo.get("test-1") is None


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert ScheduleSettings().schedule_path == Path("var/schedules.sqlite")
    assert ScheduleSettings().position_retention_days == 30
    monkeypatch.setenv("CAMPERHUB_SCHEDULE_PATH", str(tmp_path / "x.sqlite"))
    monkeypatch.setenv("CAMPERHUB_POSITION_RETENTION_DAYS", "7")
    cfg = ScheduleSettings()
    assert (cfg.schedule_path, cfg.position_retention_days) == (tmp_path / "x.sqlite", 7)
    ScheduleRepository().save(daily())
    assert (tmp_path / "x.sqlite").exists()
    monkeypatch.setenv("CAMPERHUB_POSITION_RETENTION_DAYS", "0")
    assert ScheduleSettings().position_retention_days == 0, "0 keeps the history forever"
    monkeypatch.setenv("CAMPERHUB_POSITION_RETENTION_DAYS", "-1")
    with pytest.raises(ValidationError, match="position_retention_days"):
        ScheduleSettings()
