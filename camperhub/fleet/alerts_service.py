"""The alerts service: evaluation rounds over every camper, notifications, ``camperhub alerts run``.

A round evaluates each camper of ``store.campers()`` at one ``now`` and hands
the transitions worth announcing to the notifiers. Failures are sorted as the
store sorts them: :class:`~camperhub.store.base.StoreUnavailable` (transient)
ends the round, is logged, and the next round tries again; nothing is lost,
because the state machine works from the data and the timers it stored. A
notifier that fails is counted and logged; it never stops a round.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from camperhub.fleet.alerts import AlertEvaluator
from camperhub.fleet.alerts_notify import Notifier
from camperhub.fleet.alerts_rules import AlertSettings, Transition
from camperhub.fleet.alerts_store import AlertRepository
from camperhub.store.base import Store, StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    """What one round did: campers evaluated, transitions, and whether the store failed."""

    campers: int = 0
    transitions: list[Transition] = field(default_factory=list)
    skipped: str | None = None


class AlertService:
    """Evaluates the fleet and announces changes through ``notifiers``."""

    def __init__(self, settings: AlertSettings, repository: AlertRepository, notifiers: Sequence[Notifier] = ()) -> None:
        self.evaluator = AlertEvaluator(settings, repository)
        self.repository = repository
        self.notifiers = list(notifiers)
        self.counters: Counter[str] = Counter()

    def run_round(self, store: Store, now: datetime | None = None) -> RoundResult:
        """One evaluation of every camper at ``now`` (default: the clock)."""
        now = now or datetime.now(UTC)
        result = RoundResult()
        try:
            campers = store.campers()
            with self.repository.session():
                self._evaluate_all(store, campers, now, result)
        except StoreUnavailable as exc:
            self.counters["rounds_skipped"] += 1
            result.skipped = str(exc)
            result.transitions = []  # rolled back with the session: nothing to announce
            log.warning("alerts: store unavailable, round skipped (%s); next round tries again", exc)
        else:
            for t in result.transitions:
                self.counters[t.action] += 1
                if t.notify:
                    self._announce(t)
        self.counters["rounds"] += 1
        return result

    def _evaluate_all(self, store: Store, campers: list[str], now: datetime, result: RoundResult) -> None:
        """Evaluate every camper inside the round's session; StoreUnavailable ends the round."""
        for camper in campers:
            try:
                ts = self.evaluator.evaluate(store, camper, now)
            except StoreRejected as exc:  # this camper's data or query is wrong: the others still count
                self.counters["camper_errors"] += 1
                log.warning("alerts: camper %s not evaluated: %s", camper, exc)
                continue
            result.campers += 1
            result.transitions += ts

    def _announce(self, t: Transition) -> None:
        assert t.alert is not None
        log.info("alert %s: %s %s (%s): %s", t.action, t.alert.camper, t.alert.kind.value, t.alert.severity, t.alert.message)
        for n in self.notifiers:
            try:
                n.notify(t)
            except Exception as exc:  # a notifier must never stop the evaluation
                self.counters["notify_errors"] += 1
                log.warning("alerts: notifier %s failed: %s", type(n).__name__, exc)

    def run_forever(self, store: Store, every_s: float, stop: threading.Event) -> None:
        """Rounds every ``every_s`` seconds until ``stop`` is set (a slow round delays the next)."""
        while not stop.is_set():
            try:
                self.run_round(store)
            except Exception:  # e.g. the alerts file's disk is full: say so loudly, try again next round
                self.counters["round_errors"] += 1
                log.exception("alerts: round failed; next round tries again")
            stop.wait(every_s)
