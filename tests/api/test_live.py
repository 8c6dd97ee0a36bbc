"""The live pipeline against a real Mosquitto: camper publishes status -> API's MQTT listener
(its own read-only ``api`` user) -> Broadcaster -> SSE client."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.events import Broadcaster
from camperhub.api.live import LiveListener
from camperhub.contract import encode_envelope, topic
from camperhub.settings import MqttClientSettings
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import now_ms, read_events, settings
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

pytestmark = pytest.mark.timeout(60)


def _status(seq: int, ts: int, **fields) -> bytes:
    return encode_envelope("van-1", "status", [{"seq": seq, "ts": ts, **fields}])


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _app(broker: MosquittoBroker, tmp_path: Path):
    api_user = broker.add_service("camperhub-api", "api")
    return create_app(settings(live=True), SqliteStore(tmp_path / "live.sqlite"), mqtt=MqttClientSettings(mqtt_url=broker.url(api_user)))


def test_a_published_status_reaches_the_sse_client(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    camper = mosquitto.add_camper("van-1")
    t = now_ms()
    with MqttTestClient(mosquitto, camper) as van:
        van.connect()
        # retained, as the agent publishes it: the API knows the camper before the store does
        van.client.publish(topic("van-1", "status"), _status(1, t - 1000, state="online", mode="normal"), qos=1, retain=True)
        van.pump_until(lambda: bool(van.pubacks), 5, "PUBACK")
        with TestClient(_app(mosquitto, tmp_path)) as client:
            live = client.app.state.live
            assert live.subscribed.wait(10), "the API's listener did not subscribe"
            b: Broadcaster = client.app.state.broadcaster
            _wait(lambda: b.latest("van-1", "status") is not None)
            assert client.get("/readyz").json()["live"] == "connected"
            with client.stream("GET", "/api/v1/campers/van-1/status/stream") as r:
                lines = r.iter_lines()
                [first] = read_events(lines, 1)
                assert first.data["seq"] == 1 and first.data["fields"]["state"] == "online"
                assert van.publish(topic("van-1", "status"), _status(2, t, state="online", mode="live", in_service=True)).value == 0
                [upd] = read_events(lines, 1)
                assert upd.data["seq"] == 2 and upd.data["fields"] == {"state": "online", "mode": "live", "in_service": True}
            # Last-Event-ID: a reconnect gets what it missed
            van.publish(topic("van-1", "status"), _status(3, t + 1000, state="offline"))
            _wait(lambda: b.latest("van-1", "status").data["seq"] == 3)
            with client.stream("GET", "/api/v1/campers/van-1/status/stream", headers={"Last-Event-ID": upd.id}) as r:
                [missed] = read_events(r.iter_lines(), 1)
                assert missed.data["seq"] == 3 and missed.data["fields"]["state"] == "offline"
            # the campers list sees the live status too (the store has none: no ingest here)
            assert client.get("/api/v1/campers").json() == {"campers": []}  # store-listed campers only


def test_messages_that_break_the_contract_are_counted_and_ignored(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    camper = mosquitto.add_camper("van-1")
    with TestClient(_app(mosquitto, tmp_path)) as client:
        live = client.app.state.live
        assert live.subscribed.wait(10)
        with MqttTestClient(mosquitto, camper) as van:
            van.connect()
            van.publish(topic("van-1", "status"), b'{"v": 1, "camper": "van-1", "stream": "status", "samples": []}')
            van.publish(topic("van-1", "position"), encode_envelope("van-1", "position", [{"seq": 1, "ts": now_ms(), "lat": 45.8, "lon": 8.8, "fix": 3}]))
            _wait(lambda: live.rejected == 1 and live.received == 1)
        b: Broadcaster = client.app.state.broadcaster
        _wait(lambda: b.latest("van-1", "position") is not None)
        assert b.latest("van-1", "status") is None
        assert "camperhub_api_live_rejected_total 1.0" in client.get("/metrics").text


def test_the_listener_speaks_3_1_1_too_and_stops_cleanly(mosquitto: MosquittoBroker) -> None:
    api_user = mosquitto.add_service("camperhub-api", "api")
    camper = mosquitto.add_camper("van-1")

    async def main() -> None:
        b = Broadcaster()
        b.bind()
        sub = b.subscribe("van-1")
        listener = LiveListener(MqttClientSettings(mqtt_url=mosquitto.url(api_user)), b, protocol="3.1.1")
        listener.start()
        try:
            assert await asyncio.to_thread(listener.subscribed.wait, 10)
            with MqttTestClient(mosquitto, camper, protocol=mqtt.MQTTv311) as van:
                van.connect()
                van.publish(topic("van-1", "status"), _status(5, now_ms(), state="online"))
            msg = await asyncio.wait_for(sub.queue.get(), 10)
            assert msg is not None and msg.data["seq"] == 5
        finally:
            await asyncio.to_thread(listener.stop)
            listener.stop()  # twice: harmless

    asyncio.run(main())


def test_refused_credentials_are_reported(mosquitto: MosquittoBroker) -> None:
    async def main() -> None:
        b = Broadcaster()
        b.bind()
        url = f"mqtt://camperhub-api:wrong@{mosquitto.host}:{mosquitto.port}"
        listener = LiveListener(MqttClientSettings(mqtt_url=url), b)
        listener.start()
        try:
            await asyncio.to_thread(_wait, lambda: listener.fatal_error is not None)
            assert "refused the API's credentials" in listener.fatal_error and "wrong" not in listener.fatal_error
        finally:
            await asyncio.to_thread(listener.stop)

    asyncio.run(main())


def test_auto_falls_back_to_3_1_1_on_the_demo_broker() -> None:
    """amqtt (the demo's embedded broker) speaks 3.1.1 only: the listener notices and reconnects."""
    from types import SimpleNamespace

    from amqtt.broker import Broker

    from camperhub.netutil import free_port

    port = free_port()

    async def main() -> None:
        broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
        })
        await broker.start()
        b = Broadcaster()
        b.bind()
        sub = b.subscribe("van-1")
        listener = LiveListener(MqttClientSettings(mqtt_url=f"mqtt://camperhub-api:demo@127.0.0.1:{port}"), b)
        listener.start()
        try:
            assert await asyncio.to_thread(listener.subscribed.wait, 15)
            assert listener.protocol == mqtt.MQTTv311

            def publish() -> None:
                with MqttTestClient(SimpleNamespace(host="127.0.0.1", port=port), None, protocol=mqtt.MQTTv311) as van:
                    van.client.username_pw_set("van-1", "demo")
                    van.connect()
                    van.publish(topic("van-1", "status"), _status(1, now_ms(), state="online"))

            await asyncio.to_thread(publish)
            msg = await asyncio.wait_for(sub.queue.get(), 10)
            assert msg is not None and msg.data["fields"]["state"] == "online"
        finally:
            await asyncio.to_thread(listener.stop)
            await broker.shutdown()

    asyncio.run(main())
