"""The agent end to end through a broker outage: simulator -> agent -> durable queue -> real Mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from camperhub.edge.config import EdgeConfig, QueueConfig
from camperhub.edge.queue import DurableQueue
from tests.edge.offline_helpers import DurableSubscriber, samples
from tests.edge.test_agent import AgentThread, _config, _victron_sim
from tests.fixtures.mosquitto import MosquittoBroker


def _with_queue(config: EdgeConfig, **queue: Any) -> EdgeConfig:
    return config.model_copy(update={"queue": QueueConfig(path=config.queue.path, delete_on="broker", **queue)})


def _statuses(sub: DurableSubscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload)["samples"][0] for m in sub.messages if m.topic == "camperhub/v1/varese-1/status"]


def _unique(seqs: list[int]) -> list[int]:
    """Seqs in arrival order without redeliveries. QoS 1 is at-least-once: an envelope the broker
    forwarded just before it was killed, but whose PUBACK died with it, comes again (DUP) after the
    restart; the store's writes are idempotent. At most one window of envelopes may repeat."""
    out = list(dict.fromkeys(seqs))
    assert len(seqs) - len(out) <= 50 * 20
    return out


def _outage(mosquitto: MosquittoBroker, sub: DurableSubscriber, agent: AgentThread, seconds: float) -> int:
    """Stop the broker while the agent keeps reading; start it again (same port, same files)."""
    port = mosquitto.port
    mosquitto.stop()
    time.sleep(seconds)
    taken_offline = agent.agent.counters["samples"]
    mosquitto.start()
    assert mosquitto.port == port
    sub.reconnect()
    return taken_offline


def test_every_reading_taken_during_an_outage_arrives_once_in_order(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    with _victron_sim() as sim, DurableSubscriber(mosquitto, ingest, client_id="ingest-offline") as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/+")
        config = _with_queue(_config("varese-1", mosquitto.url(camper), sim.listen.port, tmp_path), commit_interval_s=0.2)
        agent = AgentThread(config).start()
        try:
            sub.pump_until(lambda: len(samples(sub.messages, "varese-1")) >= 3, 20, "energy before the outage")
            sub.settle()
            taken = _outage(mosquitto, sub, agent, 3.0)
            sub.pump_until(lambda: len(samples(sub.messages, "varese-1")) >= taken, 20, "the readings taken offline")
            sub.settle()
        finally:
            agent.stop()
        taken = agent.agent.counters["samples"]
        publisher = agent.publisher
    got = _unique([s["seq"] for s in samples(sub.messages, "varese-1")])

    q = DurableQueue(config.queue.path)
    left = [r.seq for r in q.all_rows()]
    q.close()
    assert got == sorted(set(got)), "in seq order, no duplicate"
    assert got + left == list(range(1, taken + 1)), "every reading taken arrived once or is still queued"
    assert len(left) <= 10, "only the last moment's readings are left for the next run"
    assert publisher.counters["disconnects"] >= 1


def test_a_tiny_disk_budget_folds_old_readings_and_counts_them(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    with _victron_sim() as sim, DurableSubscriber(mosquitto, ingest, client_id="ingest-fold") as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/+")
        config = _with_queue(_config("varese-1", mosquitto.url(camper), sim.listen.port, tmp_path), commit_interval_s=0.2, max_mb=0.002)
        agent = AgentThread(config).start()
        try:
            sub.pump_until(lambda: bool(_statuses(sub)), 20, "online status")
            sub.settle()
            _outage(mosquitto, sub, agent, 4.0)
            sub.pump_until(lambda: any(s.get("queue_folded") for s in _statuses(sub)), 20, "a status counting the fold")
            sub.pump_until(lambda: agent.publisher.queue.depth <= 3, 20, "the queue drained")
            sub.settle()
        finally:
            agent.stop()
        taken = agent.agent.counters["samples"]
        stats = agent.publisher.queue.stats()
    got = _unique([s["seq"] for s in samples(sub.messages, "varese-1")])
    assert got == sorted(got), "seq strictly increasing across the fold"
    assert stats["queue_folded"] > 0
    assert len(got) + stats["queue_depth"] + stats["queue_folded"] + stats["queue_dropped"] == taken, "no reading silently lost"
