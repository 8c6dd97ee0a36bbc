"""The ingest on real parts: Mosquitto -> ingest -> store (SQLite and a real InfluxDB)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from camperhub import contract
from camperhub.broker.ingest import Ingest, IngestSettings
from camperhub.contract import Stream
from camperhub.store.base import Store, StoreUnavailable
from camperhub.store.sqlite import SqliteStore
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

NOW_MS = int(time.time() * 1000)




def _ingest(broker: MosquittoBroker, store: Store, **kw) -> Ingest:
    creds = broker.add_service("ingest", "ingest")
    settings = IngestSettings(mqtt_url=broker.url(creds), batch_max_wait_s=0.2, **kw)
    return Ingest(settings, store)


def _start(ingest: Ingest) -> None:
    ingest.start()
    assert ingest.subscribed.wait(10), "ingest did not subscribe"


def _energy(camper: str, seq: int, ts: int, **fields) -> bytes:
    return contract.encode_envelope(camper, "energy", [{"seq": seq, "ts": ts, **fields}])


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stored_seqs(store: Store, camper: str) -> list[int]:
    frame = store.series(camper, Stream.ENERGY, ["seq"], datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1))
    return sorted(int(x) for x in frame["seq"])


def test_good_messages_land_with_their_values_and_times(mosquitto: MosquittoBroker, store: Store):
    camper = mosquitto.add_camper("varese-1")
    ingest = _ingest(mosquitto, store)
    _start(ingest)
    try:
        with MqttTestClient(mosquitto, camper) as pub:
            pub.connect()
            for i in range(20):
                assert pub.publish("camperhub/v1/varese-1/energy", _energy("varese-1", i + 1, NOW_MS - 20_000 + i * 1000, battery_voltage_v=13.0 + i / 100, charge_state="bulk", shore_power=False)).value < 0x80
        _wait(lambda: ingest.counters["stored_samples"] >= 20, 20, "20 stored samples")
    finally:
        ingest.stop()
    latest = store.latest("varese-1", Stream.ENERGY)
    assert latest is not None and latest.ts_ms == NOW_MS - 20_000 + 19_000
    assert latest.fields["battery_voltage_v"] == pytest.approx(13.19) and latest.fields["charge_state"] == "bulk"
    assert latest.fields["shore_power"] is False and latest.fields["seq"] == 20
    assert _stored_seqs(store, "varese-1") == list(range(1, 21))


BAD = [
    (b"not json", "not UTF-8 JSON"),
    (b'{"v": 2, "camper": "varese-1", "stream": "energy", "samples": []}', "unsupported contract version"),
    (b'{"v": 1, "camper": "varese-1", "stream": "weather", "samples": []}', "unknown stream"),
    (json.dumps({"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 5, "ts": NOW_MS, "battery_voltage_v": "high"}]}).encode(), "battery_voltage_v"),
    (json.dumps({"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 5, "ts": NOW_MS, "battery_voltage_v": 655.35}]}).encode(), "less than or equal to 70"),
    (json.dumps({"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 5, "ts": NOW_MS + 86_400_000}]}).encode(), "in the future"),
    (json.dumps({"v": 1, "camper": "varese-1", "stream": "energy", "samples": [{"seq": 5, "ts": 1_500_000_000_000}]}).encode(), "greater than or equal to 1577836800000"),
    (json.dumps({"v": 1, "camper": "varese-2", "stream": "energy", "samples": [{"seq": 5, "ts": NOW_MS}]}).encode(), "does not match topic camper"),
    (b"{" + b" " * (contract.MAX_PAYLOAD_BYTES + 1) + b"}", "exceeds"),
]


def test_bad_messages_become_dead_letters_and_never_block_the_good(mosquitto: MosquittoBroker, store: Store):
    camper = mosquitto.add_camper("varese-1")
    ingest = _ingest(mosquitto, store)
    _start(ingest)
    try:
        with MqttTestClient(mosquitto, camper) as pub:
            pub.connect()
            seq = 0
            for payload, _ in BAD:
                seq += 1
                pub.publish("camperhub/v1/varese-1/energy", _energy("varese-1", seq, NOW_MS - 60_000 + seq * 100, pv_power_w=float(seq)))
                pub.publish("camperhub/v1/varese-1/energy", payload)
            seq += 1
            pub.publish("camperhub/v1/varese-1/energy", _energy("varese-1", seq, NOW_MS - 60_000 + seq * 100, pv_power_w=float(seq)))
        _wait(lambda: ingest.counters["stored_samples"] >= seq and ingest.counters["acked_messages"] >= seq + len(BAD), 20, "good samples and dead letters")
    finally:
        ingest.stop()
    assert _stored_seqs(store, "varese-1") == list(range(1, seq + 1))
    letters = store.dead_letters(limit=100)
    assert ingest.counters["dead_letters"] == len(BAD) == len(letters)
    reasons = " | ".join(d.reason for d in letters)
    for _, expected in BAD:
        assert expected in reasons, expected
    assert {d.topic for d in letters} == {"camperhub/v1/varese-1/energy"}
    assert any(d.payload == b"not json" for d in letters), "the raw payload is kept for the staff"


def test_ingest_killed_mid_batch_loses_nothing_and_doubles_nothing(mosquitto: MosquittoBroker, tmp_path: Path):
    """SIGKILL while a batch is held (not yet written, not acked): the broker redelivers it to the next ingest."""
    camper = mosquitto.add_camper("varese-1")
    creds = mosquitto.add_service("ingest", "ingest")
    db = tmp_path / "store.sqlite"
    env = {**os.environ, "CAMPERHUB_MQTT_URL": mosquitto.url(creds), "CAMPERHUB_STORE": "sqlite", "CAMPERHUB_SQLITE_PATH": str(db),
           "CAMPERHUB_INGEST_BATCH_MAX_WAIT_S": "30", "CAMPERHUB_INGEST_BATCH_MAX_SAMPLES": "1000"}
    cmd = [sys.executable, "-m", "camperhub.cli", "ingest"]
    log = open(tmp_path / "ingest.log", "wb")
    first = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: b"subscribed" in (tmp_path / "ingest.log").read_bytes(), 20, "ingest subscribed")
        with MqttTestClient(mosquitto, camper) as pub:
            pub.connect()
            for i in range(1, 301):
                pub.publish("camperhub/v1/varese-1/energy", _energy("varese-1", i, NOW_MS - 400_000 + i * 1000, load_power_w=float(i)))
            time.sleep(0.5)  # the ingest has them in its batch (30 s wait): nothing written or acked yet
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = subprocess.Popen(cmd, env={**env, "CAMPERHUB_INGEST_BATCH_MAX_WAIT_S": "0.2"}, stdout=log, stderr=subprocess.STDOUT)
            try:
                for i in range(301, 351):
                    pub.publish("camperhub/v1/varese-1/energy", _energy("varese-1", i, NOW_MS - 400_000 + i * 1000, load_power_w=float(i)))
                store = SqliteStore(db)
                try:
                    _wait(lambda: len(_stored_seqs(store, "varese-1")) >= 350, 30, "all 350 samples stored")
                    time.sleep(0.5)
                    seqs = _stored_seqs(store, "varese-1")
                finally:
                    store.close()
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        log.close()
    assert seqs == list(range(1, 351)), "every seq exactly once"
    assert second.returncode == 0


def test_influxdb_down_and_back_mid_run_loses_and_doubles_nothing(mosquitto: MosquittoBroker, tmp_path: Path):
    from camperhub.store.influx import InfluxStore
    from tests.fixtures.influxdb import InfluxServer

    camper = mosquitto.add_camper("varese-1")
    with InfluxServer(tmp_path / "influx") as server:
        store = InfluxStore(server.url, "camperhub", timeout_s=2)
        ingest = _ingest(mosquitto, store, retry_max_s=1)
        _start(ingest)
        try:
            with MqttTestClient(mosquitto, camper) as pub:
                pub.connect()
                for i in range(1, 101):
                    pub.publish("camperhub/v1/varese-1/energy", _energy("varese-1", i, NOW_MS - 300_000 + i * 1000, pv_power_w=float(i)))
                    if i == 40:
                        _wait(lambda: ingest.counters["stored_samples"] >= 40, 20, "first 40 stored")
                        server.kill()
                _wait(lambda: ingest.counters["store_retries"] >= 2, 20, "the ingest holding its batch and retrying")
                server.restart()
            _wait(lambda: ingest.counters["stored_samples"] >= 100, 30, "all samples stored after the restart")
        finally:
            ingest.stop()
        rows = server.query('SELECT COUNT("seq") FROM "energy"', db="camperhub")
        seqs = _stored_seqs(store, "varese-1")
        store.close()
    assert seqs == list(range(1, 101))
    assert rows["results"][0]["series"][0]["values"][0][1] == 100, "no point doubled"


def test_end_to_end_from_simulator_to_influxdb(mosquitto: MosquittoBroker, tmp_path: Path, request: pytest.FixtureRequest):
    """simulator -> agent -> Mosquitto -> ingest -> InfluxDB: every published point stored with its values, tag and time."""
    from tests.edge.test_agent import AgentThread, _config, _victron_sim

    store = request.getfixturevalue("influx_store")
    camper = mosquitto.add_camper("varese-1")
    watcher = mosquitto.add_service("watcher", "api")
    ingest = _ingest(mosquitto, store)
    _start(ingest)
    published: list[dict] = []
    try:
        with _victron_sim() as sim, MqttTestClient(mosquitto, watcher) as sub:
            sub.connect()
            sub.subscribe("camperhub/v1/varese-1/energy")
            agent = AgentThread(_config("varese-1", mosquitto.url(camper), sim.listen.port, tmp_path)).start()
            try:
                sub.pump_until(lambda: len(sub.messages) >= 8, 20, "eight energy envelopes")
            finally:
                agent.stop()
            published = [s for m in sub.messages for s in json.loads(m.payload)["samples"]]
        _wait(lambda: ingest.counters["stored_samples"] >= len(published), 20, "every published sample stored")
    finally:
        ingest.stop()
    fields = sorted({k for s in published for k in s} - {"ts"})
    start = datetime.fromtimestamp(min(s["ts"] for s in published) / 1000, UTC)
    frame = store.series("varese-1", Stream.ENERGY, fields, start, datetime.now(UTC))
    stored = {int(t.value // 1_000_000): row for t, row in frame.iterrows()}
    for sample in published:
        row = stored[sample["ts"]]  # the reading's own time, to the millisecond, as UTC
        for key, value in sample.items():
            if key == "ts":
                continue
            assert row[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert store.campers() == ["varese-1"]


class _FlakyRollups(SqliteStore):
    """A SQLite store whose first rollup fails as if the disk were busy."""

    failures = 1

    def rollup(self, now: datetime | None = None) -> int:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("database is locked")
        return super().rollup(now)


def test_the_ingest_folds_rollups_and_prunes_old_raw(mosquitto: MosquittoBroker, tmp_path: Path):
    """After flushes the ingest folds the energy minutes and deletes raw past the retention;
    a failing rollup is tried again later and holds up nothing."""
    camper = mosquitto.add_camper("varese-1")
    store = _FlakyRollups(tmp_path / "store.sqlite")
    creds = mosquitto.add_service("ingest", "ingest")
    settings = IngestSettings(mqtt_url=mosquitto.url(creds), batch_max_wait_s=0.1, rollup_every_s=0.1, prune_every_s=0.1)
    ingest = Ingest(settings, store, raw_retention=timedelta(minutes=5))
    # ten whole minutes, ended before now: now as the test runs, not as the module was imported (in
    # a full run that is many minutes earlier, and minute 7 would be past the raw retention)
    now_ms = int(time.time() * 1000)
    start = now_ms - now_ms % 60_000 - 10 * 60_000
    samples = [{"seq": i + 1, "ts": start + i * 10_000, "pv_power_w": float(i)} for i in range(60)]
    _start(ingest)
    try:
        with MqttTestClient(mosquitto, camper) as pub:
            pub.connect()
            pub.publish("camperhub/v1/varese-1/energy", contract.encode_envelope("varese-1", "energy", samples[:30]))
            _wait(lambda: ingest.counters["rollup_errors"] == 1 and ingest.counters["acked_messages"] == 1, 20, "a failed rollup, the batch stored anyway")
            pub.publish("camperhub/v1/varese-1/energy", contract.encode_envelope("varese-1", "energy", samples[30:]))
            # generous: on a loaded machine the broker may drop the ingest once, and the batch comes back on redelivery
            _wait(lambda: ingest.counters["rollup_minutes"] >= 10 and ingest.counters["pruned_samples"] > 0, 60, "rollups and a prune")
            pub.publish("camperhub/v1/varese-1/energy", _energy("varese-1", 61, start + 7 * 60_000 + 5_000, pv_power_w=100.0))  # late, into minute 7
            _wait(lambda: ingest.counters["rollup_minutes"] >= 11, 60, "the late minute folded again")
    finally:
        ingest.stop()
    window = (datetime.fromtimestamp(start / 1000, UTC), datetime.fromtimestamp((start + 10 * 60_000) / 1000, UTC))
    assert store.series("varese-1", Stream.ENERGY, ["seq"], *window).index[0] >= window[1] - timedelta(minutes=6)  # old raw gone
    counted = store.series("varese-1", Stream.ENERGY, ["pv_power_w"], *window, every=timedelta(minutes=1), aggregate="count")
    assert counted["pv_power_w"].tolist() == [6.0] * 7 + [7.0] + [6.0] * 2  # the older minutes from the rollups
    assert store.rollup() == 0
    store.close()
