"""Alert rules and state machine, pure: hysteresis and debounce on constructed sequences.

Every kind opens and closes on a constructed observation (no store: the
evaluator's ``checks`` take an :class:`Observation` built by hand; the store
path is tests/camperhub/fleet/test_alerts_service.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from camperhub.contract import Stream
from camperhub.fleet.alerts import STATUS_FIELDS, AlertEvaluator, Observation
from camperhub.fleet.alerts_rules import AlertKind, AlertSettings, Check, Tracker, advance, build_rules
from camperhub.fleet.alerts_store import AlertRepository
from camperhub.store.base import StoredSample

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RULES = build_rules(AlertSettings())
LOW_SOC = RULES[AlertKind.LOW_SOC]


def run(values: list[float | None], step_s: float = 30, kind: AlertKind = AlertKind.LOW_SOC) -> list[tuple[int, str, str | None]]:
    """Feed ``values`` every ``step_s`` through the state machine; (index, action, severity) of each change."""
    rule = RULES[kind]
    tracker, current, out = Tracker(), None, []
    for i, v in enumerate(values):
        tracker, t = advance(rule, rule.check(v), tracker, current, T0 + i * step_s * S, "m")
        if t.action != "none":
            out.append((i, t.action, t.alert.severity if t.notify and t.alert else None))
            current = t.alert if t.alert and t.alert.state == "open" else None
    return out


def test_low_soc_opens_after_two_minutes_below_and_closes_after_five_above() -> None:
    # 30-s steps: below 20 % from step 1; open needs 120 s below → step 5
    changes = run([50, 19, 19, 19, 19, 19, 19, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35])
    assert changes[0] == (5, "open", "warning")
    assert all(a == "update" and s is None for _, a, s in changes[1:-1])  # silent updates while open
    assert changes[-1] == (17, "close", "warning")  # above 30 % from step 7: 300 s later is step 17


def test_soc_oscillating_around_the_threshold_does_not_flap() -> None:
    # 19/21 every 30 s: never 2 min continuously below 20 → never opens
    assert run([19, 21] * 40) == []
    # once open, 19/25 (inside the hysteresis band above 20 but below 30) never closes it
    changes = run([15] * 6 + [19, 25] * 40)
    assert [a for _, a, _ in changes if a != "update"] == ["open"]
    # 19/35: above the clear threshold, but never for 5 minutes → stays open
    changes = run([15] * 6 + [19, 35] * 40)
    assert [a for _, a, _ in changes if a != "update"] == ["open"]


def test_missing_reading_holds_the_state_and_restarts_the_timers() -> None:
    changes = run([15, 15, 15, None, 15, 15, 15, 15, 15])  # the gap restarts the 2-min timer at step 4
    assert changes[0] == (8, "open", "warning")


def test_severity_change_notifies_value_change_does_not() -> None:
    changes = run([15] * 5 + [14, 13, 9, 8, 12])
    assert changes[0] == (4, "open", "warning")
    notified = [(i, a, s) for i, a, s in changes if s is not None]
    assert notified == [(4, "open", "warning"), (7, "update", "critical"), (9, "update", "warning")]


def test_reopening_after_close_is_a_new_alert() -> None:
    rule, tracker, current, ids = LOW_SOC, Tracker(), None, []
    seq = [10] * 6 + [50] * 12 + [10] * 6
    for i, v in enumerate(seq):
        tracker, t = advance(rule, rule.check(v), tracker, current, T0 + i * 30 * S, "m")
        if t.action == "open":
            ids.append(t.alert.id)
        if t.alert is not None:
            current = t.alert if t.alert.state == "open" else None
    assert len(ids) == 2 and ids[0] != ids[1]


def test_data_since_shortens_the_debounce() -> None:
    rule = RULES[AlertKind.AGENT_OFFLINE]
    check = Check(bad=True, good=False, value=1200, since=T0 - 20 * 60 * S)
    tracker, t = advance(rule, check, Tracker(), None, T0, "offline")
    assert t.action == "open" and tracker.bad_since == T0 - 20 * 60 * S


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CAMPERHUB_ALERT_LOW_SOC_CLEAR_PCT": "15"}, "CAMPERHUB_ALERT_LOW_SOC_CLEAR_PCT"),
        ({"CAMPERHUB_ALERT_OVER_TEMP_CLEAR_C": "50"}, "CAMPERHUB_ALERT_OVER_TEMP_CLEAR_C"),
        ({"CAMPERHUB_ALERT_UNDER_TEMP_CLEAR_C": "-5"}, "CAMPERHUB_ALERT_UNDER_TEMP_CLEAR_C"),
        ({"CAMPERHUB_ALERT_CELL_IMBALANCE_CLEAR_MV": "150"}, "CAMPERHUB_ALERT_CELL_IMBALANCE_CLEAR_MV"),
        ({"CAMPERHUB_ALERT_WEBHOOK_URL": "ftp://x"}, "CAMPERHUB_ALERT_WEBHOOK_URL"),
    ],
)
def test_settings_refuse_a_clear_threshold_on_the_wrong_side(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match=named):
        AlertSettings()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAMPERHUB_ALERT_LOW_SOC_RAISE_PCT", "25")
    monkeypatch.setenv("CAMPERHUB_ALERTS_PATH", str(tmp_path / "a.sqlite"))
    s = AlertSettings()
    assert s.low_soc_raise_pct == 25 and s.path == tmp_path / "a.sqlite"
    assert build_rules(s)[AlertKind.LOW_SOC].raise_at == 25


# -- every kind opens and closes on constructed observations ----------------------------------------


def energy(at: datetime, **fields: Any) -> StoredSample:
    return StoredSample("van-1", Stream.ENERGY, int(at.timestamp() * 1000), {"seq": 1, **fields})


def status(at: datetime, **fields: Any) -> StoredSample:
    return StoredSample("van-1", Stream.STATUS, int(at.timestamp() * 1000), {"seq": 1, "state": "online", **fields})


def obs(now: datetime, e: StoredSample | None, st: StoredSample | None, history: list[StoredSample] = ()) -> Observation:
    rows = [*history, *([st] if st else [])]
    frame = pd.DataFrame(
        [{f: r.fields.get(f) for f in STATUS_FIELDS} for r in rows],
        index=pd.DatetimeIndex([pd.Timestamp(r.ts_ms, unit="ms", tz="UTC") for r in rows], name="time"),
        columns=STATUS_FIELDS,
    )
    return Observation(now, e, st, frame)


OK = {"battery_soc_pct": 80.0, "battery_temp_c": 20.0, "cell_voltage_min_v": 3.30, "cell_voltage_max_v": 3.32}
M = timedelta(minutes=1)
CASES: dict[AlertKind, tuple[Any, Any]] = {
    # kind: (bad observation builder, good observation builder), each a function of now
    AlertKind.LOW_SOC: (lambda n: obs(n, energy(n, **{**OK, "battery_soc_pct": 12.0}), status(n)),
                        lambda n: obs(n, energy(n, **OK), status(n))),
    AlertKind.BATTERY_OVER_TEMP: (lambda n: obs(n, energy(n, **{**OK, "battery_temp_c": 50.0}), status(n)),
                                  lambda n: obs(n, energy(n, **OK), status(n))),
    AlertKind.BATTERY_UNDER_TEMP: (lambda n: obs(n, energy(n, **{**OK, "battery_temp_c": -3.0}), status(n)),
                                   lambda n: obs(n, energy(n, **OK), status(n))),
    AlertKind.CELL_IMBALANCE: (lambda n: obs(n, energy(n, **{**OK, "cell_voltage_max_v": 3.45}), status(n)),
                               lambda n: obs(n, energy(n, **OK), status(n))),
    AlertKind.AGENT_OFFLINE: (lambda n: obs(n, energy(n - 30 * M, **OK), status(n - 20 * M, state="offline")),
                              lambda n: obs(n, energy(n, **OK), status(n))),
    AlertKind.QUEUE_GROWING: (lambda n: obs(n, energy(n, **OK), status(n, queue_depth=400), [status(n - 20 * M, queue_depth=100)]),
                              lambda n: obs(n, energy(n, **OK), status(n, queue_depth=0), [status(n - 20 * M, queue_depth=100)])),
    AlertKind.GPS_NO_FIX: (lambda n: obs(n, energy(n, **OK), status(n, gps_fix=0), [status(n - 15 * M, gps_fix=0)]),
                           lambda n: obs(n, energy(n, **OK), status(n, gps_fix=3))),
    AlertKind.DATA_GAP: (lambda n: obs(n, energy(n - 25 * M, **OK), status(n)),
                         lambda n: obs(n, energy(n, **OK), status(n))),
    AlertKind.CLOCK_UNSYNCED: (lambda n: obs(n, energy(n, **OK), status(n, clock="unsynced"), [status(n - 12 * M, clock="unsynced")]),
                               lambda n: obs(n, energy(n, **OK), status(n, clock="gps"))),
    AlertKind.DEVICE_NOT_ANSWERING: (lambda n: obs(n, energy(n), status(n)),
                                     lambda n: obs(n, energy(n, **OK), status(n))),
}


@pytest.mark.parametrize("kind", list(AlertKind), ids=lambda k: k.value)
def test_every_kind_opens_and_closes(kind: AlertKind, tmp_path: Path) -> None:
    ev = AlertEvaluator(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    bad, good = CASES[kind]
    now, seen = T0, []
    for _ in range(12):  # 6 min of bad observations every 30 s
        seen += [(t.action, t.alert.kind) for t in ev.apply("van-1", ev.checks(bad(now)), now)]
        now += 30 * S
    assert ("open", kind) in seen
    assert {k for a, k in seen if a == "open"} == {kind}, f"only {kind} should open, got {seen}"
    assert [a.kind for a in ev.repository.open_alerts("van-1")] == [kind]
    closed = []
    for _ in range(24):  # 12 min of good observations
        closed += [t for t in ev.apply("van-1", ev.checks(good(now)), now) if t.action == "close"]
        now += 30 * S
    assert [t.alert.kind for t in closed] == [kind]
    assert ev.repository.open_alerts("van-1") == []
    (alert,) = ev.repository.history("van-1")
    assert alert.state == "closed" and alert.closed_at is not None and alert.opened_at < alert.closed_at


def test_the_good_case_opens_nothing(tmp_path: Path) -> None:
    ev = AlertEvaluator(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    now = T0
    for _ in range(20):
        assert ev.apply("van-1", ev.checks(obs(now, energy(now, **OK), status(now, gps_fix=3, clock="gps", queue_depth=0))), now) == []
        now += 30 * S


def test_offline_agent_does_not_raise_gps_or_data_gap(tmp_path: Path) -> None:
    ev = AlertEvaluator(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    now = T0
    checks = ev.checks(obs(now, energy(now - 60 * M, **OK), status(now - 40 * M, state="offline", gps_fix=0, clock="unsynced")))
    assert checks[AlertKind.AGENT_OFFLINE].bad
    assert not any(c.bad for k, c in checks.items() if k != AlertKind.AGENT_OFFLINE)


def test_repository_keeps_one_open_alert_per_camper_and_kind(tmp_path: Path) -> None:
    repo = AlertRepository(tmp_path / "alerts.sqlite")
    ev = AlertEvaluator(AlertSettings(), repo)
    bad = CASES[AlertKind.LOW_SOC][0]
    for i in range(30):
        ev.apply("van-1", ev.checks(bad(T0 + i * 30 * S)), T0 + i * 30 * S)
    (a,) = repo.open_alerts()
    assert a.updated_at == T0 + 29 * 30 * S and a.value == 12.0
    assert a.model_dump(mode="json")["kind"] == "low_soc"
    assert repo.get(a.id) == a
    assert repo.history(since=T0 + 3600 * S) == [a]  # still open: part of any later history


def test_a_condition_counts_from_the_start_of_its_trailing_run(tmp_path: Path) -> None:
    """GPS fixed 12 min ago, no fix since 8 min: 8 min held, below the 10-min threshold (pending)."""
    ev = AlertEvaluator(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    history = [status(T0 - 30 * M, gps_fix=0), status(T0 - 12 * M, gps_fix=3), status(T0 - 8 * M, gps_fix=0)]
    check = ev.checks(obs(T0, energy(T0, **OK), status(T0, gps_fix=0), history))[AlertKind.GPS_NO_FIX]
    assert (check.bad, check.good, check.value) == (False, False, 8 * 60)
    check = ev.checks(obs(T0 + 3 * M, energy(T0 + 3 * M, **OK), status(T0 + 3 * M, gps_fix=0), history))[AlertKind.GPS_NO_FIX]
    assert check.bad and check.value == 11 * 60 and check.since == T0 - 8 * M
