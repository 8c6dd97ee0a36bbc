"""In-process fan-out of live messages to server-sent-events clients.

One :class:`Broadcaster` per API process, living on its event loop. Producers
(the MQTT listener of :mod:`camperhub.api.live`, in paho's thread) hand it
messages with :meth:`Broadcaster.publish_threadsafe`; each SSE connection
holds a :class:`Subscription` for one camper (or all campers).

Rules (ARCHITECTURE.md §11: one process holds 5,000 SSE clients):

* publishing never waits for a client: each subscription has a bounded queue,
  and a client whose queue is full is *dropped* (its stream ends, counted in
  ``dropped``). It reconnects with ``Last-Event-ID`` and gets what it missed
  from the replay ring, or the current state if it missed too much;
* subscriptions are indexed by camper, so a message costs one put per
  interested client, not a scan of every client;
* message ids are ``{boot}.{n}``: ``n`` increases by one per message of this
  process; ``boot`` changes with every start, so an id from a previous process
  is recognised as unknown (the client then gets the current state) instead of
  being compared with numbers that started again from 1;
* the replay ring keeps the last ``replay`` messages of all campers; the
  latest message per (camper, stream) is kept as well, so a new client gets
  the current state at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One live message: ``n`` orders it within this process; ``data`` is JSON-ready."""

    n: int
    camper: str
    stream: str
    ts_ms: int
    data: dict[str, Any]
    boot: str

    @property
    def id(self) -> str:
        return f"{self.boot}.{self.n}"


@dataclass(eq=False)
class Subscription:
    """One client's view: ``async for msg in sub`` until the client leaves or is dropped."""

    camper: str | None
    streams: frozenset[str] | None
    queue: asyncio.Queue[Message | None]
    dropped: bool = False
    closed: bool = False
    #: with a Last-Event-ID: True when the ring still held everything after it (nothing was lost)
    replay_complete: bool = True
    _unsubscribe: Callable[["Subscription"], None] | None = field(default=None, repr=False)

    def wants(self, msg: Message) -> bool:
        return (self.camper is None or msg.camper == self.camper) and (self.streams is None or msg.stream in self.streams)

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            msg = await self.queue.get()
            if msg is None:  # dropped or closed
                return
            yield msg

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._unsubscribe is not None:
                self._unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Broadcaster:
    """Fan-out with bounded per-client queues and a replay ring; use from its event loop only
    (other threads: :meth:`publish_threadsafe`)."""

    def __init__(self, *, queue_size: int = 64, replay: int = 2048, on_drop: Callable[[], None] | None = None) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.queue_size = queue_size
        self.boot = secrets.token_hex(4)
        self._n = 0
        self._ring: deque[Message] = deque(maxlen=replay) if replay > 0 else deque(maxlen=1)
        self._replay = replay
        self._by_camper: dict[str | None, set[Subscription]] = {}
        self._latest: dict[tuple[str, str], Message] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_drop = on_drop
        self.dropped = 0
        self.published = 0

    # -- producers -------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Remember the loop :meth:`publish_threadsafe` hands messages to (default: the running one)."""
        self._loop = loop or asyncio.get_running_loop()

    def publish(self, camper: str, stream: str, ts_ms: int, data: dict[str, Any]) -> Message:
        """Give a message an id, keep it for replay and queue it to every interested client."""
        self._n += 1
        msg = Message(self._n, camper, stream, ts_ms, data, self.boot)
        if self._replay > 0:
            self._ring.append(msg)
        key = (camper, stream)
        old = self._latest.get(key)
        if old is None or old.ts_ms <= ts_ms:  # a late replay does not replace the current state
            self._latest[key] = msg
        self.published += 1
        for group in (self._by_camper.get(camper), self._by_camper.get(None)):
            if not group:
                continue
            for sub in list(group):
                if sub.wants(msg):
                    self._offer(sub, msg)
        return msg

    def publish_threadsafe(self, camper: str, stream: str, ts_ms: int, data: dict[str, Any]) -> None:
        """From another thread: the message is published on the loop soon (no-op when the loop is gone)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.publish, camper, stream, ts_ms, data)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def _offer(self, sub: Subscription, msg: Message) -> None:
        try:
            sub.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._drop(sub)

    def _drop(self, sub: Subscription) -> None:
        """The client lags by a whole queue: end its stream so that it reconnects (and replays)."""
        sub.dropped = True
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop()
        self._remove(sub)
        _clear(sub.queue)
        sub.queue.put_nowait(None)
        log.info("dropped a live client of %s that lagged %d messages behind", sub.camper or "all campers", self.queue_size)

    # -- consumers -------------------------------------------------------------------
    def subscribe(self, camper: str | None = None, streams: set[str] | frozenset[str] | None = None, last_id: str | None = None) -> Subscription:
        """A new subscription; with ``last_id``, what came after it is queued first (see ``replay_complete``).

        Replayed messages beyond the queue size are not dropped: the queue is
        sized to hold them, then it is bounded as usual.
        """
        sub = Subscription(camper, frozenset(streams) if streams is not None else None, asyncio.Queue(self.queue_size))
        if last_id is not None:
            replay, sub.replay_complete = self._after(last_id, sub)
            if len(replay) > self.queue_size:
                sub.queue = asyncio.Queue(len(replay) + self.queue_size)
            for msg in replay:
                sub.queue.put_nowait(msg)
        sub._unsubscribe = self._remove
        self._by_camper.setdefault(camper, set()).add(sub)
        return sub

    def _after(self, last_id: str, sub: Subscription) -> tuple[list[Message], bool]:
        n = self.parse_id(last_id)
        if n is None or n > self._n:
            return [], False
        if self._replay <= 0:
            return [], n == self._n
        complete = not self._ring or self._ring[0].n <= n + 1
        return [m for m in self._ring if m.n > n and sub.wants(m)], complete

    def parse_id(self, last_id: str) -> int | None:
        """``n`` of an id of this process, else None (another boot, or garbage)."""
        boot, _, n = last_id.strip().partition(".")
        if boot != self.boot or not n.isdigit():
            return None
        return int(n)

    def _remove(self, sub: Subscription) -> None:
        group = self._by_camper.get(sub.camper)
        if group is not None:
            group.discard(sub)
            if not group:
                del self._by_camper[sub.camper]

    def latest(self, camper: str, stream: str) -> Message | None:
        """The newest message (by reading time) of a camper's stream seen by this process."""
        return self._latest.get((camper, stream))

    def last_id(self) -> str:
        """The id of the newest message (``{boot}.0`` before any)."""
        return f"{self.boot}.{self._n}"

    @property
    def subscribers(self) -> int:
        return sum(len(g) for g in self._by_camper.values())

    def close(self) -> None:
        """End every stream (shutdown)."""
        for group in list(self._by_camper.values()):
            for sub in list(group):
                self._remove(sub)
                _clear(sub.queue)
                sub.queue.put_nowait(None)
        self._loop = None


def _clear(queue: asyncio.Queue[Any]) -> None:
    while True:
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            return
