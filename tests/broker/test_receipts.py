"""Receipts (broker/receipts.py): what the ingest tells each camper it has stored."""

from __future__ import annotations

import json

from camperhub.contract import Stream, StoredReceipt, encode_envelope, gzip_payload
from camperhub.broker.receipts import ReceiptBatcher, handled_in_payload, receipts
from camperhub.store.base import StoredSample
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

T0 = 1_764_057_600_000


def _s(camper: str, stream: Stream, seq: int) -> StoredSample:
    return StoredSample(camper, stream, T0 + seq, {"seq": seq})


def test_one_receipt_per_camper_and_stream_with_merged_ranges_and_no_status():
    batch = [_s("varese-1", Stream.ENERGY, q) for q in (5, 1, 2, 3, 9, 2)] + [_s("como-2", Stream.EVENT, 7), _s("varese-1", Stream.STATUS, 40)]
    out = {topic: StoredReceipt.model_validate_json(payload) for topic, payload in receipts(batch, [("varese-1", Stream.ENERGY, 4)])}
    assert out == {
        "camperhub/v1/varese-1/cmd/stored": StoredReceipt(stream="energy", seqs=[(1, 5), (9, 9)]),
        "camperhub/v1/como-2/cmd/stored": StoredReceipt(stream="event", seqs=[(7, 7)]),
    }


def test_many_ranges_are_split_over_several_receipts():
    batch = [_s("varese-1", Stream.ENERGY, q) for q in range(0, 5000, 2)]  # 2,500 one-seq ranges
    payloads = [StoredReceipt.model_validate_json(p) for _, p in receipts(batch)]
    assert [len(p.seqs) for p in payloads] == [1000, 1000, 500]


def test_the_seqs_of_a_dead_letter_are_read_from_plain_or_gzip_payloads():
    env = json.loads(encode_envelope("varese-1", "energy", [{"seq": 3, "ts": T0}, {"seq": 4, "ts": T0 + 1}]))
    env["samples"][1]["battery_voltage_v"] = 999  # out of range: a dead letter
    raw = json.dumps(env).encode()
    expected = [("varese-1", Stream.ENERGY, 3), ("varese-1", Stream.ENERGY, 4)]
    assert handled_in_payload("camperhub/v1/varese-1/energy", raw) == expected
    assert handled_in_payload("camperhub/v1/varese-1/energy", gzip_payload(raw)) == expected
    assert handled_in_payload("camperhub/v1/varese-1/energy", b"\x00garbage") == []
    assert handled_in_payload("camperhub/v1/varese-1/status", raw) == [], "status is never queued on the camper"
    assert handled_in_payload("not/a/topic", raw) == []


def test_the_ingest_may_send_receipts_and_nothing_else_downlink(mosquitto: MosquittoBroker):
    ingest = mosquitto.add_service("ingest", "ingest")
    with MqttTestClient(mosquitto, ingest) as client:
        client.connect()
        ok = client.publish("camperhub/v1/varese-1/cmd/stored", b'{"stream": "energy", "seqs": [[1, 2]]}')
        refused = client.publish("camperhub/v1/varese-1/cmd/mode", b'{"mode": "live", "minutes": 5}')
    assert ok.value < 0x80 and refused.value == 135, "receipts only: the ingest cannot switch a camper's mode"


def test_the_batcher_sends_one_receipt_for_everything_stored_in_its_window():
    now = [100.0]
    batcher = ReceiptBatcher(5.0, clock=lambda: now[0])
    assert batcher.due_in() is None
    batcher.add([_s("varese-1", Stream.STATUS, 1)])
    assert batcher.due_in() is None, "status is not receipted"
    for seq in range(1, 6):  # live mode: a reading a second, each its own batch
        batcher.add([_s("varese-1", Stream.ENERGY, seq)])
        now[0] += 1.0
    assert batcher.due_in() == 0.0
    (topic, payload), = batcher.take()
    assert StoredReceipt.model_validate_json(payload).seqs == [(1, 5)]
    assert batcher.due_in() is None and batcher.take() == []
