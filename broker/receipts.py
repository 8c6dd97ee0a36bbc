"""Receipts to the campers: "the server has stored these readings" (``cmd/stored``).

The broker's PUBACK tells a camper only that the broker has its message. A
broker that crashes before it saved its queue to disk loses what it
acknowledged (Mosquitto saves on a clean stop and every ``autosave_interval``),
and the camper had already forgotten it. So the camper keeps each reading
until the ingest, after its store accepted a batch, sends a receipt naming the
seqs it stored (:class:`camperhub.contract.StoredReceipt`); readings without a
receipt in time are sent again (writes are idempotent). A message the ingest
keeps as a dead letter is receipted too: it is in the store, and sending it
again would only make another dead letter.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from camperhub.contract import GZIP_MAGIC, ContractError, Stream, StoredReceipt, command_topic, inflate_payload, parse_topic, seq_ranges
from camperhub.store.base import StoredSample

#: Ranges per receipt message (the contract's bound).
MAX_RANGES = 1000

#: (camper, stream, seq) of something the ingest has handled.
Handled = tuple[str, Stream, int]


def handled_in_payload(topic_name: str, payload: bytes) -> list[Handled]:
    """Best effort for a dead letter: the (camper, stream, seq)s a payload that broke the contract carries."""
    try:
        camper, stream = parse_topic(topic_name)
        raw = inflate_payload(payload) if payload[:2] == GZIP_MAGIC else payload
        samples = json.loads(raw).get("samples")
    except (ValueError, ContractError, AttributeError):
        return []
    if stream is Stream.STATUS or not isinstance(samples, list):
        return []
    return [(camper, stream, s["seq"]) for s in samples if isinstance(s, dict) and type(s.get("seq")) is int]


def receipts(samples: Iterable[StoredSample], handled: Iterable[Handled] = ()) -> list[tuple[str, bytes]]:
    """(topic, payload) of the receipts for a stored batch: one per camper and stream (more past MAX_RANGES)."""
    seqs: dict[tuple[str, Stream], list[int]] = defaultdict(list)
    for s in samples:
        if s.stream is not Stream.STATUS:  # status is not queued on the camper
            seqs[(s.camper, s.stream)].append(s.fields["seq"])
    for camper, stream, seq in handled:
        seqs[(camper, stream)].append(seq)
    out = []
    for (camper, stream), values in seqs.items():
        ranges = seq_ranges(values)
        for i in range(0, len(ranges), MAX_RANGES):
            receipt = StoredReceipt(stream=stream.value, seqs=ranges[i : i + MAX_RANGES])
            out.append((command_topic(camper, "stored"), receipt.model_dump_json().encode()))
    return out


class ReceiptBatcher:
    """Collects what was stored and hands it out as receipts at most every ``every_s``.

    Why: a camper in live mode sends a reading a second, each stored in its own
    batch; a receipt for each would cost about as much 4G data as the reading
    itself. One receipt every few seconds covers all of them (the camper only
    needs it well before ``resend_after_s``). Not thread-safe: the ingest's
    flusher thread owns it.
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._samples: list[StoredSample] = []
        self._handled: list[Handled] = []
        self._due: float | None = None

    def add(self, samples: Iterable[StoredSample], handled: Iterable[Handled] = ()) -> None:
        before = len(self._samples) + len(self._handled)
        self._samples += [s for s in samples if s.stream is not Stream.STATUS]
        self._handled += list(handled)
        if self._due is None and len(self._samples) + len(self._handled) > before:
            self._due = self._clock() + self.every_s

    def due_in(self) -> float | None:
        """Seconds until receipts are due (0 or less: now); None when nothing waits."""
        return None if self._due is None else self._due - self._clock()

    def take(self) -> list[tuple[str, bytes]]:
        """The receipts of everything collected; empties the batcher."""
        out = receipts(self._samples, self._handled)
        self._samples, self._handled, self._due = [], [], None
        return out
