"""The API's MQTT listener: live ``status`` and ``position`` samples into the Broadcaster.

It connects with the API's own read-only broker user (``camperhub broker
add-service NAME --role api``; ``CAMPERHUB_MQTT_URL``), subscribes to
``camperhub/v1/+/status`` and ``camperhub/v1/+/position`` and hands every
sample that keeps the contract to :class:`camperhub.api.events.Broadcaster`
(messages that break it are counted and ignored: the ingest keeps them as
dead letters). Status is retained, so right after connecting the listener
knows every camper's current state.

Unlike the ingest, it keeps no persistent session and acknowledges at once:
live views want the present, and what a restart misses is in the store.
MQTT 5 is tried first and 3.1.1 used when the broker does not speak it (the
demo's amqtt), as in broker/ingest.py. paho runs its own network thread;
:meth:`LiveListener.stop` joins it (and any fallback thread).
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from camperhub.api.events import Broadcaster
from camperhub.api.metrics import ApiMetrics
from camperhub.api.views import sample_view
from camperhub.contract import TOPIC_ROOT, ContractError, Stream, decode_envelope
from camperhub.mqtturl import MqttUrl
from camperhub.settings import MqttClientSettings

log = logging.getLogger(__name__)

LIVE_STREAMS = (Stream.STATUS, Stream.POSITION, Stream.ENERGY)  # energy: the workshop kiosk's live flow


class LiveListener:
    """Subscribes to the live streams and publishes decoded samples into ``broadcaster``."""

    def __init__(
        self,
        settings: MqttClientSettings,
        broadcaster: Broadcaster,
        *,
        protocol: str = "auto",
        metrics: ApiMetrics | None = None,
        client_id: str | None = None,
        connack_timeout_s: float = 5.0,
    ) -> None:
        if protocol not in ("auto", "5", "3.1.1"):
            raise ValueError("protocol must be auto, 5 or 3.1.1")
        self.settings = settings
        self.url = MqttUrl.parse(settings.mqtt_url)
        self.broadcaster = broadcaster
        self.metrics = metrics or ApiMetrics()
        self.requested_protocol = protocol
        self.protocol = mqtt.MQTTv311 if protocol == "3.1.1" else mqtt.MQTTv5
        self.client_id = client_id or f"camperhub-api-{secrets.token_hex(4)}"
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.fatal_error: str | None = None
        self.received = 0
        self.rejected = 0
        self._connects = 0
        self._client: mqtt.Client | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._fallback: threading.Thread | None = None
        self._probe: threading.Thread | None = None
        self._answered = threading.Event()
        self.connack_timeout_s = connack_timeout_s

    @property
    def topics(self) -> list[str]:
        return [f"{TOPIC_ROOT}/+/{s.value}" for s in LIVE_STREAMS]

    def start(self) -> None:
        self._stopping.clear()
        self._answered.clear()
        self._start_client()
        if self.requested_protocol == "auto" and self.protocol == mqtt.MQTTv5:
            # amqtt neither answers nor closes an MQTT 5 CONNECT: without a deadline paho would
            # wait for the keep-alive (45 s) before the 3.1.1 fallback could start
            self._probe = threading.Thread(target=self._probe_connack, name="api-live-probe", daemon=True)
            self._probe.start()

    def _probe_connack(self) -> None:
        if not self._answered.wait(self.connack_timeout_s) and not self._stopping.is_set():
            log.info("%s did not answer an MQTT 5 CONNECT within %g s", self.url.redacted(), self.connack_timeout_s)
            self._fall_back()

    def _start_client(self) -> None:
        v5 = self.protocol == mqtt.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol, clean_session=None if v5 else True
        )
        self.url.configure(client, self.settings.mqtt_ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(1, 30)
        client.connect_async(self.url.host, self.url.port, keepalive=30)
        self._client = client
        client.loop_start()

    def stop(self) -> None:
        """Disconnect and join paho's thread; safe to call twice."""
        self._stopping.set()
        self._answered.set()  # wakes the probe
        if self._probe is not None:
            self._probe.join(10)
        with self._lock:
            fallback = self._fallback
        if fallback is not None:
            fallback.join(10)
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self.connected.clear()

    # -- paho callbacks (its thread) ---------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._answered.set()
        if reason.is_failure:
            if reason.value in (134, 135) or (self.protocol == mqtt.MQTTv311 and reason.value in (4, 5)):
                self.fatal_error = f"MQTT broker {self.url.redacted()} refused the API's credentials ({reason}); check CAMPERHUB_MQTT_URL"
                log.error(self.fatal_error)
                client.disconnect()
            elif self.protocol == mqtt.MQTTv5 and self.requested_protocol == "auto" and reason.value in (1, 132):
                self._fall_back()
            else:
                log.warning("broker refused the API's connection: %s", reason)
            return
        self._connects += 1
        self.connected.set()
        client.subscribe([(t, 1) for t in self.topics])
        log.info("live listener connected to %s (MQTT %s)", self.url.redacted(), "5" if self.protocol == mqtt.MQTTv5 else "3.1.1")

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused the API's subscriptions %s: %s (check the api user's ACL)", self.topics, refused)
            return
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if (
            self._connects == 0 and self.protocol == mqtt.MQTTv5 and self.requested_protocol == "auto"
            and self.fatal_error is None and not self._stopping.is_set()
        ):
            self._fall_back()  # closed before CONNACK: a 3.1.1-only broker
            return
        if self.connected.is_set() and not self._stopping.is_set():
            log.warning("live listener disconnected (%s); reconnecting", reason)
        self.connected.clear()
        self.subscribed.clear()

    def _fall_back(self) -> None:
        with self._lock:
            if self._fallback is not None or self._stopping.is_set():
                return
            log.info("%s does not speak MQTT 5: the live listener uses 3.1.1", self.url.redacted())
            self._fallback = threading.Thread(target=self._restart_311, name="api-live-fallback", daemon=True)
            self._fallback.start()

    def _restart_311(self) -> None:
        old = self._client
        if old is not None:
            old.disconnect()
            old.loop_stop()  # joins paho's thread: we are not in it
        if self._stopping.is_set():
            return
        self.protocol = mqtt.MQTTv311
        self._start_client()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            env = decode_envelope(msg.payload, msg.topic)
        except ContractError as exc:
            self.rejected += 1
            self.metrics.live_rejected.inc()
            log.debug("ignored a live message on %s: %s", msg.topic, exc.reason)
            return
        stream = Stream(env.stream)  # type: ignore[attr-defined]
        camper = env.camper  # type: ignore[attr-defined]
        self.received += 1
        self.metrics.live_messages.labels(stream.value).inc()
        for s in env.samples:  # type: ignore[attr-defined]
            fields = {"seq": s.seq, **s.fields()}
            self.broadcaster.publish_threadsafe(camper, stream.value, s.ts, sample_view(camper, stream.value, s.ts, fields))
