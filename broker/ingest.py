"""The ingest: MQTT telemetry in, validated, batched, stored; acknowledged only once stored.

Delivery is at-least-once end to end: the ingest subscribes at QoS 1 with a
persistent session and paho's manual acknowledgement, and sends each PUBACK
only after the store accepted the batch holding that message. If the ingest
dies in the middle of a batch, the broker redelivers what was not acked and
the store's idempotent writes (same camper, stream and ts = same point) keep
it from being doubled.

After a successful flush, and at most every ``rollup_every_s``, a thread of
its own folds the energy minutes written since into per-minute rollups
(Store.rollup), and every ``prune_every_s`` deletes raw energy older than
``CAMPERHUB_RAW_RETENTION_DAYS`` (Store.prune_raw) and positions older than
``CAMPERHUB_POSITION_RETENTION_DAYS`` (Store.prune_positions: the position
history is staff-only and kept for a bounded time). Several ingest processes
may do so at once (both are idempotent); a failure there is logged and tried
again next time, and never holds up storing and acknowledging telemetry.

A message that breaks the contract is not retried forever: it is stored with
its reason as a dead letter, counted, and acknowledged, so it never blocks the
good messages behind it. While the store is down or slow, the batch is held
and retried with back-off; the broker keeps the rest (unacked messages stop
the flow at the session's receive maximum) and nothing is lost.

Replays are harmless: a replayed sample has the same seq and ts, so its write
lands on the same point and changes nothing. The ingest also watches ``seq``
live, per (camper, stream), after each stored batch: it remembers the highest
seq seen (learnt from the store's latest sample the first time a camper's
stream shows up), counts a sample at or below it as ``replayed`` (or, when it
is newer in time, as a ``seq_restarts``: the camper lost its queue file), and
a jump that the sample's ``readings_n`` (a folded minute) does not explain as
one of ``seq_gaps`` with its ``seq_missing`` readings, logged once at info
level with the camper, stream and seq range: the data is fine, so it is no
dead letter. This is best-effort: with MQTT 5 shared subscriptions several
ingest processes split one camper's messages, so each sees gaps that another
filled, and a gap filled later by a late replay stays counted. The account
that holds is the completeness report, computed from the store
(camperhub/completeness.py, ``camperhub completeness``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from camperhub.broker.receipts import Handled, ReceiptBatcher, handled_in_payload
from camperhub.contract import TOPIC_ROOT, ContractError, Stream, decode_envelope, parse_topic
from camperhub.mqtturl import MqttUrl
from camperhub.settings import MqttClientSettings
from camperhub.store.base import DeadLetter, Store, StoredSample, StoreError, StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)

SHARED_GROUP = "camperhub-ingest"
UPLINK_STREAMS = (Stream.ENERGY, Stream.POSITION, Stream.STATUS, Stream.EVENT)


class IngestSettings(MqttClientSettings):
    """``CAMPERHUB_*`` settings of the ingest (the store's are StoreSettings)."""

    model_config = SettingsConfigDict(env_prefix="CAMPERHUB_INGEST_", extra="ignore")

    client_id: str = Field(default="camperhub-ingest", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    batch_max_samples: int = Field(default=5000, ge=1, le=100_000)
    batch_max_wait_s: float = Field(default=0.1, gt=0, le=60, description="Longest a received message waits to be stored")
    receive_maximum: int = Field(default=2000, ge=1, le=65535, description="Unacked messages the broker may send (MQTT 5)")
    max_future_s: float = Field(default=600, ge=0, description="How far past now a sample's ts may be (clock skew)")
    retry_max_s: float = Field(default=30, gt=0)
    protocol: str = Field(default="auto", pattern=r"^(auto|5|3\.1\.1)$")
    rollup_every_s: float = Field(default=60, gt=0, description="Fold energy minutes into rollups at most this often")
    prune_every_s: float = Field(default=3600, gt=0, description="Delete raw energy and positions past their retentions this often")
    receipts: bool = Field(default=True, description="Send each camper cmd/stored receipts (it keeps readings until then)")
    receipt_every_s: float = Field(default=5.0, gt=0, le=300, description="Receipts to one camper at most this often")


def ingest_settings() -> IngestSettings:
    """Read the ingest's settings; the MQTT URL comes from CAMPERHUB_MQTT_URL like every component's."""
    mqtt_part = MqttClientSettings()
    return IngestSettings(mqtt_url=mqtt_part.mqtt_url, mqtt_ca_file=mqtt_part.mqtt_ca_file)


@dataclass
class _Pending:
    """Messages received and not yet acknowledged, with what they will write."""

    samples: list[StoredSample] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    acks: list[tuple[int, int, int]] = field(default_factory=list)  # (generation, mid, qos)
    handled: list[Handled] = field(default_factory=list)  # seqs of the dead letters, for the receipts
    first_at: float = 0.0

    def __len__(self) -> int:
        return len(self.samples) + len(self.letters)


def to_stored(payload: bytes, topic_name: str, now_ms: int, max_future_ms: int) -> list[StoredSample]:
    """Validate one message against the contract; ContractError names what is wrong."""
    env = decode_envelope(payload, topic_name)
    stream = Stream(env.stream)  # type: ignore[attr-defined]
    out = []
    for s in env.samples:  # type: ignore[attr-defined]
        if s.ts > now_ms + max_future_ms:
            raise ContractError(f"sample seq {s.seq}: ts {s.ts} is {(s.ts - now_ms) / 1000:.0f} s in the future")
        out.append(StoredSample(env.camper, stream, s.ts, {"seq": s.seq, **s.fields()}))  # type: ignore[attr-defined]
    return out


class Ingest:
    """Subscribes, validates, batches, stores and acknowledges, in paho's thread and a flusher thread."""

    def __init__(
        self, settings: IngestSettings, store: Store, *, clock: Callable[[], float] = time.time, raw_retention: timedelta | None = None,
        position_retention: timedelta | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.raw_retention = raw_retention  # None: raw energy is kept forever
        self.position_retention = position_retention  # None: positions are kept forever
        self.url = MqttUrl.parse(settings.mqtt_url)
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.fatal_error: str | None = None
        self._pending = _Pending()
        self._cond = threading.Condition()
        self._generation = 0
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._maintainer: threading.Thread | None = None
        self._flushed = threading.Event()
        self._receipts = ReceiptBatcher(settings.receipt_every_s)
        self._client: mqtt.Client | None = None
        self.protocol = mqtt.MQTTv311 if settings.protocol == "3.1.1" else mqtt.MQTTv5
        # (camper, stream) -> (highest seq, its ts) seen, None when the store had nothing (flusher thread only)
        self._last_seq: dict[tuple[str, Stream], tuple[int, int] | None] = {}

    # -- MQTT --------------------------------------------------------------------
    def _subscriptions(self) -> list[str]:
        topics = [f"{TOPIC_ROOT}/+/{s.value}" for s in UPLINK_STREAMS]
        if self.protocol == mqtt.MQTTv5:
            # several ingest processes share the load; each message goes to one of them
            return [f"$share/{SHARED_GROUP}/{t}" for t in topics]
        return topics

    def start(self) -> None:
        v5 = self.protocol == mqtt.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.settings.client_id, protocol=self.protocol,
            clean_session=None if v5 else False, manual_ack=True,
        )
        self.url.configure(client, self.settings.mqtt_ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(1, 30)
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 7 * 86400
            props.ReceiveMaximum = self.settings.receive_maximum
        client.connect_async(self.url.host, self.url.port, keepalive=30, clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props)
        self._client = client
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="ingest-flusher", daemon=True)
        self._flusher.start()
        self._maintainer = threading.Thread(target=self._maintain_loop, name="ingest-rollup", daemon=True)
        self._maintainer.start()
        client.loop_start()

    def stop(self) -> None:
        """Flush what can be stored, acknowledge it, disconnect."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._flusher is not None:
            self._flusher.join(30)
        self._join_maintainer()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.value != 0:
            if reason.value in (134, 135):
                self.fatal_error = f"MQTT broker {self.url.redacted()} refused the ingest's credentials ({reason}); check CAMPERHUB_MQTT_URL"
                log.error(self.fatal_error)
                client.disconnect()
            elif self.protocol == mqtt.MQTTv5 and self.settings.protocol == "auto" and reason.value in (1, 132):
                self._fall_back()
            else:
                log.warning("broker refused the connection: %s", reason)
            return
        with self._cond:
            self._generation += 1
        self.connected.set()
        self.counters["connects"] += 1
        client.subscribe([(t, 1) for t in self._subscriptions()])
        log.info("ingest connected to %s (MQTT %s), subscribed to %s", self.url.redacted(), "5" if self.protocol == mqtt.MQTTv5 else "3.1.1", ", ".join(self._subscriptions()))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused the ingest's subscriptions: %s (check the ingest user's ACL)", refused)
            return
        self.subscribed.set()

    def _fall_back(self) -> None:
        log.info("%s does not speak MQTT 5: using 3.1.1 (no shared subscriptions)", self.url.redacted())

        def restart() -> None:
            old = self._client
            if old is not None:
                old.loop_stop()
            if self._flusher is not None:
                self._flusher.join(10)
            self._join_maintainer()
            self.protocol = mqtt.MQTTv311
            self.start()

        self._stop.set()
        threading.Thread(target=restart, daemon=True).start()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if (
            self.counters["connects"] == 0 and self.protocol == mqtt.MQTTv5 and self.settings.protocol == "auto"
            and self.fatal_error is None and not self._stop.is_set()
        ):
            self._fall_back()  # closed before CONNACK: a 3.1.1-only broker
            return
        if self.connected.is_set():
            log.warning("ingest disconnected (%s); reconnecting, unacked messages will be redelivered", reason)
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = self.clock()
        self.counters["messages"] += 1
        try:
            samples = to_stored(msg.payload, msg.topic, int(now * 1000), int(self.settings.max_future_s * 1000))
            letter = None
        except ContractError as exc:
            samples = []
            camper = None
            try:
                camper = parse_topic(msg.topic)[0]
            except ValueError:
                pass
            letter = DeadLetter(int(now * 1000), msg.topic, exc.reason, bytes(msg.payload[:65536]), camper)
            handled = handled_in_payload(msg.topic, msg.payload) if self.settings.receipts else []
            self.counters["dead_letters"] += 1
            log.warning("dead letter on %s: %s", msg.topic, exc.reason)
        with self._cond:
            p = self._pending
            if not len(p):
                p.first_at = time.monotonic()
            p.samples.extend(samples)
            if letter is not None:
                p.letters.append(letter)
                p.handled.extend(handled)
            p.acks.append((self._generation, msg.mid, msg.qos))
            # wake the flusher on a batch's first message (it then sleeps until the batch is due)
            # and when the batch is full
            if len(p.acks) == 1 or len(p) >= self.settings.batch_max_samples:
                self._cond.notify_all()

    # -- storing ---------------------------------------------------------------
    def _take_batch(self) -> _Pending | None:
        """The next batch when it is full or due; an empty one when only receipts are due; None at stop."""
        with self._cond:
            while True:
                p = self._pending
                due = p.first_at + self.settings.batch_max_wait_s
                if p.acks and (len(p) >= self.settings.batch_max_samples or time.monotonic() >= due or self._stop.is_set()):
                    self._pending = _Pending()
                    return p
                if self._stop.is_set():
                    return None
                receipts_in = self._receipts.due_in()
                if receipts_in is not None and receipts_in <= 0:
                    return _Pending()
                wait = max(0.01, due - time.monotonic()) if p.acks else 0.5
                self._cond.wait(min(wait, receipts_in) if receipts_in is not None else wait)

    def _store(self, batch: _Pending) -> bool:
        """Write a batch; True once stored. StoreRejected splits it so one bad sample cannot block the rest."""
        try:
            if batch.samples:
                self.store.write(batch.samples)
            if batch.letters:
                self.store.write_dead_letters(batch.letters)
            return True
        except StoreRejected as exc:
            if len(batch.samples) <= 1:
                letters = [DeadLetter(int(self.clock() * 1000), f"{TOPIC_ROOT}/{s.camper}/{s.stream.value}", f"store refused: {exc}", repr(s.fields).encode(), s.camper) for s in batch.samples]
                self.counters["dead_letters"] += len(letters)
                log.error("store refused a sample: %s", exc)
                self.store.write_dead_letters(letters + batch.letters)
                return True
            mid = len(batch.samples) // 2
            first = _Pending(batch.samples[:mid], [], [])
            second = _Pending(batch.samples[mid:], batch.letters, [])
            return self._store(first) and self._store(second)

    def _flush_loop(self) -> None:
        backoff = 0.5
        batch: _Pending | None = None
        while True:
            if batch is None:
                batch = self._take_batch()
                if batch is None:
                    self._send_receipts(force=True)  # what was stored before the stop
                    return
                if not batch.acks:  # nothing received, receipts due
                    self._send_receipts()
                    batch = None
                    continue
            try:
                self._seed_seqs(batch.samples)
                self._store(batch)
            except (StoreUnavailable, StoreRejected, OSError) as exc:
                # StoreRejected here means even the dead letters were refused (e.g. revoked
                # credentials): nothing is acked, so nothing is lost; a person must look.
                self.counters["store_retries"] += 1
                log.warning("store unavailable (%s): holding %d samples, retry in %.1f s", exc, len(batch), backoff)
                if self._stop.wait(backoff):
                    return  # not acked: the broker redelivers to the next ingest
                backoff = min(backoff * 2, self.settings.retry_max_s)
                continue
            backoff = 0.5
            self._ack(batch)
            if self.settings.receipts:
                self._receipts.add(batch.samples, batch.handled)
            self._send_receipts()
            self._watch_seqs(batch.samples)
            self.counters["stored_samples"] += len(batch.samples)
            self.counters["batches"] += 1
            self._flushed.set()
            batch = None

    # -- live seq watch (best-effort; the module docstring says why) --------------------
    def _seed_seqs(self, samples: list[StoredSample]) -> None:
        """Before a batch is written: the highest seq the store holds for each (camper, stream)
        not seen yet. A store that does not answer leaves the key unseeded (watched from the
        next batch on); it never holds up storing."""
        known = self._last_seq
        for camper, stream in {(s.camper, s.stream) for s in samples}.difference(known):
            try:
                latest = self.store.latest(camper, stream)
            except StoreError as exc:
                log.debug("no seq seed for %s/%s yet: %s", camper, stream.value, exc)
                continue
            seq = None if latest is None else latest.fields.get("seq")
            known[(camper, stream)] = None if latest is None or not isinstance(seq, int) else (seq, latest.ts_ms)

    def _watch_seqs(self, samples: list[StoredSample]) -> None:
        """After a batch is stored: count replays, restarts and unexplained jumps of seq."""
        known = self._last_seq
        counters = self.counters
        for s in samples:
            key = (s.camper, s.stream)
            if key not in known:
                continue
            seq = s.fields["seq"]
            last = known[key]
            if last is not None and seq <= last[0]:
                if s.ts_ms <= last[1]:
                    counters["replayed"] += 1
                    continue
                counters["seq_restarts"] += 1
                log.info("seq of %s/%s restarted: %d after %d (a newer reading): the camper lost its seq counter", s.camper, s.stream.value, seq, last[0])
            elif last is not None:
                missing = seq - (s.fields.get("readings_n") or 1) - last[0]
                if missing > 0:
                    counters["seq_gaps"] += 1
                    counters["seq_missing"] += missing
                    log.info("seq gap on %s/%s: %d readings missing (seq %d..%d)", s.camper, s.stream.value, missing, last[0] + 1, last[0] + missing)
            known[key] = (seq, s.ts_ms)

    # -- rollups and raw retention ------------------------------------------------
    def _maintain_loop(self) -> None:
        """Rollup and prune after flushes, in their own thread: folding a long backlog (or a
        whole history after an upgrade) must not hold up storing and acknowledging."""
        next_rollup = next_prune = 0.0
        while not self._stop.is_set():
            if not self._flushed.wait(1.0) or self._stop.is_set():
                continue
            self._flushed.clear()
            now = time.monotonic()
            if now >= next_rollup:
                next_rollup = now + self.settings.rollup_every_s
                self._job("rollup", self.store.rollup, "rollup_minutes")
            if now >= next_prune and (self.raw_retention or self.position_retention):
                next_prune = now + self.settings.prune_every_s
                self._prune()

    def _prune(self) -> None:
        """Raw energy past the raw retention, positions past the position retention (each when set)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        raw, positions = self.raw_retention, self.position_retention
        if raw:
            self._job("prune", lambda: self.store.prune_raw(now - raw), "pruned_samples")
        if positions:
            self._job("prune_positions", lambda: self.store.prune_positions(now - positions), "pruned_positions")

    def _job(self, name: str, run: Callable[[], int], counter: str) -> None:
        """Run a store job; a failure is logged and counted, and the job runs again next time."""
        try:
            self.counters[counter] += run()
        except StoreError as exc:
            self.counters[f"{name}_errors"] += 1
            log.warning("store %s failed (%s); trying again later", name, exc)
        except Exception:  # a bug must not stop the ingest either: logged with its traceback
            self.counters[f"{name}_errors"] += 1
            log.exception("store %s failed; trying again later", name)

    def _join_maintainer(self) -> None:
        self._flushed.set()  # wake it up to see the stop
        if self._maintainer is not None:
            self._maintainer.join(60)
            self._maintainer = None

    def _send_receipts(self, *, force: bool = False) -> None:
        """Tell each camper what of its readings is now stored (it keeps them until then), when due."""
        client = self._client
        due = self._receipts.due_in()
        if client is None or due is None or (due > 0 and not force):
            return
        for topic_name, payload in self._receipts.take():
            client.publish(topic_name, payload, qos=1)  # kept by the broker for a camper that is offline
            self.counters["receipts"] += 1

    def _ack(self, batch: _Pending) -> None:
        client = self._client
        if client is None:
            return
        for generation, mid, qos in batch.acks:
            # a message received before a reconnect is redelivered on the new
            # connection under its own packet id: acking the old one is not ours to do
            if generation == self._generation and qos > 0:
                client.ack(mid, qos)
        self.counters["acked_messages"] += len(batch.acks)


def run_ingest() -> int:
    """``camperhub ingest``: run until SIGTERM/SIGINT."""
    import signal

    from camperhub.schedule import ScheduleSettings
    from camperhub.settings import StoreSettings
    from camperhub.store import open_store

    settings, store_settings = ingest_settings(), StoreSettings()
    position_days = ScheduleSettings().position_retention_days  # CAMPERHUB_POSITION_RETENTION_DAYS
    store = open_store(store_settings)
    days = store_settings.raw_retention_days
    ingest = Ingest(
        settings, store, raw_retention=timedelta(days=days) if days > 0 else None,
        position_retention=timedelta(days=position_days) if position_days > 0 else None,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    ingest.start()
    log.info("ingest: %s → %s store", ingest.url.redacted(), store_settings.store)
    while not done.wait(1):
        if ingest.fatal_error:
            break
    ingest.stop()
    store.close()
    log.info("ingest stopped; counters: %s", dict(ingest.counters))
    return 78 if ingest.fatal_error else 0
