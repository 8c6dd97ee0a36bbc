"""Fleet alerts: evaluate every rule of a camper from the store (issue 7, part 2).

The pieces: :mod:`camperhub.fleet.alerts_rules` (rules as data, thresholds,
the pure state machine), :mod:`camperhub.fleet.alerts_store` (SQLite
repository: open alerts survive a restart and are not announced again),
this module (what the store says → one :class:`Check` per rule → transitions),
:mod:`camperhub.fleet.alerts_notify` (MQTT, webhook) and
:mod:`camperhub.fleet.alerts_service` (the rounds over all campers, the CLI).

Why it reads only ``latest`` and one short raw ``status`` series per camper:
the evaluation runs every 30 s for the whole fleet, so its cost per camper must
stay a few store queries (tests/bench/test_bench_alerts.py measures it). The
status stream is sparse (every 5 min, 30 s in live mode), so an hour of it is
a handful of rows, and it tells since when a condition holds (offline since
the Last Will, no GPS fix since ...) from the data itself, which keeps those
durations right across a restart of this service.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from camperhub.contract import Stream
from camperhub.fleet.alerts_rules import (
    Alert, AlertKind, AlertSettings, Check, Rule, Tracker, Transition, advance, build_rules, duration_check, minutes, with_camper,
)
from camperhub.fleet.alerts_store import AlertRepository
from camperhub.store.base import Store, StoredSample

__all__ = ["Alert", "AlertEvaluator", "AlertKind", "AlertRepository", "AlertSettings", "Observation", "open_repository"]

STATUS_FIELDS = ["state", "queue_depth", "gps_fix", "clock"]
#: energy fields that are bookkeeping, not readings: a sample with nothing else means no device answered
_BOOKKEEPING = {"seq", "readings_n"}


def open_repository(settings: AlertSettings | None = None) -> AlertRepository:
    """The alerts file of ``CAMPERHUB_ALERTS_PATH`` (for the API: ``open_alerts()``, ``history()``)."""
    return AlertRepository((settings or AlertSettings()).path)


class Observation:
    """What the store says about one camper at ``now``: the latest energy and status samples
    and the recent status series (index UTC time, columns :data:`STATUS_FIELDS`)."""

    def __init__(self, now: datetime, energy: StoredSample | None, status: StoredSample | None, status_series: pd.DataFrame) -> None:
        self.now = now
        self.energy = energy
        self.status = status
        self.status_series = status_series

    @classmethod
    def read(cls, store: Store, camper: str, now: datetime, window: timedelta) -> "Observation":
        """Two ``latest`` queries, plus the recent status series only when the latest status
        says something that needs its history (offline, no fix, unsynced clock, a queue):
        a healthy camper, the common case, costs two cheap queries (a series is the costly
        one: tests/bench/test_bench_alerts.py)."""
        energy = store.latest(camper, Stream.ENERGY)
        status = store.latest(camper, Stream.STATUS)
        series = pd.DataFrame(columns=STATUS_FIELDS)
        if status is not None and _needs_history(status.fields):
            series = store.series(camper, Stream.STATUS, STATUS_FIELDS, now - window, now + timedelta(milliseconds=1))
        return cls(now, energy, status, series)

    def age_s(self, sample: StoredSample | None) -> float | None:
        return None if sample is None else self.now.timestamp() - sample.ts_ms / 1000


class AlertEvaluator:
    """Turns observations into alert transitions, persisted in an :class:`AlertRepository`."""

    def __init__(self, settings: AlertSettings, repository: AlertRepository) -> None:
        self.settings = settings
        self.repository = repository
        self.rules: dict[AlertKind, Rule] = build_rules(settings)
        s = settings
        longest_min = max(s.offline_after_min, s.gps_no_fix_after_min, s.clock_unsynced_after_min, s.queue_window_min)
        #: the status window: twice the longest duration, so a run that began before it still shows as "the whole window"
        self.window = timedelta(minutes=2 * longest_min)

    def evaluate(self, store: Store, camper: str, now: datetime) -> list[Transition]:
        """Evaluate every rule of ``camper`` at ``now`` (aware UTC), store the result, and return
        the transitions that changed an alert (open, update, close); ``notify`` marks those to
        announce. StoreUnavailable from the store propagates (the round is skipped, nothing stored)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        obs = Observation.read(store, camper, now, self.window)
        return self.apply(camper, self.checks(obs), now)

    def apply(self, camper: str, checks: dict[AlertKind, Check], now: datetime) -> list[Transition]:
        """Advance the state machine of each rule with ``checks`` and persist; see :meth:`evaluate`."""
        alerts, trackers = self.repository.state_of(camper)
        changed: dict[AlertKind, Tracker] = {}
        out: list[Transition] = []
        for kind, rule in self.rules.items():
            check = checks.get(kind, Check(bad=False, good=False))
            before = trackers.get(kind, Tracker())
            tracker, t = advance(rule, check, before, alerts.get(kind), now, describe(rule, check))
            if tracker != before:
                changed[kind] = tracker
            if t.action != "none" and t.alert is not None:
                out.append(Transition(t.action, with_camper(t.alert, camper), t.notify))
        if changed or out:
            self.repository.apply(camper, changed, out)
        return out

    # -- one Check per rule ---------------------------------------------------------------
    def checks(self, obs: Observation) -> dict[AlertKind, Check]:
        """One :class:`Check` per rule from an observation (pure: tests build observations by hand)."""
        r, s, k = self.rules, self.settings, AlertKind
        out: dict[AlertKind, Check] = {}
        energy_age = obs.age_s(obs.energy)
        fresh = obs.energy is not None and energy_age is not None and energy_age <= s.data_gap_after_min * 60
        fields: dict[str, Any] = obs.energy.fields if (fresh and obs.energy is not None) else {}
        out[k.LOW_SOC] = r[k.LOW_SOC].check(_num(fields.get("battery_soc_pct")))
        temp = _num(fields.get("battery_temp_c"))
        out[k.BATTERY_OVER_TEMP] = r[k.BATTERY_OVER_TEMP].check(temp)
        out[k.BATTERY_UNDER_TEMP] = r[k.BATTERY_UNDER_TEMP].check(temp)
        vmin, vmax = _num(fields.get("cell_voltage_min_v")), _num(fields.get("cell_voltage_max_v"))
        out[k.CELL_IMBALANCE] = r[k.CELL_IMBALANCE].check(None if vmin is None or vmax is None else round((vmax - vmin) * 1000, 1))

        status = obs.status
        if status is None:
            return out  # no status ever: nothing known about the agent, every agent rule holds
        status_age = obs.age_s(status) or 0.0
        offline_rule = r[k.AGENT_OFFLINE]
        if status.fields.get("state") == "offline":
            since = _run_start(obs.status_series, lambda f: f["state"] == "offline", status)
            out[k.AGENT_OFFLINE] = duration_check(offline_rule, since, obs.now)
        elif status_age > offline_rule.raise_at:
            out[k.AGENT_OFFLINE] = duration_check(offline_rule, _ts(status), obs.now)
        else:
            out[k.AGENT_OFFLINE] = Check(bad=False, good=True, value=0.0)
        online = out[k.AGENT_OFFLINE].good
        if not online:
            return out  # offline: what the agent said last is stale; the other agent rules hold

        gps = status.fields.get("gps_fix")
        out[k.GPS_NO_FIX] = duration_check(
            r[k.GPS_NO_FIX], _run_start(obs.status_series, lambda f: pd.to_numeric(f["gps_fix"], errors="coerce") == 0, status) if gps == 0 else None, obs.now
        ) if gps is not None else Check(bad=False, good=True, value=None)
        out[k.CLOCK_UNSYNCED] = duration_check(
            r[k.CLOCK_UNSYNCED],
            _run_start(obs.status_series, lambda f: f["clock"] == "unsynced", status) if status.fields.get("clock") == "unsynced" else None,
            obs.now,
        )
        out[k.QUEUE_GROWING] = r[k.QUEUE_GROWING].check(_queue_growth(obs, s.queue_window_min))

        gap_rule = r[k.DATA_GAP]
        if obs.energy is None:
            out[k.DATA_GAP] = Check(bad=False, good=False)  # never any energy: a camper without devices yet
        elif energy_age is not None and energy_age > gap_rule.raise_at:
            out[k.DATA_GAP] = duration_check(gap_rule, _ts(obs.energy), obs.now)
        else:
            out[k.DATA_GAP] = Check(bad=False, good=True, value=round(energy_age or 0.0))

        last_error = status.fields.get("last_error")
        if fresh and not (set(fields) - _BOOKKEEPING):
            out[k.DEVICE_NOT_ANSWERING] = Check(bad=True, good=False, value="no device answered the last poll")
        elif isinstance(last_error, str) and last_error.strip():
            out[k.DEVICE_NOT_ANSWERING] = Check(bad=True, good=False, value=last_error.strip()[:200])
        elif fresh:
            out[k.DEVICE_NOT_ANSWERING] = Check(bad=False, good=True, value=None)
        return out


