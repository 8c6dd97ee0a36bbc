"""The alerts service on real parts: both stores (``store`` fixture: SQLite and a real
InfluxDB), a real Mosquitto (the alerts role publishes, the api role reads), and a
webhook receiver on 127.0.0.1 run by the test (http.server in a thread)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from camperhub.contract import Stream
from camperhub.fleet.alerts_notify import MqttAlertPublisher, WebhookNotifier, alert_topic
from camperhub.fleet.alerts_rules import AlertKind, AlertSettings
from camperhub.fleet.alerts_service import AlertService
from camperhub.fleet.alerts_store import AlertRepository
from camperhub.netutil import free_port
from camperhub.store.base import Store, StoredSample
from camperhub.store.influx import InfluxStore
from camperhub.store.sqlite import SqliteStore
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
SECRET = "s3cr3t-hook-token"


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class Seq:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def energy(camper: str, at: datetime, seq: Seq, **fields: Any) -> StoredSample:
    return StoredSample(camper, Stream.ENERGY, ms(at), {"seq": seq(), **fields})


def status(camper: str, at: datetime, seq: Seq, **fields: Any) -> StoredSample:
    return StoredSample(camper, Stream.STATUS, ms(at), {"seq": seq(), "state": "online", **fields})


def minutes_of(camper: str, start: datetime, n_min: int, soc: float, seq: Seq, ss: Seq) -> list[StoredSample]:
    """``n_min`` minutes of energy every 30 s and status every 5 min (gps fixed, clock synced)."""
    out = [energy(camper, start + i * 30 * timedelta(seconds=1), seq, battery_soc_pct=soc, battery_temp_c=20.0, pv_power_w=100.0)
           for i in range(2 * n_min)]
    out += [status(camper, start + i * 5 * M, ss, gps_fix=3, clock="gps", queue_depth=0) for i in range(n_min // 5 + 1)]
    return out


def test_rounds_over_the_real_store_open_only_what_is_wrong(store: Store, tmp_path: Path) -> None:
    seqs = {c: (Seq(), Seq()) for c in ("van-1", "van-2")}
    store.write(minutes_of("van-1", T0 - 10 * M, 16, 12.0, *seqs["van-1"]) + minutes_of("van-2", T0 - 10 * M, 16, 80.0, *seqs["van-2"]))
    service = AlertService(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    first = service.run_round(store, T0)
    assert first.campers == 2 and first.skipped is None
    assert first.transitions == []  # below 20 % is seen, the 2-min debounce runs on the evaluation clock
    second = service.run_round(store, T0 + 3 * M)
    assert [(t.action, t.alert.camper, t.alert.kind) for t in second.transitions] == [("open", "van-1", AlertKind.LOW_SOC)]
    assert second.transitions[0].alert.value == 12.0 and second.transitions[0].alert.severity == "warning"
    (a,) = service.repository.open_alerts()
    assert a.camper == "van-1" and "12" in a.message


def test_durations_come_from_the_status_series(store: Store, tmp_path: Path) -> None:
    """GPS without fix for 20 minutes and an unsynced clock: open on the FIRST round (the data says since when)."""
    seq, ss = Seq(), Seq()
    samples = [energy("van-1", T0 - 20 * M + i * M, seq, battery_soc_pct=70.0) for i in range(21)]
    samples += [status("van-1", T0 - 20 * M + i * 5 * M, ss, gps_fix=0, clock="unsynced", queue_depth=10 + 100 * i) for i in range(5)]
    store.write(samples)
    service = AlertService(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    opened = {t.alert.kind for t in service.run_round(store, T0).transitions if t.action == "open"}
    assert opened == {AlertKind.GPS_NO_FIX, AlertKind.CLOCK_UNSYNCED, AlertKind.QUEUE_GROWING}
    gps = next(a for a in service.repository.open_alerts() if a.kind == AlertKind.GPS_NO_FIX)
    assert gps.value == 20 * 60 and gps.severity == "info"

    # the Last Will: offline since T0 + 1 min; 20 min later the agent_offline alert opens, the others hold
    store.write([StoredSample("van-1", Stream.STATUS, ms(T0 + M), {"seq": ss(), "state": "offline"})])
    later = service.run_round(store, T0 + 21 * M).transitions
    assert [(t.action, t.alert.kind) for t in later if t.action != "update"] == [("open", AlertKind.AGENT_OFFLINE)]
    assert {a.kind for a in service.repository.open_alerts()} == {
        AlertKind.GPS_NO_FIX, AlertKind.CLOCK_UNSYNCED, AlertKind.QUEUE_GROWING, AlertKind.AGENT_OFFLINE}


def test_unavailable_store_skips_the_round_and_the_next_one_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = InfluxStore(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    service = AlertService(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"))
    with caplog.at_level(logging.WARNING):
        result = service.run_round(dead, T0)
    dead.close()
    assert result.skipped and "unreachable" in result.skipped
    assert "round skipped" in caplog.text
    live = SqliteStore(tmp_path / "store.sqlite")
    try:
        seq, ss = Seq(), Seq()
        live.write(minutes_of("van-1", T0 - 10 * M, 16, 12.0, seq, ss))
        assert service.run_round(live, T0).skipped is None
        assert service.counters["rounds"] == 2 and service.counters["rounds_skipped"] == 1
    finally:
        live.close()


# -- notifications -------------------------------------------------------------------------------


class Hook:
    """A webhook receiver on 127.0.0.1: records JSON bodies; answers ``status``."""

    def __init__(self, status: int = 204) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                n = int(self.headers.get("Content-Length", "0"))
                hook.bodies.append(json.loads(self.rfile.read(n)))
                hook.paths.append(self.path)
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/{SECRET}?key={SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-hook", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def _service(tmp_path: Path, broker: MosquittoBroker, url: str, hook: Hook) -> tuple[AlertService, MqttAlertPublisher, WebhookNotifier]:
    pub = MqttAlertPublisher(url)
    pub.start()
    assert pub.connected.wait(5), "the alerts publisher did not connect"
    web = WebhookNotifier(hook.url, timeout_s=2, retries=2, backoff_s=0.05)
    web.start()
    return AlertService(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"), [pub, web]), pub, web


def test_notifications_reach_mqtt_and_the_webhook_and_a_restart_does_not_repeat_them(
    mosquitto: MosquittoBroker, hook: Hook, tmp_path: Path
) -> None:
    alerts_user = mosquitto.add_service("alerts", "alerts")
    api_user = mosquitto.add_service("api", "api")
    store = SqliteStore(tmp_path / "store.sqlite")
    seq, ss = Seq(), Seq()
    store.write(minutes_of("van-1", T0 - 10 * M, 30, 12.0, seq, ss))
    with MqttTestClient(mosquitto, api_user) as sub:
        assert sub.connect().value == 0
        assert sub.subscribe("camperhub/v1/+/alert")[0].value < 128
        service, pub, web = _service(tmp_path, mosquitto, mosquitto.url(alerts_user), hook)
        try:
            service.run_round(store, T0)
            service.run_round(store, T0 + 3 * M)
            msg = sub.next_message()
            assert msg.topic == alert_topic("van-1") and not msg.retain and msg.qos == 1
            body = json.loads(msg.payload)
            assert body["event"] == "open" and body["alert"]["kind"] == "low_soc" and body["alert"]["state"] == "open"
            assert web.join(5)
            assert [b["event"] for b in hook.bodies] == ["open"] and hook.bodies[0]["alert"] == body["alert"]
            service.run_round(store, T0 + 4 * M)  # still low: a silent update
        finally:
            pub.stop()
            web.stop()

        # restart: a new service over the same alerts file does not announce the open alert again
        service, pub, web = _service(tmp_path, mosquitto, mosquitto.url(alerts_user), hook)
        try:
            again = service.run_round(store, T0 + 5 * M)
            assert [t.action for t in again.transitions] == ["update"] and not again.transitions[0].notify
            # the battery recovers: the alert closes after 5 minutes above 30 %
            store.write(minutes_of("van-1", T0 + 20 * M, 12, 60.0, seq, ss))
            for i in range(0, 8):
                service.run_round(store, T0 + 21 * M + i * M)
            msg = sub.next_message()  # the next message is the close: nothing was announced in between
            assert json.loads(msg.payload)["event"] == "close"
            assert web.join(5)
        finally:
            pub.stop()
            web.stop()
    store.close()
    assert [b["event"] for b in hook.bodies] == ["open", "close"]
    assert hook.bodies[0]["alert"]["id"] == hook.bodies[1]["alert"]["id"]
    assert service.repository.open_alerts() == []


def test_a_failing_webhook_is_retried_counted_and_never_logged_whole(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    failing = Hook(status=503)
    try:
        web = WebhookNotifier(failing.url, timeout_s=2, retries=2, backoff_s=0.01)
        web.start()
        store = SqliteStore(tmp_path / "store.sqlite")
        store.write(minutes_of("van-1", T0 - 10 * M, 16, 12.0, Seq(), Seq()))
        service = AlertService(AlertSettings(), AlertRepository(tmp_path / "alerts.sqlite"), [web])
        with caplog.at_level(logging.INFO):
            service.run_round(store, T0)
            result = service.run_round(store, T0 + 3 * M)  # does not wait for the webhook
            assert [t.action for t in result.transitions] == ["open"]
            assert web.join(10)
        web.stop()
        store.close()
    finally:
        failing.close()
    assert len(failing.bodies) == 3  # first try + 2 retries
    assert web.counters["failed"] == 1 and web.counters["sent"] == 0
    assert "HTTP 503" in caplog.text and "127.0.0.1" in caplog.text
    assert SECRET not in caplog.text
