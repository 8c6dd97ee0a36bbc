"""The agent's outbox: durable queue in front of the MQTT publisher ("never lose a sample").

:meth:`QueuedPublisher.put` only appends to the queue (no disk write, no
network: live readings are never blocked by a dead 4G link or a slow SD card).
One worker thread does the rest:

* about every ``commit_interval_s`` it commits the queue (:meth:`DurableQueue.flush`):
  new readings in, acknowledged ones out, budget kept, in one transaction;
* it leases the oldest committed rows of each stream, batches up to
  :data:`MAX_BATCH` samples / :data:`MAX_BATCH_BYTES` of one stream into one
  envelope and hands paho at most ``inflight`` envelopes at a time (paho keeps
  its queue in memory and its message ids wrap at 65,535). A backlog therefore
  replays in order, oldest first, as fast as the broker acknowledges.

A row leaves the queue only once the server stored it: the ingest sends a
receipt (``cmd/stored``, :class:`camperhub.contract.StoredReceipt`) after its
store accepted the batch. A PUBACK only says the broker has it (and a broker
that crashes before saving its queue loses what it acknowledged), so a row
the broker took waits for its receipt and is sent again when none came within
``queue.resend_after_s`` (``queue.delete_on: broker`` deletes at the PUBACK,
for a server without receipts). Until the PUBACK, a row is in flight. A
refusal (MQTT 5 reason code >= 0x80, e.g. 135 'not authorized' from the ACL)
keeps the rows queued, is counted, logged as an ALARM and shown in status
``last_error``; the stream is retried from its oldest row with an exponential
back-off (1 s to 5 min). Under MQTT 3.1.1 the broker acknowledges a refused
publish as if delivered: the client cannot see it, the rows are deleted.

The ``status`` stream is not queued: it is retained state, only the latest
matters, and it is published directly as before.

The send policy (:class:`camperhub.edge.modes.SendPolicy`) decides how energy
leaves: in normal mode it waits ``batch_interval_s`` and then leaves the
queue all at once in big gzip'd envelopes (few messages, few bytes on 4G); in
live mode each reading goes at once. Positions and events never wait.
Undated rows (taken before the clock was trusted) are never leased.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camperhub.contract import MIN_TS_MS, ContractError, Stream, StoredReceipt, encode_envelope
from camperhub.edge.clock import EdgeClock
from camperhub.edge.config import MqttSettings, QueueConfig
from camperhub.edge.modes import SendPolicy
from camperhub.edge.publisher import CommandCallback, MqttPublisher
from camperhub.edge.queue import DurableQueue, QueueError, Row

log = logging.getLogger(__name__)

#: Samples per envelope when a backlog exists (the contract allows MAX_SAMPLES_PER_ENVELOPE).
MAX_BATCH = 50
MAX_BATCH_BYTES = 16 * 1024
#: gzip'd envelopes carry more: fewer messages, better compression (inflated, well under MAX_INFLATED_BYTES).
MAX_BATCH_COMPRESSED = 500
MAX_BATCH_BYTES_COMPRESSED = 256 * 1024
SEND_AT_ONCE = SendPolicy(0.0, False)
#: How much longer than the send policy's wait a reading may sit queued while data still "flows" (the LED):
#: the pump, a commit and the ingest's receipt (every 5 s) come on top of the batch interval.
FLOWING_SLACK_S = 30.0
QUEUED_STREAMS = (Stream.ENERGY, Stream.POSITION, Stream.EVENT)
REFUSAL_BACKOFF_S = (1.0, 300.0)


@dataclass(eq=False)
class _Batch:
    """One envelope in flight: which rows it carries."""

    stream: Stream
    ids: list[int]
    seqs: list[int]
    generation: int


@dataclass
class _StreamState:
    cursor: int = 0  # highest row id handed to paho in this connection generation
    inflight: int = 0
    hold_until: float = 0.0  # after a refusal: not before this (monotonic)
    backoff_s: float = 0.0
    rewind: bool = False  # resend from the oldest unsent row once nothing of this stream is in flight
    draining: bool = False  # a batch interval is up: send until nothing is left
    next_batch_at: float = 0.0  # monotonic: when the next energy batch may leave (normal mode)


@dataclass
class _Shared:
    batches: set[_Batch] = field(default_factory=set)
    streams: dict[Stream, _StreamState] = field(default_factory=lambda: {s: _StreamState() for s in QUEUED_STREAMS})


class QueuedPublisher:
    """An :class:`~camperhub.edge.publisher.Outbox` that never loses a sample it took."""

    def __init__(
        self,
        camper: str,
        settings: MqttSettings,
        queue_config: QueueConfig,
        *,
        on_fatal: Callable[[str], None] | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        clock: EdgeClock | None = None,
        policy: Callable[[], SendPolicy] | None = None,
        on_command: CommandCallback | None = None,
    ) -> None:
        self.camper = camper
        self.config = queue_config
        self.clock = clock or EdgeClock("always")
        self.queue = DurableQueue(
            queue_config.path, max_bytes=int(queue_config.max_mb * 2**20), max_age_s=queue_config.max_age_days * 86400,
            boot_id=self.clock.boot_id, clock=self.clock.stamp,
        )
        self._status_extra = status_extra or (lambda: {})
        self._agent_command = on_command
        self.policy = policy or (lambda: SEND_AT_ONCE)
        self.link = MqttPublisher(
            camper, settings, self.queue, on_fatal=on_fatal, status_extra=self.status_fields,
            on_ack=self._on_ack, max_inflight=queue_config.inflight, on_command=self._on_command,
            now_ms=lambda: self.clock.stamp().ts_ms,
        )
        self.counters: Counter[str] = self.link.counters
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._state = _Shared()
        self._generation = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None

    # -- what the agent sees ---------------------------------------------------
    @property
    def fatal_error(self) -> str | None:
        return self.link.fatal_error

    @property
    def connected(self) -> threading.Event:
        return self.link.connected

    def put(self, stream: Stream, sample: dict[str, Any], *, undated: tuple[str, int] | None = None) -> int:
        """Validate and queue ``sample``; its ``seq`` (0 when invalid: counted, logged, not queued).

        ``undated`` = (boot id, ms since boot) when the clock is not trusted yet
        (the sample's ``ts`` is then provisional and not validated).
        """
        if stream is Stream.STATUS:
            return self.link.put(stream, sample)
        try:
            probe = {**sample, "seq": 0, "ts": MIN_TS_MS} if undated else {**sample, "seq": 0}
            encode_envelope(self.camper, stream, [probe])
        except (ContractError, ValueError) as exc:
            self.counters["invalid"] += 1
            log.error("not queueing an invalid %s sample (%s): %s", stream.value, exc, sample)
            return 0
        self.counters[f"taken.{stream.value}"] += 1
        return self.queue.put(stream, sample, undated=undated)

    def publish_status(self) -> None:
        self.link.publish_status()

    def flowing(self) -> bool:
        """Connected, and nothing waits longer than the send policy means it to (else: buffering)."""
        if not self.link.connected.is_set() or self.link.fatal_error or self.link.last_refusal:
            return False
        waited_s = self.queue.stats()["oldest_queued_s"]
        return waited_s <= self.policy().batch_interval_s + 2 * self.config.commit_interval_s + FLOWING_SLACK_S

    def status_fields(self) -> dict[str, Any]:
        """Queue counters, the agent's fields and the latest error, for the retained status."""
        out = {**self.queue.stats(), **self._status_extra()}
        errors = [e for e in (out.get("last_error"), self.last_error, self.link.last_refusal, self.queue.notice) if e]
        if errors:
            out["last_error"] = "; ".join(dict.fromkeys(errors))[:500]
        return out

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Connect (paho's thread) and start the commit-and-send worker."""
        self.link.start()
        self._worker = threading.Thread(target=self._run, name="queue-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sending, wait for what is in flight, commit everything, close the file."""
        self._stopping.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout_s + 5)
            self._worker = None
        self.link.stop(timeout_s)  # waits for the acks of what is in flight
        self.queue.close()  # commits pending readings and the acks that came in

    # -- the worker ---------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.config.commit_interval_s
        next_flush = time.monotonic() + interval
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + interval
                    self._flush()
                self._pump()
            except Exception:  # noqa: BLE001 - the worker must outlive any one failure
                self.counters["worker_errors"] += 1
                log.exception("queue worker step failed; retrying")
            self._wake.wait(max(0.0, min(next_flush - time.monotonic(), 0.5)))
            self._wake.clear()

    def _flush(self) -> None:
        if self.config.delete_on == "stored":
            expired = self.queue.take_expired(self.config.resend_after_s)
            if expired:
                self.counters["resent_unconfirmed"] += expired
                log.warning("%d readings sent %.0f s ago have no receipt from the server: sending them again", expired, self.config.resend_after_s)
                with self._lock:
                    for st in self._state.streams.values():
                        st.rewind = True
        try:
            self.queue.flush()
            self.last_error = None
        except QueueError as exc:  # disk full, read-only: readings stay in memory until it works again
            self.counters["queue_errors"] += 1
            self.last_error = str(exc)
            log.error("ALARM %s", exc)

    def _pump(self) -> None:
        """Hand paho the oldest committed rows, up to ``inflight`` envelopes, as the send policy allows."""
        link = self.link
        with self._lock:
            if link.generation != self._generation:  # a new paho client: what was in flight is gone
                self._forget_inflight(link.generation)
        if not link.connected.is_set() or link.fatal_error or self._stopping.is_set():
            return
        now = time.monotonic()
        policy = self.policy()
        limit, max_bytes = (MAX_BATCH_COMPRESSED, MAX_BATCH_BYTES_COMPRESSED) if policy.compress else (MAX_BATCH, MAX_BATCH_BYTES)
        for stream in QUEUED_STREAMS:
            while True:
                with self._lock:
                    st = self._state.streams[stream]
                    if len(self._state.batches) >= self.config.inflight or now < st.hold_until:
                        break
                    if stream is Stream.ENERGY and not self._batch_due(st, policy, now):
                        break
                    if st.rewind and st.inflight == 0:  # refused or unconfirmed rows again, oldest first
                        st.rewind, st.cursor = False, 0
                    rows = self.queue.lease(stream, st.cursor, limit, max_bytes)
                    if not rows:
                        if st.draining:  # everything committed has left: the next batch in one interval
                            st.draining, st.next_batch_at = False, now + policy.batch_interval_s
                        break
                    batch = _Batch(stream, [r.id for r in rows], [r.seq for r in rows], self._generation)
                    self._state.batches.add(batch)
                    st.inflight += 1
                    st.cursor = rows[-1].id
                if link.send(stream, self._payload(stream, rows, policy.compress), batch) is None:
                    self._settle(batch, delivered=False, refused=False)
                    return

    @staticmethod
    def _batch_due(st: _StreamState, policy: SendPolicy, now: float) -> bool:
        """Normal mode: energy leaves every ``batch_interval_s``, then drains; live mode: at once."""
        if policy.batch_interval_s <= 0 or st.draining:
            return True
        if now >= st.next_batch_at:
            st.draining = True
            return True
        # a switch from live to normal must not hold readings for longer than one interval
        st.next_batch_at = min(st.next_batch_at, now + policy.batch_interval_s)
        return False

    def _payload(self, stream: Stream, rows: list[Row], compress: bool) -> bytes:
        return encode_envelope(self.camper, stream, [r.sample() for r in rows], compress=compress)

    def _forget_inflight(self, generation: int) -> None:
        for batch in self._state.batches:
            self.queue.release(batch.ids)
        self._state.batches.clear()
        for st in self._state.streams.values():
            st.cursor, st.inflight = 0, 0
        self._generation = generation

    def _on_command(self, name: str, payload: bytes) -> None:
        """From paho's thread: ``cmd/stored`` receipts are the queue's; the rest are the agent's."""
        if name != "stored":
            if self._agent_command is None:
                raise ValueError(f"unknown command {name!r}")
            self._agent_command(name, payload)
            return
        try:
            receipt = StoredReceipt.model_validate_json(payload)
        except ValueError as exc:
            raise ValueError(f"bad cmd/stored receipt: {exc}") from exc
        self.counters["confirmed"] += self.queue.confirm(Stream(receipt.stream), receipt.seqs)

    def _on_ack(self, token: Any, code: int) -> None:
        """From paho's thread: a PUBACK for one of our envelopes."""
        if isinstance(token, _Batch):
            self._settle(token, delivered=code < 0x80)
            self._wake.set()

    def _settle(self, batch: _Batch, *, delivered: bool, refused: bool = True) -> None:
        with self._lock:
            if batch not in self._state.batches:
                return
            self._state.batches.discard(batch)
            st = self._state.streams[batch.stream]
            st.inflight -= 1
            if delivered:
                if self.config.delete_on == "broker":
                    self.queue.ack(batch.ids)
                else:  # kept until the server's receipt (cmd/stored)
                    self.queue.mark_sent(batch.stream, list(zip(batch.ids, batch.seqs)))
                self.counters["delivered"] += len(batch.ids)
                st.backoff_s = 0.0
                return
            self.queue.release(batch.ids)
            st.rewind = True
            if not refused:
                return
            self.counters["refused_samples"] += len(batch.ids)
            lo, hi = REFUSAL_BACKOFF_S
            st.backoff_s = min(hi, max(lo, st.backoff_s * 2))
            st.hold_until = time.monotonic() + st.backoff_s