def describe(rule: Rule, check: Check) -> str:
    """The staff message (English) of a rule's current check."""
    k, v = AlertKind, check.value
    if rule.kind in (k.LOW_SOC, k.BATTERY_OVER_TEMP, k.BATTERY_UNDER_TEMP, k.CELL_IMBALANCE):
        what = {k.LOW_SOC: "Battery state of charge", k.BATTERY_OVER_TEMP: "Battery temperature",
                k.BATTERY_UNDER_TEMP: "Battery temperature", k.CELL_IMBALANCE: "Cell voltage spread"}[rule.kind]
        if v is None:
            return f"{what}: no recent reading"
        side = "below" if rule.direction == "below" else "above"
        other = "above" if side == "below" else "below"
        if check.bad:
            return f"{what} {v:g} {rule.unit} ({side} {rule.raise_at:g} {rule.unit})"
        if check.good:
            return f"{what} back to {v:g} {rule.unit} ({other} {rule.clear_at:g} {rule.unit})"
        return f"{what} {v:g} {rule.unit} (between {min(rule.raise_at, rule.clear_at):g} and {max(rule.raise_at, rule.clear_at):g} {rule.unit})"
    if rule.kind == k.QUEUE_GROWING:
        return (f"Agent queue grew by {v:g} samples in the window (data is not getting through)" if check.bad and isinstance(v, float)
                else "Agent queue is no longer growing")
    if rule.kind == k.DEVICE_NOT_ANSWERING:
        return f"Device not answering: {v}" if check.bad else "Devices answer again"
    held = minutes(float(v)) if isinstance(v, (int, float)) else ""
    bad_text = {k.AGENT_OFFLINE: "Agent offline (or silent) for", k.GPS_NO_FIX: "GPS without fix for",
                k.DATA_GAP: "No energy data while the agent is online for", k.CLOCK_UNSYNCED: "Agent clock unsynchronised for"}
    good_text = {k.AGENT_OFFLINE: "Agent online again", k.GPS_NO_FIX: "GPS has a fix again", k.DATA_GAP: "Energy data flows again",
                 k.CLOCK_UNSYNCED: "Agent clock synchronised again"}
    return f"{bad_text[rule.kind]} {held}" if check.bad else good_text[rule.kind]


