"""The ingest's maintainer keeps the position history (staff only) for a bounded time: every
``prune_every_s`` it deletes positions older than CAMPERHUB_POSITION_RETENTION_DAYS
(Store.prune_positions), on a real Mosquitto, in process and as ``camperhub ingest``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from camperhub import contract
from camperhub.broker.ingest import Ingest, IngestSettings
from camperhub.contract import Stream
from camperhub.store.base import StoredSample, StoreUnavailable
from camperhub.store.sqlite import SqliteStore
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient
from tests.fixtures.procs import terminate

pytestmark = pytest.mark.timeout(90)

CAMPER = "varese-1"
DAY_MS = 86_400_000
NOW_MS = int(time.time() * 1000)
ALL = (datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _position(seq: int, ts: int) -> StoredSample:
    return StoredSample(CAMPER, Stream.POSITION, ts, {"seq": seq, "lat": 45.8068, "lon": 8.8128, "fix": 3})


def _old_and_recent() -> list[StoredSample]:
    """Positions 40 and 31 days old (past a 30-day retention), and 29 days and 1 minute old (kept)."""
    return [_position(1, NOW_MS - 40 * DAY_MS), _position(2, NOW_MS - 31 * DAY_MS),
            _position(3, NOW_MS - 29 * DAY_MS), _position(4, NOW_MS - 60_000)]


def _position_seqs(store: SqliteStore) -> list[int]:
    return [int(x) for x in store.series(CAMPER, Stream.POSITION, ["seq"], *ALL)["seq"]]


def _publish_position(broker: MosquittoBroker, seq: int, ts: int) -> None:
    """One position through the broker: a flush wakes the maintainer."""
    with MqttTestClient(broker, broker.add_camper(CAMPER)) as pub:
        pub.connect()
        pub.publish(f"camperhub/v1/{CAMPER}/position", contract.encode_envelope(CAMPER, "position", [
            {"seq": seq, "ts": ts, "lat": 45.8276, "lon": 8.8442, "fix": 3}]))


class _FlakyPrune(SqliteStore):
    """Fails the first position prune, as a store that is down for a moment."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.prune_calls = 0

    def prune_positions(self, older_than: datetime) -> int:
        self.prune_calls += 1
        if self.prune_calls == 1:
            raise StoreUnavailable("down for a moment")
        return super().prune_positions(older_than)


def test_the_maintainer_prunes_positions_past_the_retention_every_prune_interval(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    store = _FlakyPrune(tmp_path / "store.sqlite")
    store.write(_old_and_recent())
    creds = mosquitto.add_service("ingest", "ingest")
    settings = IngestSettings(mqtt_url=mosquitto.url(creds), batch_max_wait_s=0.1, rollup_every_s=3600, prune_every_s=0.2)
    ingest = Ingest(settings, store, position_retention=timedelta(days=30))  # no raw retention: positions alone
    ingest.start()
    try:
        assert ingest.subscribed.wait(10), "ingest did not subscribe"
        _publish_position(mosquitto, 5, NOW_MS - 1000)
        _wait(lambda: ingest.counters["prune_positions_errors"] == 1 and ingest.counters["acked_messages"] == 1, 20,
              "a failed prune, the position stored anyway")
        _publish_position(mosquitto, 6, NOW_MS - 500)  # a later flush: the prune is due again
        _wait(lambda: ingest.counters["pruned_positions"] == 2 and ingest.counters["acked_messages"] == 2, 20,
              "the two old positions pruned, the position stored")
        # a replayed old position (a backlog from the camper) goes at the next prune
        _publish_position(mosquitto, 1, NOW_MS - 40 * DAY_MS)
        _wait(lambda: ingest.counters["acked_messages"] == 3, 20, "the replay stored")
        time.sleep(0.3)
        _publish_position(mosquitto, 7, NOW_MS)
        _wait(lambda: ingest.counters["pruned_positions"] == 3 and ingest.counters["acked_messages"] == 4, 20,
              "the replayed old position pruned, the last position stored")
    finally:
        ingest.stop()
    assert _position_seqs(store) == [3, 4, 5, 6, 7]
    assert ingest.counters["prune_errors"] == 0 and ingest.counters["pruned_samples"] == 0  # raw energy: kept forever
    store.close()


def test_without_a_position_retention_nothing_is_pruned(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    store.write(_old_and_recent())
    creds = mosquitto.add_service("ingest", "ingest")
    settings = IngestSettings(mqtt_url=mosquitto.url(creds), batch_max_wait_s=0.1, rollup_every_s=0.1, prune_every_s=0.1)
    ingest = Ingest(settings, store, raw_retention=timedelta(days=1))  # raw energy pruned, positions kept forever
    ingest.start()
    try:
        assert ingest.subscribed.wait(10), "ingest did not subscribe"
        _publish_position(mosquitto, 5, NOW_MS - 1000)
        _wait(lambda: ingest.counters["acked_messages"] == 1, 20, "the position stored")
        time.sleep(0.5)  # several maintainer rounds
        _publish_position(mosquitto, 6, NOW_MS - 500)
        _wait(lambda: ingest.counters["acked_messages"] == 2, 20, "the second position stored")
        time.sleep(0.5)
    finally:
        ingest.stop()
    assert _position_seqs(store) == [1, 2, 3, 4, 5, 6]
    assert ingest.counters["pruned_positions"] == 0 and ingest.counters["prune_positions_errors"] == 0
    store.close()


def test_camperhub_ingest_reads_the_retention_from_the_environment(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """``CAMPERHUB_POSITION_RETENTION_DAYS=30``: the positions 31 and 40 days old go, the others stay."""
    path = tmp_path / "store.sqlite"
    with SqliteStore(path) as store:
        store.write(_old_and_recent())
    creds = mosquitto.add_service("ingest", "ingest")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPERHUB_")}
    env.update(
        CAMPERHUB_MQTT_URL=mosquitto.url(creds), CAMPERHUB_STORE="sqlite", CAMPERHUB_SQLITE_PATH=str(path),
        CAMPERHUB_POSITION_RETENTION_DAYS="30", CAMPERHUB_RAW_RETENTION_DAYS="0",
        CAMPERHUB_INGEST_PRUNE_EVERY_S="0.2", CAMPERHUB_INGEST_BATCH_MAX_WAIT_S="0.1", CAMPERHUB_INGEST_CLIENT_ID="retention-ingest",
    )
    log_path = tmp_path / "ingest.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "camperhub.cli", "ingest"], env=env, cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        def log_says(text: str) -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"camperhub ingest exited with {proc.returncode}:\n{log_path.read_text()}")
            return text in log_path.read_text(errors="replace")

        _wait(lambda: log_says("subscribed to"), 30, "camperhub ingest subscribing")
        with SqliteStore(path) as reader:
            _publish_position(mosquitto, 5, NOW_MS - 1000)
            _wait(lambda: _position_seqs(reader) == [3, 4, 5], 20, "the old positions pruned, the position stored")
        proc.terminate()
        assert proc.wait(30) == 0, log_path.read_text()
    finally:
        terminate(proc)  # type: ignore[arg-type]
