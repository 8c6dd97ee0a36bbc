"""``camperhub alerts run|list``: the alerts service and a look at its alerts.

Kept light at import time (argparse only) because ``camperhub/cli.py`` builds
every verb's parser on each start, on a Pi too.
"""

from __future__ import annotations

import argparse
import sys


def add_alerts_verbs(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``alerts run`` and ``alerts list`` under ``camperhub``."""
    a = sub.add_parser("alerts", help="fleet alerts: run the evaluation service, list alerts").add_subparsers(
        dest="alerts_verb", required=True, metavar="VERB"
    )
    s = a.add_parser("run", help="evaluate every camper each round, publish changes on MQTT and the webhook (CAMPERHUB_ALERT_*)")
    s.add_argument("--every", type=float, default=None, help="seconds between rounds (default CAMPERHUB_ALERT_EVERY_S, else 30)")
    s.add_argument("--no-mqtt", action="store_true", help="do not publish on MQTT (a laptop without a broker)")
    s.set_defaults(func=cmd_alerts_run)
    s = a.add_parser("list", help="open alerts (or, with --all, the recent history)")
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.add_argument("--all", action="store_true", help="closed alerts too (newest first)")
    s.add_argument("--camper", default=None)
    s.set_defaults(func=cmd_alerts_list)


def _settings(prog: str):  # -> AlertSettings | None
    from pydantic import ValidationError

    from camperhub.fleet.alerts_rules import AlertSettings

    try:
        return AlertSettings()
    except ValidationError as exc:
        for err in exc.errors():
            where = "_".join(str(p) for p in err["loc"]).upper()
            var = where if where.startswith("CAMPERHUB_") else f"CAMPERHUB_ALERT_{where}"
            print(f"{prog}: {var}: {err['msg']}" if where else f"{prog}: {err['msg']}", file=sys.stderr)
        return None


def cmd_alerts_run(args: argparse.Namespace) -> int:
    """Run the evaluation rounds until SIGTERM/SIGINT."""
    import logging
    import signal
    import threading

    from pydantic import ValidationError

    from camperhub.fleet.alerts_notify import MqttAlertPublisher, WebhookNotifier
    from camperhub.fleet.alerts_service import AlertService
    from camperhub.fleet.alerts_store import AlertRepository
    from camperhub.settings import MqttClientSettings, StoreSettings
    from camperhub.store import open_store
    from camperhub.store.base import StoreError

    prog = "camperhub alerts run"
    settings = _settings(prog)
    if settings is None:
        return 78
    if args.every is not None and args.every <= 0:
        print(f"{prog}: --every must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        store_settings = StoreSettings()
        mqtt = None if args.no_mqtt else MqttClientSettings()
    except ValidationError as exc:
        for err in exc.errors():
            print(f"{prog}: {err['msg']}", file=sys.stderr)
        return 78
    try:
        store = open_store(store_settings)
    except (StoreError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 78
    notifiers: list = []
    if mqtt is not None:
        publisher = MqttAlertPublisher(mqtt.mqtt_url, mqtt.mqtt_ca_file)
        publisher.start()
        notifiers.append(publisher)
    if settings.webhook_url is not None:
        hook = WebhookNotifier(settings.webhook_url.get_secret_value(), timeout_s=settings.webhook_timeout_s,
                               retries=settings.webhook_retries, backoff_s=settings.webhook_backoff_s)
        hook.start()
        notifiers.append(hook)
    service = AlertService(settings, AlertRepository(settings.path), notifiers)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    every = args.every or settings.every_s
    logging.getLogger(__name__).info("alerts: evaluating every %g s, alerts in %s", every, settings.path)
    try:
        service.run_forever(store, every, stop)
    finally:
        for n in notifiers:
            n.stop()
        store.close()
    logging.getLogger(__name__).info("alerts stopped; counters: %s", dict(service.counters))
    return 0


def cmd_alerts_list(args: argparse.Namespace) -> int:
    """Print open alerts (or the history) from CAMPERHUB_ALERTS_PATH."""
    import json

    from camperhub.fleet.alerts_store import AlertRepository

    prog = "camperhub alerts list"
    settings = _settings(prog)
    if settings is None:
        return 78
    if not settings.path.exists():
        print(f"{prog}: no alerts file at {settings.path} (set CAMPERHUB_ALERTS_PATH, or run `camperhub alerts run`)", file=sys.stderr)
        return 1
    repo = AlertRepository(settings.path)
    alerts = repo.history(args.camper) if args.all else repo.open_alerts(args.camper)
    if args.json:
        print(json.dumps([a.model_dump(mode="json") for a in alerts], indent=2))
        return 0
    if not alerts:
        print("no alerts" if args.all else "no open alerts")
    for a in alerts:
        when = a.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{when}\t{a.state}\t{a.severity}\t{a.camper}\t{a.kind.value}\t{a.message}")
    return 0
