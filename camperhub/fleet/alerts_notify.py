"""Announcing alert changes: MQTT ``camperhub/v1/{camper}/alert`` and an optional webhook.

What is announced: an alert opening, closing, or changing severity (a silent
update of the value is only stored). The payload, on both channels::

    {"v": 1, "event": "open|update|close", "alert": {...Alert.model_dump(mode="json")}}

MQTT: QoS 1, **not retained**. Why: one topic per camper carries every kind,
so a retained message would keep only the last change of any kind and tell a
new subscriber a misleading "current state"; the current set of open alerts is
the repository's (``/api/v1/fleet/alerts``). The publisher uses its own broker
user with role ``alerts`` (``camperhub broker add-service NAME --role alerts``),
allowed to write ``camperhub/v1/+/alert`` only; campers cannot write there.
paho keeps QoS 1 messages while disconnected and sends them on reconnect.
The publisher speaks MQTT 3.1.1, which Mosquitto and the demo's amqtt both
accept (a refused publish is then acknowledged silently: the ACL test in
tests/broker/test_acl.py is what proves the role may publish).

Webhook: one worker thread POSTs each notification as JSON with a timeout and
retries with exponential back-off, so a slow or dead receiver never blocks the
evaluation loop (its queue is bounded: beyond it notifications are dropped and
counted). The URL may hold a secret (a token in its path or query): only its
scheme and host are ever logged.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
from collections import Counter
from typing import Any, Protocol
from urllib.parse import urlsplit

from camperhub.contract import TOPIC_ROOT, is_valid_camper_id
from camperhub.fleet.alerts_rules import Transition

log = logging.getLogger(__name__)


def alert_topic(camper: str) -> str:
    """``camperhub/v1/{camper}/alert``."""
    if not is_valid_camper_id(camper):
        raise ValueError(f"camper id {camper!r} is not [a-z0-9-]{{1,32}}")
    return f"{TOPIC_ROOT}/{camper}/alert"


def payload(t: Transition) -> dict[str, Any]:
    """The JSON body of a notification (MQTT and webhook alike)."""
    if t.alert is None:
        raise ValueError("a notification needs an alert")
    return {"v": 1, "event": t.action, "alert": t.alert.model_dump(mode="json")}


def redact_url(url: str) -> str:
    """``https://hooks.example.org/…``: scheme and host only (path and query may be the secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


class Notifier(Protocol):
    def notify(self, t: Transition) -> None: ...

    def stop(self) -> None: ...


class MqttAlertPublisher:
    """Publishes notifications with paho (its own network thread; :meth:`stop` joins it)."""

    def __init__(self, mqtt_url: str, ca_file: Any = None, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from camperhub.mqtturl import MqttUrl

        self.url = MqttUrl.parse(mqtt_url)
        self.counters: Counter[str] = Counter()
        self.connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"camperhub-alerts-{secrets.token_hex(4)}",
                                   protocol=mqtt.MQTTv311)
        self.url.configure(self._client, ca_file)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(1, 30)
        self._client.max_queued_messages_set(10_000)
        self._started = False

    def start(self) -> None:
        self._client.connect_async(self.url.host, self.url.port, keepalive=30)
        self._client.loop_start()
        self._started = True

    def notify(self, t: Transition) -> None:
        if t.alert is None:
            return
        info = self._client.publish(alert_topic(t.alert.camper), json.dumps(payload(t)), qos=1, retain=False)
        # NO_CONN: paho keeps a QoS 1 message and sends it once connected
        if info.rc not in (0, 4):
            self.counters["publish_failed"] += 1
            log.warning("alerts: MQTT publish of %s %s failed locally (rc %s)", t.action, t.alert.kind, info.rc)
        else:
            self.counters["published"] += 1

    def stop(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("alerts: broker refused the connection: %s", reason)
            return
        self.connected.set()
        log.info("alerts publisher connected to %s", self.url.redacted())

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.connected.is_set():
            log.warning("alerts publisher disconnected (%s); reconnecting", reason)
        self.connected.clear()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.counters["acked"] += 1


_STOP = object()


class WebhookNotifier:
    """POSTs notifications to a URL from one worker thread, with retries and back-off."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 1.0, max_pending: int = 1000) -> None:
        self._url = url
        self.where = redact_url(url)
        parts = urlsplit(url)
        self._secret_part = parts.path + (f"?{parts.query}" if parts.query else "") if parts.path not in ("", "/") or parts.query else url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.counters: Counter[str] = Counter()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # httpx logs every request's full URL at INFO: that would write the secret to the logs
        logging.getLogger("httpx").addFilter(self._redactor)
        self._thread = threading.Thread(target=self._run, name="alerts-webhook", daemon=True)
        self._thread.start()

    def notify(self, t: Transition) -> None:
        """Queue a notification; never blocks (a full queue drops it, counted and logged)."""
        try:
            self._queue.put_nowait(payload(t))
        except queue.Full:
            self.counters["dropped"] += 1
            log.warning("alerts: webhook %s queue full, notification dropped", self.where)

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or given up (tests, shutdown)."""
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, name="alerts-webhook-join", daemon=True).start()
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (no more back-off waits), then end the worker."""
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        logging.getLogger("httpx").removeFilter(self._redactor)

    def _redactor(self, record: logging.LogRecord) -> bool:
        """A logging filter: our URL in a log record's arguments becomes its redacted form."""
        if isinstance(record.args, tuple) and any(self._secret_part in str(a) for a in record.args):
            record.args = tuple(self.where if self._secret_part in str(a) else a for a in record.args)
        return True

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            while True:
                item = self._queue.get()
                try:
                    if item is _STOP:
                        return
                    self._deliver(client, item)
                finally:
                    self._queue.task_done()

    def _deliver(self, client: Any, body: object) -> None:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                r = client.post(self._url, json=body)
                if r.status_code < 300:
                    self.counters["sent"] += 1
                    return
                problem = f"HTTP {r.status_code}"
                if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                    break  # the receiver refuses this body: retrying the same will not help
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            self.counters["retries"] += attempt < self.retries
            if attempt < self.retries and self._stopping.wait(self.backoff_s * 2**attempt):
                break
        self.counters["failed"] += 1
        log.warning("alerts: webhook %s failed (%s); notification given up", self.where, problem)
