"""Publishing envelopes to the broker with paho-mqtt, behind one small interface.

:class:`Outbox` is all the agent knows about sending: ``put`` a sample of a
stream. :class:`MqttPublisher` implements it directly on paho (QoS 1, retained
``status`` with a Last Will) and owns the paho connection handling;
:class:`camperhub.edge.outbox.QueuedPublisher` (what the agent uses) puts the
durable SQLite queue in front of it and sends through :meth:`MqttPublisher.send`,
learning of each PUBACK through ``on_ack``.

MQTT 5 is used where the broker offers it: its PUBACK reason code tells us
that a message was refused (e.g. by the ACL). Under 3.1.1 a refused QoS 1
publish is acknowledged as if delivered (the queue then deletes a reading the
broker threw away: nothing on the client can tell), so the fallback is logged. The
publisher connects with ``protocol: auto`` as MQTT 5 and falls back to 3.1.1
when the broker refuses the protocol version (the demo's amqtt).

Bad credentials are not transient: retrying cannot fix them, so the publisher
stops and reports what to do (``on_fatal``) instead of hammering the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from camperhub import __version__
from camperhub.contract import MIN_TS_MS, STREAM_QOS, STREAM_RETAIN, TOPIC_ROOT, ContractError, Stream, encode_envelope, topic
from camperhub.edge.config import MqttSettings

log = logging.getLogger(__name__)

#: CONNACK reason codes that a person must fix (v5 codes; paho maps 3.1.1's 4 and 5 onto them).
AUTH_FAILURES = {134: "bad user name or password", 135: "not authorized", 133: "client identifier not valid", 138: "banned"}
UNSUPPORTED_PROTOCOL = 132
SESSION_EXPIRY_S = 7 * 86400


class Outbox(Protocol):
    """Where the agent puts samples; delivery is the outbox's business."""

    def put(self, stream: Stream, sample: dict[str, Any], *, undated: tuple[str, int] | None = None) -> int:
        """Take one sample (with ``ts`` and fields, no ``seq``); return the ``seq`` given to it.

        ``undated`` = (boot id, ms since boot) while the clock is not trusted (``ts`` is then provisional).
        """
        ...


class SeqSource(Protocol):
    """Hands out the next ``seq`` of a stream (the durable queue does)."""

    def next(self, stream: Stream) -> int: ...


#: Called from paho's thread for each PUBACK of a message sent with a token: (token, reason code).
AckCallback = Callable[[Any, int], None]
#: Called from paho's thread for each downlink command: (name, payload), e.g. ("mode", b'{"mode": "live", ...}').
CommandCallback = Callable[[str, bytes], None]


