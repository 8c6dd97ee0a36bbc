"""Fleet alert rules and their state machine: pure, no I/O (issue 7, part 2).

Why a state machine with two thresholds and two timers: a battery at 19-21 %
or a 4G link that drops every few minutes must not page the staff every
evaluation round. Each rule therefore has

* a *raise* and a *clear* threshold (hysteresis): the condition is "bad"
  beyond the raise threshold, "good" beyond the clear threshold, and between
  the two it is neither, which holds whatever state the alert is in and
  restarts both timers;
* a minimum duration before opening (``open_after_s``) and before closing
  (``close_after_s``) (debounce): the condition must stay bad (good) for that
  long, measured on the evaluation clock, or from the data itself when the
  rule knows since when the condition holds (``Check.since``: "offline since
  the Last Will's timestamp"), which keeps that duration right after a restart.

The thresholds come from :class:`AlertSettings` (``CAMPERHUB_ALERT_*``),
validated so that each clear threshold lies on the right side of its raise
threshold (otherwise an alert could never close, or would flap on one value).

:func:`advance` is the whole state machine; :mod:`camperhub.fleet.alerts_service`
builds a :class:`Check` per rule from the store and persists the result with
:mod:`camperhub.fleet.alerts_store`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertKind(StrEnum):
    """What an alert is about; at most one open alert per (camper, kind)."""

    LOW_SOC = "low_soc"
    BATTERY_OVER_TEMP = "battery_over_temp"
    BATTERY_UNDER_TEMP = "battery_under_temp"
    CELL_IMBALANCE = "cell_imbalance"
    AGENT_OFFLINE = "agent_offline"
    QUEUE_GROWING = "queue_growing"
    GPS_NO_FIX = "gps_no_fix"
    DATA_GAP = "data_gap"
    CLOCK_UNSYNCED = "clock_unsynced"
    DEVICE_NOT_ANSWERING = "device_not_answering"


Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class Alert(BaseModel):
    """One alert as staff see it (API, MQTT payload, webhook body: ``model_dump(mode="json")``).

    ``value`` is the last value the rule saw (a number in ``unit``, or a text
    such as a device error); times are UTC.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    camper: str
    kind: AlertKind
    severity: Severity
    state: Literal["open", "closed"]
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    value: float | str | None = None
    unit: str | None = None
    message: str


@dataclass(frozen=True)
class Rule:
    """A rule as data. ``direction`` says which side of ``raise_at`` is bad: ``below``
    (low SoC) or ``above`` (over temperature); ``critical_at`` (optional) lies further on
    that side and escalates the severity. Duration rules (agent offline, ...) compare a
    duration in seconds, so their thresholds are seconds and ``direction`` is ``above``."""

    kind: AlertKind
    severity: Severity
    source: str  # the field or derived quantity the evaluator reads (documentation, messages)
    unit: str
    direction: Literal["below", "above"]
    raise_at: float
    clear_at: float
    open_after_s: float
    close_after_s: float
    critical_at: float | None = None

    def is_bad(self, value: float) -> bool:
        return value < self.raise_at if self.direction == "below" else value > self.raise_at

    def is_good(self, value: float) -> bool:
        return value > self.clear_at if self.direction == "below" else value < self.clear_at

    def severity_of(self, value: float) -> Severity:
        if self.critical_at is not None:
            worse = value < self.critical_at if self.direction == "below" else value > self.critical_at
            if worse:
                return "critical"
        return self.severity

    def check(self, value: float | None, since: datetime | None = None) -> "Check":
        """The :class:`Check` of a numeric reading (None: not known now, which holds the state)."""
        if value is None:
            return Check(bad=False, good=False, value=None)
        bad = self.is_bad(value)
        return Check(bad=bad, good=self.is_good(value), value=value, severity=self.severity_of(value) if bad else None,
                     since=since if bad else None)


@dataclass(frozen=True)
class Check:
    """What one evaluation found for one rule: bad (raise side), good (clear side), or
    neither (between the thresholds, or not known). ``since``: when the bad condition
    began according to the data, if the rule knows. ``severity``: None = the rule's own."""

    bad: bool
    good: bool
    value: float | str | None = None
    severity: Severity | None = None
    since: datetime | None = None
    message: str | None = None


@dataclass(frozen=True)
class Tracker:
    """The debounce timers of one (camper, kind): since when the condition is bad / good."""

    bad_since: datetime | None = None
    good_since: datetime | None = None


Action = Literal["none", "open", "update", "close"]


@dataclass(frozen=True)
class Transition:
    """What :func:`advance` decided. ``notify``: tell MQTT/webhook (open, close, a change of
    severity), as opposed to a silent update of value and ``updated_at``."""

    action: Action
    alert: Alert | None
    notify: bool