def _needs_history(fields: dict[str, Any]) -> bool:
    """Whether a status needs the recent series: a condition whose start or trend matters."""
    return (fields.get("state") == "offline" or _num(fields.get("gps_fix")) == 0 or fields.get("clock") == "unsynced"
            or (_num(fields.get("queue_depth")) or 0) > 0)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _ts(sample: StoredSample) -> datetime:
    return pd.Timestamp(sample.ts_ms, unit="ms", tz="UTC").to_pydatetime()


def _run_start(series: pd.DataFrame, holds: Any, latest: StoredSample) -> datetime:
    """Start of the trailing run of status rows for which ``holds(frame)`` (a boolean Series)
    is true (the latest sample holds by the caller's check); the window's first row when the
    run fills the window."""
    start = _ts(latest)
    if not len(series):
        return start
    mask = holds(series.sort_index()).fillna(False).astype(bool)
    falses = mask.index[~mask.to_numpy()]
    run = mask.index[mask.index > falses[-1]] if len(falses) else mask.index
    return min(start, run[0].to_pydatetime()) if len(run) else start


def _queue_growth(obs: Observation, window_min: float) -> float | None:
    """How many samples the agent's queue gained over the queue window (None: too few readings)."""
    q = pd.to_numeric(obs.status_series.get("queue_depth", pd.Series(dtype="float64")), errors="coerce")
    q = q[q.index >= obs.now - timedelta(minutes=window_min)].dropna() if len(q) else q
    latest = _num(obs.status.fields.get("queue_depth")) if obs.status else None
    if latest == 0:
        return 0.0
    if len(q) < 2:
        return None
    return float(q.sort_index().iloc[-1] - q.sort_index().iloc[0])
