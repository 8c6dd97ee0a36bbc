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
from collections import defaultdict
from collections.abc import Iterable

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
