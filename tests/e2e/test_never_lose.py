"""Issue "never lose a sample": the fault tests, end to end on real parts.

pymodbus simulator -> `camperhub edge` -> Mosquitto -> `camperhub ingest` -> InfluxDB
(tests/e2e/pipeline.py). Every reading is numbered by the agent; after each
fault, :meth:`Pipeline.finish` checks that InfluxDB holds seq 1..N of the
camper's energy stream in time order, each exactly once, N being the last
seq the agent committed and nothing left in its queue. The one stated
exception is the power cut (SIGKILL of the agent): the readings taken since
the last group commit are lost, and never half of anything; the test bounds
that window.

The faults: the broker stopped and restarted; the network cut, blackholed and
slowed by a TCP proxy; the ingest SIGKILLed mid-batch; InfluxDB hung and
stopped; the agent SIGKILLed ten times; 100,000 readings queued offline and
released; a replay SIGKILLed on both sides; a broker *crash* while the ingest is
stopped (Mosquitto loses what it had not saved to disk, and the agent, which keeps
every reading until the ingest's receipt, sends it again).

The sleeps below are how long a fault lasts (readings keep being taken
meanwhile), never an assertion.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camperhub.contract import Stream
from camperhub.edge.queue import DurableQueue
from tests.e2e.pipeline import INTERVAL_S, EdgeSettings, Pipeline, integrity, pipeline, wait_for
from tests.edge.offline_helpers import T0_MS, energy
from tests.fixtures.influxdb import InfluxServer
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.tcpproxy import TcpProxy

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def p(mosquitto: MosquittoBroker, influx_server: InfluxServer, tmp_path: Path) -> Iterator[Pipeline]:
    with pipeline(mosquitto, influx_server, tmp_path / "pipeline") as p:
        yield p


def test_broker_stopped_and_restarted(p: Pipeline):
    p.start_ingest()
    agent = p.start_agent()
    p.wait_flowing(what="readings before the outage")
    before, port = p.committed(), p.broker.port
    p.broker.stop()  # SIGTERM: Mosquitto saves its sessions and queued messages
    time.sleep(3)
    taken_offline = p.committed()
    p.broker.start()
    assert p.broker.port == port
    p.wait_stored_past(taken_offline + 3, what="the readings of the outage and new ones after it")
    assert taken_offline - before >= 5, "the agent went on taking readings while the broker was down"
    p.ingest.wait_log("subscribed to", 2)  # the ingest reconnected by itself
    agent.wait_log("connected to", 2)
    p.finish(agent)


def test_network_cut_blackholed_and_slowed_by_a_tcp_proxy(p: Pipeline):
    keepalive_s = 5
    with TcpProxy(p.broker.port) as proxy:
        p.start_ingest()
        agent = p.start_agent(EdgeSettings(proxy.via(p.broker_url), keepalive_s=keepalive_s))
        p.wait_flowing(what="readings through the proxy")

        proxy.cut()  # every connection reset at once, new ones reset until restored
        time.sleep(3)
        proxy.restore()
        p.wait_flowing(what="readings after the cut")

        # silence (a 4G link that vanished): nothing arrives, nothing is closed; the agent must
        # find out by itself (MQTT keepalive) and dial again, into the void too
        dialled = proxy.stats().connections
        proxy.cut(mode="blackhole")
        wait_for(lambda: proxy.stats().connections > dialled, 3 * keepalive_s, "the agent noticing the dead link by itself")
        time.sleep(1)
        proxy.restore()  # what lived through the blackhole is reset (its NAT state is gone)
        p.wait_flowing(what="readings after the blackhole")

        proxy.slow(latency_s=0.5, bytes_per_s=100)  # narrower than what the agent sends: a backlog builds up
        time.sleep(4)
        proxy.slow(latency_s=0.3, bytes_per_s=5000)  # slow, but wide enough to catch up
        p.wait_flowing(readings=10, what="readings through the slow link")
        proxy.restore()
        stats = proxy.stats()
        p.finish(agent)
    assert stats.resets >= 2 and stats.connections >= 3, f"the agent reconnected after each cut: {stats}"


def test_ingest_killed_with_sigkill_mid_batch(p: Pipeline):
    rng = random.Random(41)
    p.start_ingest()
    # every reading is sent at once (5 a second), so the ingest always has messages in hand
    agent = p.start_agent(EdgeSettings(p.broker_url, batch_interval_s=0, compress=False))
    p.wait_flowing(what="readings before the first kill")

    # first kill: an ingest that holds everything it receives for a minute, killed with ten
    # readings or more in its hands (received, not written, not acknowledged)
    p.ingest.kill()
    p.start_ingest(BATCH_MAX_WAIT_S="60", BATCH_MAX_SAMPLES="100000")
    stored = p.stored()
    p.wait_committed_past(p.committed() + 10)
    time.sleep(0.5)  # the last of them travel agent -> broker -> ingest
    assert p.stored() == stored, "the holding ingest wrote nothing"
    p.ingest.kill()
    p.start_ingest(BATCH_MAX_WAIT_S="1")

    # then at random moments, batches of up to a second in hand
    for _ in range(3):
        p.wait_flowing(what="readings stored before the kill")
        time.sleep(rng.uniform(0.1, 1.0))
        p.ingest.kill()
        time.sleep(rng.uniform(0.0, 1.0))  # the broker queues for the ingest's persistent session meanwhile
        p.start_ingest(BATCH_MAX_WAIT_S="1")
    p.wait_flowing(what="readings after the last restart")
    p.finish(agent)


def test_influxdb_hung_then_stopped(mosquitto: MosquittoBroker, tmp_path: Path):
    # a private InfluxDB: killing the session's server would take it from the other tests
    with InfluxServer(tmp_path / "influx") as influx, pipeline(mosquitto, influx, tmp_path / "pipeline") as p:
        p.start_ingest()
        agent = p.start_agent()
        p.wait_flowing(what="readings before InfluxDB hangs")
        influx.pause()  # SIGSTOP: connections accepted, nothing answered
        time.sleep(3)
        influx.resume()
        p.wait_flowing(what="readings after InfluxDB hung")
        influx.kill()  # SIGKILL: down
        time.sleep(3)
        influx.restart()  # same port, same data
        p.wait_flowing(what="readings after InfluxDB came back")
        p.finish(agent)
        assert p.ingest.log_text().count("store unavailable") >= 2, "the ingest held its batches and retried"
        assert p.ingest.starts == 1, "the ingest lived through it"


def test_agent_killed_with_sigkill_ten_times_loses_only_the_power_cut_window(p: Pipeline):
    """SIGKILL at ten random (seeded) moments, restart after each: what was committed arrives once,
    and the readings lost at each kill are those of the last commit interval only."""
    commit_s, slack_s = 0.5, 0.5
    window_ms = (commit_s + INTERVAL_S + slack_s) * 1000  # the power-cut window, with slack for a loaded machine
    rng = random.Random(20261125)
    settings = EdgeSettings(p.broker_url, commit_interval_s=commit_s)
    p.start_ingest()
    agent = p.start_agent(settings)
    kills: list[tuple[int, float]] = []  # (ms of the kill, seconds until the next run committed a reading)
    for _ in range(10):
        p.wait_committed_past(p.committed())  # this run is taking and committing readings
        time.sleep(rng.uniform(0.0, 1.5))
        t_kill = time.time()
        agent.kill()
        assert integrity(p.queue_path) == "ok"
        kept = p.committed()
        agent = p.start_agent(settings, wait_connected=False)
        p.wait_committed_past(kept)
        kills.append((int(t_kill * 1000), time.time() - t_kill))
    p.wait_flowing(what="readings after the last restart")
    ts = [int(point[0]) for point in p.finish(agent)]

    lost_ms, restart_s = [], []
    for k, downtime_s in kills:
        last_before = max(t for t in ts if t <= k)
        first_after = min(t for t in ts if t > k)
        lost_ms.append(k - last_before)
        restart_s.append(round(downtime_s, 2))
        assert k - last_before <= window_ms, f"readings of the last {k - last_before} ms before a kill were lost: more than one commit interval"
        assert first_after - last_before <= downtime_s * 1000 + window_ms, "a gap longer than the restart plus the power-cut window"
    killed = {max(t for t in ts if t <= k) for k, _ in kills}
    calm = [b - a for a, b in zip(ts, ts[1:]) if a not in killed]
    assert max(calm) <= window_ms, "no reading lost between the kills"
    print(f"\n10 SIGKILLs: readings lost from the last {lost_ms} ms before each; restarts took {restart_s} s")


def test_100000_readings_queued_offline_then_released(p: Pipeline):
    n = 100_000
    q = DurableQueue(p.queue_path)
    for i in range(n):  # taken offline a day ago, one every 100 ms, numbered in battery_cycles
        q.put(Stream.ENERGY, energy(i, T0_MS + i * 100))
    q.flush()
    q.close()
    p.start_ingest()
    agent = p.start_agent()
    p.wait_stored_past(n, timeout_s=120, what="the whole backlog and the live readings after it")
    points = p.finish(agent)
    assert len(points) > n
    backlog = p.points('"seq", "battery_cycles"')[:n]
    assert all(int(cycles) == int(seq) - 1 for _ts, seq, cycles in backlog), "each reading landed with its own values"


def test_a_backlog_replay_survives_sigkill_of_the_agent_and_of_the_ingest(p: Pipeline):
    """While a backlog replays over a narrow link (up to 20 gzip'd envelopes of 500 readings in flight),
    the agent and then the ingest are killed: what they had in hand is sent again, and lands once."""
    n = 20_000  # about 9 bytes a reading gzip'd: some 190 kB, about 9 s through 20 kB/s
    q = DurableQueue(p.queue_path)
    for i in range(n):
        q.put(Stream.ENERGY, energy(i, T0_MS + i * 100))
    q.flush()
    q.close()
    with TcpProxy(p.broker.port) as proxy:
        proxy.slow(bytes_per_s=20_000)
        settings = EdgeSettings(proxy.via(p.broker_url))
        p.start_ingest()
        agent = p.start_agent(settings)
        p.wait_stored_past(3_000, what="the replay under way")
        agent.kill()
        agent = p.start_agent(settings)
        p.wait_stored_past(9_000, what="the replay under way again")
        p.ingest.kill()
        assert p.stored()[1] < n, "killed mid-replay"
        p.start_ingest()
        p.wait_stored_past(n, timeout_s=60, what="the whole backlog")
        p.finish(agent)


def test_a_broker_crash_while_the_ingest_is_stopped(p: Pipeline):
    """Mosquitto writes its queue to disk only on a clean stop (or every autosave_interval): a crash loses
    what it acknowledged. The agent keeps each reading until the ingest's receipt (cmd/stored) and sends
    again what none came for within resend_after_s (5 s here)."""
    p.start_ingest()
    agent = p.start_agent()
    p.wait_flowing(what="readings before the ingest stops")
    assert p.ingest.stop() == 0  # an ingest deploy: the broker queues for its persistent session
    before = p.committed()
    p.wait_committed_past(before + 15)  # acknowledged by the broker, kept by the agent for want of a receipt
    time.sleep(2 * INTERVAL_S + 1)  # ... by the agent's next batch and commit
    os.kill(p.broker.pid, signal.SIGKILL)  # the broker's host loses power
    port = p.broker.port
    p.broker.stop()  # reaps it
    p.broker.start()
    assert p.broker.port == port
    p.start_ingest()
    p.wait_flowing(what="readings after the crash")
    p.finish(agent)