def advance(rule: Rule, check: Check, tracker: Tracker, current: Alert | None, now: datetime, message: str) -> tuple[Tracker, Transition]:
    """One step of the state machine for one (camper, kind).

    ``current`` is the open alert of that pair, if any (closed ones are history). Returns
    the new timers and the transition; at most one alert is open per pair because an
    open alert is only ever updated or closed here, never opened again.
    """
    if current is not None and current.state != "open":
        current = None
    if check.bad:
        bad_since = tracker.bad_since or now
        if check.since is not None:
            bad_since = min(bad_since, check.since)
        tracker = Tracker(bad_since=bad_since, good_since=None)
        severity = check.severity or rule.severity
        if current is None:
            if (now - bad_since).total_seconds() >= rule.open_after_s:
                alert = Alert(id=uuid.uuid4().hex, camper="", kind=rule.kind, severity=severity, state="open",
                              opened_at=now, updated_at=now, value=check.value, unit=rule.unit or None, message=message)
                return tracker, Transition("open", alert, True)
            return tracker, Transition("none", None, False)
        changed = severity != current.severity
        alert = current.model_copy(update={"severity": severity, "value": check.value, "updated_at": now, "message": message})
        return tracker, Transition("update", alert, changed)
    if check.good:
        good_since = tracker.good_since or now
        tracker = Tracker(bad_since=None, good_since=good_since)
        if current is not None and (now - good_since).total_seconds() >= rule.close_after_s:
            alert = current.model_copy(update={"state": "closed", "closed_at": now, "updated_at": now, "value": check.value,
                                               "message": message})
            return tracker, Transition("close", alert, True)
        return tracker, Transition("none", None, False)
    # between the thresholds or not known: hold, and restart both debounce timers
    return Tracker(), Transition("none", None, False)


class AlertSettings(BaseSettings):
    """Alert thresholds and delivery, from ``CAMPERHUB_ALERT_*`` (path: ``CAMPERHUB_ALERTS_PATH``).

    Defaults fit the camper's 12.8 V LiFePO4 (charging below 0 °C harms it, BMSs cut
    near 55-60 °C) and the edge agent's 5-minute status interval in normal mode.
    """

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_ALERT_", extra="ignore", populate_by_name=True)

    path: Path = Field(default=Path("var/alerts.sqlite"), validation_alias="CAMPERHUB_ALERTS_PATH")
    every_s: float = Field(default=30, gt=0, le=3600, description="Seconds between evaluation rounds")

    low_soc_raise_pct: float = Field(default=20, ge=0, le=100)
    low_soc_clear_pct: float = Field(default=30, ge=0, le=100)
    low_soc_critical_pct: float = Field(default=10, ge=0, le=100)
    low_soc_open_after_s: float = Field(default=120, ge=0)
    low_soc_close_after_s: float = Field(default=300, ge=0)

    over_temp_raise_c: float = Field(default=45, ge=-40, le=100)
    over_temp_clear_c: float = Field(default=40, ge=-40, le=100)
    over_temp_critical_c: float = Field(default=55, ge=-40, le=100)
    under_temp_raise_c: float = Field(default=0, ge=-40, le=100)
    under_temp_clear_c: float = Field(default=5, ge=-40, le=100)
    under_temp_critical_c: float = Field(default=-10, ge=-40, le=100)
    temp_open_after_s: float = Field(default=60, ge=0)
    temp_close_after_s: float = Field(default=300, ge=0)

    cell_imbalance_raise_mv: float = Field(default=100, gt=0, le=5000)
    cell_imbalance_clear_mv: float = Field(default=50, ge=0, le=5000)
    cell_imbalance_critical_mv: float = Field(default=300, gt=0, le=5000)
    cell_imbalance_open_after_s: float = Field(default=300, ge=0)
    cell_imbalance_close_after_s: float = Field(default=600, ge=0)

    offline_after_min: float = Field(default=15, gt=0, description="Offline (Last Will) or no status for this long")
    gps_no_fix_after_min: float = Field(default=10, gt=0)
    data_gap_after_min: float = Field(default=10, gt=0, description="No energy sample this long while the agent is online")
    clock_unsynced_after_min: float = Field(default=10, gt=0)
    queue_window_min: float = Field(default=30, gt=0, description="Window over which the status queue_depth must grow")
    queue_growth_raise: float = Field(default=50, gt=0, description="Queued samples added over the window that open the alert")
    device_open_after_s: float = Field(default=60, ge=0)
    close_after_s: float = Field(default=300, ge=0, description="Debounce before closing the duration alerts")

    webhook_url: SecretStr | None = Field(default=None, description="POST every notification here as JSON (may hold a secret)")
    webhook_timeout_s: float = Field(default=5, gt=0, le=60)
    webhook_retries: int = Field(default=3, ge=0, le=10)
    webhook_backoff_s: float = Field(default=1, ge=0, le=60)

    @model_validator(mode="after")
    def _sides(self) -> "AlertSettings":
        def env(name: str) -> str:
            return f"CAMPERHUB_ALERT_{name.upper()}"

        def order(low: str, high: str) -> None:
            if not getattr(self, low) < getattr(self, high):
                raise ValueError(f"{env(low)} ({getattr(self, low)}) must be below {env(high)} ({getattr(self, high)}): "
                                 "the clear threshold must lie beyond the raise threshold, the critical one before it")

        order("low_soc_critical_pct", "low_soc_raise_pct")
        order("low_soc_raise_pct", "low_soc_clear_pct")
        order("over_temp_clear_c", "over_temp_raise_c")
        order("over_temp_raise_c", "over_temp_critical_c")
        order("under_temp_critical_c", "under_temp_raise_c")
        order("under_temp_raise_c", "under_temp_clear_c")
        order("cell_imbalance_clear_mv", "cell_imbalance_raise_mv")
        order("cell_imbalance_raise_mv", "cell_imbalance_critical_mv")
        if self.webhook_url is not None:
            url = self.webhook_url.get_secret_value()
            if not url.startswith(("http://", "https://")):
                raise ValueError("CAMPERHUB_ALERT_WEBHOOK_URL must start with http:// or https://")
        return self