class MqttPublisher:
    """Publishes envelopes at QoS 1 with paho; retained status and a Last Will."""

    def __init__(
        self,
        camper: str,
        settings: MqttSettings,
        seqs: SeqSource,
        *,
        on_fatal: Callable[[str], None] | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        max_queued: int = 10_000,
        on_ack: AckCallback | None = None,
        max_inflight: int | None = None,
        on_command: CommandCallback | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.camper = camper
        self.settings = settings
        self.url = settings.parsed
        self.seqs = seqs
        self.on_fatal = on_fatal or (lambda msg: None)
        self.status_extra = status_extra or (lambda: {})
        self.max_queued = max_queued
        self.on_ack = on_ack
        self.max_inflight = max_inflight or settings.max_inflight
        self.on_command = on_command
        #: the time for status messages (the agent's clock; may be untrusted right after boot)
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        #: bumped for every new paho client: what the old one had in flight is gone
        self.generation = 0
        #: the latest refusal (PUBACK >= 0x80), for status ``last_error``
        self.last_refusal: str | None = None
        self.counters: Counter[str] = Counter()
        self.protocol = mqtt.MQTTv311 if settings.protocol == "3.1.1" else mqtt.MQTTv5
        self.connected = threading.Event()
        self.fatal_error: str | None = None
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, tuple[Stream, Any]] = {}
        self._early_acks: dict[int, ReasonCode | int] = {}
        self._lock = threading.RLock()
        self._started_monotonic = time.monotonic()
        self._fell_back = False
        self._stopping = False

    # -- connection ------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        v5 = self.protocol == mqtt.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"camperhub-edge-{self.camper}",
            protocol=self.protocol,
            clean_session=None if v5 else False,
        )
        self.url.configure(client, self.settings.ca_file)
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(self.max_queued)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        # The Last Will: the broker publishes "offline" when the link dies without a goodbye.
        will = self._status_payload("offline")
        client.will_set(topic(self.camper, Stream.STATUS), will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in paho's background thread; reconnects by itself."""
        self._client = self._new_client()
        with self._lock:
            self._inflight.clear()  # an earlier client's messages died with it
            self._early_acks.clear()
            self.generation += 1
        props = None
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self.url.host, self.url.port, keepalive=self.settings.keepalive_s,
            clean_start=False if self.protocol == mqtt.MQTTv5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self._client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say goodbye (retained offline status), wait for acks, disconnect."""
        self._stopping = True
        client = self._client
        if client is None:
            return
        if self.connected.is_set():
            info = client.publish(topic(self.camper, Stream.STATUS), self._status_payload("offline"), qos=1, retain=True)
            deadline = time.monotonic() + timeout_s
            while self._inflight and time.monotonic() < deadline:
                time.sleep(0.02)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
            self.connected.clear()  # a goodbye, not a lost link
            client.disconnect()
        client.loop_stop()
        self._client = None

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        code = reason.value if isinstance(reason, ReasonCode) else int(reason)
        if code == 0:
            self.connected.set()
            self.counters["connects"] += 1
            log.info("connected to %s as MQTT %s", self.url.redacted(), "5" if self.protocol == mqtt.MQTTv5 else "3.1.1")
            if self.on_command is not None:
                # QoS 1 in the persistent session: a command sent while the camper was offline waits for it
                client.subscribe(f"{TOPIC_ROOT}/{self.camper}/cmd/+", qos=1)
            self.publish_status()
            return
        if code == UNSUPPORTED_PROTOCOL or (code == 1 and self.protocol == mqtt.MQTTv5):
            if self.settings.protocol == "auto" and not self._fell_back:
                self._fall_back_to_311()
                return
        if code in AUTH_FAILURES:
            msg = (
                f"MQTT broker {self.url.redacted()} refused the connection: {AUTH_FAILURES[code]}. "
                f"Check mqtt.url in the edge config (user must be the camper id {self.camper!r}); "
                f"`camperhub broker add-camper {self.camper}` on the server prints new credentials."
            )
            self._fatal(msg)
            return
        log.warning("broker %s refused the connection: %s; retrying", self.url.redacted(), reason)

    def _fall_back_to_311(self) -> None:
        self._fell_back = True
        log.info("%s does not speak MQTT 5: falling back to 3.1.1 (refused publishes will go unseen)", self.url.redacted())
        # paho's loop thread cannot stop itself: restart from a helper thread
        threading.Thread(target=self._restart_as_311, name="mqtt-fallback", daemon=True).start()

    def _restart_as_311(self) -> None:
        if self._stopping:
            return
        old = self._client
        if old is not None:
            old.loop_stop()
            old.disconnect()
        self.protocol = mqtt.MQTTv311
        self.start()

    def _fatal(self, msg: str) -> None:
        self.fatal_error = msg
        self.counters["auth_failures"] += 1
        log.error(msg)
        client = self._client
        if client is not None:
            # stop reconnecting: disconnect from within the loop thread is allowed
            client.disconnect()
        self.on_fatal(msg)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if (
            not self.connected.is_set() and self.counters["connects"] == 0 and self.protocol == mqtt.MQTTv5
            and self.settings.protocol == "auto" and not self._fell_back and self.fatal_error is None
        ):
            # Closed before any CONNACK: a 3.1.1-only broker (amqtt) hangs up on an MQTT 5 CONNECT.
            self._fall_back_to_311()
            return
        if self.connected.is_set():
            log.warning("disconnected from %s (%s); paho reconnects by itself", self.url.redacted(), reason)
            self.counters["disconnects"] += 1
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """A downlink command: hand it on; a bad one is logged and counted, never fatal."""
        name = msg.topic.rsplit("/", 1)[-1]
        self.counters["commands"] += 1
        if self.on_command is None:
            return
        try:
            self.on_command(name, msg.payload)
        except Exception as exc:  # noqa: BLE001 - a bad command must not kill paho's thread
            self.counters["bad_commands"] += 1
            log.error("command %s refused: %s (payload %r)", name, exc, msg.payload[:200])

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._lock:
            if mid not in self._inflight:
                self._early_acks[mid] = reason  # acked before send() recorded it (see send)
                return
            stream, token = self._inflight.pop(mid)
        self._acked(stream, token, reason)

    def _acked(self, stream: Stream | None, token: Any, reason: ReasonCode | int) -> None:
        code = reason.value if isinstance(reason, ReasonCode) else int(reason)
        if code >= 0x80:
            self.counters["refused"] += 1
            self.last_refusal = f"broker refused a {stream.value if stream else '?'} message: {reason}"
            log.error("ALARM %s (check the ACL for camper %s)", self.last_refusal, self.camper)
        else:
            self.counters["acked"] += 1
        if token is not None and self.on_ack is not None:
            self.on_ack(token, code)

    # -- publishing ------------------------------------------------------------
    def _status_payload(self, state: str) -> bytes:
        # an untrusted clock right after boot may say 1970: the status is retained state, its time matters less than its arrival
        sample: dict[str, Any] = {"ts": max(MIN_TS_MS, self.now_ms()), "state": state, "agent_version": __version__}
        sample["seq"] = self.seqs.next(Stream.STATUS)
        if state == "online":
            sample["uptime_s"] = round(time.monotonic() - self._started_monotonic, 1)
            sample["queue_depth"] = self.queue_depth
            if self.last_refusal:
                sample["last_error"] = self.last_refusal[:500]
            sample.update(self.status_extra())
        return encode_envelope(self.camper, Stream.STATUS, [sample])

    def publish_status(self) -> None:
        """Publish the retained online status (on connect and periodically)."""
        if self._client is not None and self.connected.is_set():
            self._send(Stream.STATUS, self._status_payload("online"))

    @property
    def queue_depth(self) -> int:
        """Messages handed to paho and not yet acknowledged."""
        with self._lock:
            return len(self._inflight)

    def put(self, stream: Stream, sample: dict[str, Any], *, undated: tuple[str, int] | None = None) -> int:
        """Give ``sample`` a seq, validate the envelope, publish at QoS 1 (no queue: ``undated`` is ignored)."""
        seq = self.seqs.next(stream)
        try:
            payload = encode_envelope(self.camper, stream, [{**sample, "seq": seq}])
        except (ContractError, ValueError) as exc:
            self.counters["invalid"] += 1
            log.error("not publishing an invalid %s sample (%s): %s", stream.value, exc, sample)
            return seq
        self._send(stream, payload)
        return seq

    def send(self, stream: Stream, payload: bytes, token: Any = None) -> int | None:
        """Hand one envelope to paho; its PUBACK reaches ``on_ack(token, code)``. None when not handed over."""
        client = self._client
        if client is None or self.fatal_error:
            self.counters["dropped_not_running"] += 1
            return None
        # Never hold self._lock around publish(): paho holds its message mutex while it
        # calls _on_publish, which takes self._lock (a deadlock under load). The PUBACK
        # may therefore come before the mid is recorded: _on_publish parks it in _early_acks.
        info = client.publish(topic(self.camper, stream), payload, qos=STREAM_QOS[stream], retain=STREAM_RETAIN[stream])
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.counters["dropped_queue_full"] += 1
            log.warning("paho's queue is full (%d): a %s sample was dropped", self.max_queued, stream.value)
            return None
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if early is None:
                self._inflight[info.mid] = (stream, token)
        if early is not None:
            self._acked(stream, token, early)
        self.counters["published"] += 1
        self.counters[f"published.{stream.value}"] += 1
        return info.mid

    _send = send