def build_rules(s: AlertSettings) -> dict[AlertKind, Rule]:
    """The rules as data, from the settings. Duration rules count seconds: bad beyond
    N minutes, good at zero (the condition is gone), so "between" never happens for them."""
    k = AlertKind
    rules = [
        Rule(k.LOW_SOC, "warning", "battery_soc_pct", "%", "below", s.low_soc_raise_pct, s.low_soc_clear_pct,
             s.low_soc_open_after_s, s.low_soc_close_after_s, s.low_soc_critical_pct),
        Rule(k.BATTERY_OVER_TEMP, "warning", "battery_temp_c", "°C", "above", s.over_temp_raise_c, s.over_temp_clear_c,
             s.temp_open_after_s, s.temp_close_after_s, s.over_temp_critical_c),
        Rule(k.BATTERY_UNDER_TEMP, "warning", "battery_temp_c", "°C", "below", s.under_temp_raise_c, s.under_temp_clear_c,
             s.temp_open_after_s, s.temp_close_after_s, s.under_temp_critical_c),
        Rule(k.CELL_IMBALANCE, "warning", "cell_voltage_max_v - cell_voltage_min_v", "mV", "above", s.cell_imbalance_raise_mv,
             s.cell_imbalance_clear_mv, s.cell_imbalance_open_after_s, s.cell_imbalance_close_after_s, s.cell_imbalance_critical_mv),
        Rule(k.AGENT_OFFLINE, "warning", "status state/age", "s", "above", s.offline_after_min * 60, 0.5, 0, s.close_after_s),
        Rule(k.QUEUE_GROWING, "warning", "status queue_depth growth", "samples", "above", s.queue_growth_raise, 0.5, 0,
             s.close_after_s),
        Rule(k.GPS_NO_FIX, "info", "status gps_fix", "s", "above", s.gps_no_fix_after_min * 60, 0.5, 0, s.close_after_s),
        Rule(k.DATA_GAP, "warning", "energy age while online", "s", "above", s.data_gap_after_min * 60, 0.5, 0, s.close_after_s),
        Rule(k.CLOCK_UNSYNCED, "warning", "status clock", "s", "above", s.clock_unsynced_after_min * 60, 0.5, 0, s.close_after_s),
        Rule(k.DEVICE_NOT_ANSWERING, "warning", "energy without fields / status last_error", "", "above", 0.5, 0.5,
             s.device_open_after_s, s.close_after_s),
    ]
    return {r.kind: r for r in rules}


def with_camper(alert: Alert, camper: str) -> Alert:
    """The alert :func:`advance` made, stamped with its camper (advance knows only the rule)."""
    return alert if alert.camper == camper else alert.model_copy(update={"camper": camper})


def duration_check(rule: Rule, since: datetime | None, now: datetime) -> Check:
    """A duration rule's check: bad once the condition has held longer than ``raise_at``
    seconds since ``since`` (None: the condition does not hold now, which is good)."""
    if since is None:
        return Check(bad=False, good=True, value=0.0)
    held_s = max(0.0, (now - since).total_seconds())
    if held_s > rule.raise_at:
        return Check(bad=True, good=False, value=round(held_s), since=since)
    return Check(bad=False, good=False, value=round(held_s))  # pending: neither bad nor cleared yet


def minutes(seconds: float) -> str:
    """"42 min" / "3 h 05 min": durations in staff messages."""
    m = int(seconds // 60)
    return f"{m} min" if m < 60 else f"{m // 60} h {m % 60:02d} min"


__all__ = [
    "Action", "Alert", "AlertKind", "AlertSettings", "Check", "Rule", "SEVERITY_RANK", "Severity", "Tracker", "Transition",
    "advance", "build_rules", "duration_check", "minutes", "with_camper",
]
