"""Mobile data of the agent, measured from the bytes on the wire (MQTT, TLS, TCP/IP headers included).

Run: ``.venv/bin/pytest -m bench -s tests/bench/test_bench_mobile.py`` (about 25 minutes). Figures are
printed, not asserted; the README carries them.

Set-up: the simulator (a Victron charger and battery monitor, values from the pvlib model of a
camper at Varese) -> the real agent -> a loopback TCP proxy with an MSS of 1400 (as behind 4G)
-> Mosquitto's TLS listener (a throw-away EC P-256 PKI) -> the ingest (SQLite store), whose
receipts (``cmd/stored``) come back down the same link and are counted with it. The proxy reads the kernel's TCP_INFO of
the agent's connection: payload bytes each way and segments, each segment costing 52 bytes of
IPv4 + TCP headers (tests/fixtures/tcpproxy.py). The radio's own framing is not counted.

Normal mode runs a whole simulated day time-compressed: every interval of the agent (polls,
batches, status, MQTT keepalive) and the simulator's clock run ``SPEED`` times faster, so the day
has its sunrise and sunset, the same number of readings, envelopes, status messages and
keepalive pings as a real one, in 1/SPEED of the time. Live mode is steady by design (1 Hz,
each reading at once): two real minutes, scaled to an hour and a day.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from camperhub import contract
from camperhub.edge.config import EdgeConfig
from camperhub.edge.registermap import load_register_map
from camperhub.edge.sim.model import CamperModel, CamperSpec, SimClock
from camperhub.edge.sim.modbus_server import ModbusSimulator, SimulatedDevice
from camperhub.edge.transport import parse_transport
from camperhub.netutil import free_port
from camperhub.yamlconf import validate_yaml
from camperhub.broker.ingest import Ingest, IngestSettings
from camperhub.store.sqlite import SqliteStore
from tests.edge.test_agent import AgentThread
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient
from tests.fixtures.tcpproxy import TcpProxy

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

CAMPER = "varese-1"
#: 60: a simulated day in 24 minutes; the MQTT keepalive (60 s, whole seconds in paho) caps it at 60.
SPEED = int(os.environ.get("CAMPERHUB_BENCH_DAY_SPEED", "60"))
DAY_S = 86_400
MONTH_DAYS = 30
MB = 10**6


def _simulator(start: datetime, speed: float) -> ModbusSimulator:
    model = CamperModel(CamperSpec(), SimClock(start, speed=speed))
    devices = [SimulatedDevice(load_register_map("victron-gx-solarcharger"), 226), SimulatedDevice(load_register_map("victron-gx-battery"), 225)]
    return ModbusSimulator(parse_transport(f"tcp://127.0.0.1:{free_port()}"), devices, model)


def _config(url: str, ca: Path, modbus_port: int, queue: Path, k: float, modes: str) -> EdgeConfig:
    """The production defaults (5 s polls, 300 s batches and status, 60 s keepalive), divided by ``k``."""
    return validate_yaml(EdgeConfig, f"""
camper: {CAMPER}
mqtt: {{url: "{url}", ca_file: "{ca}", keepalive_s: {int(60 / k)}}}
devices:
  - {{map: victron-gx-solarcharger, transport: "tcp://127.0.0.1:{modbus_port}", interval_s: {5 / k}, exclude_fields: [battery_voltage_v, battery_temp_c]}}
  - {{map: victron-gx-battery, transport: "tcp://127.0.0.1:{modbus_port}", interval_s: {5 / k}}}
queue: {{path: "{queue}"}}
clock: {{trust_system: always}}
modes: {modes}
""", "bench-edge.yaml")


def _run(tmp_path: Path, *, start: datetime, k: float, seconds: float, modes: str, live_minutes: int | None = None) -> dict[str, float]:
    with MosquittoBroker(tmp_path / "mosquitto", tls=True) as broker, _simulator(start, k) as sim:
        creds = broker.add_camper(CAMPER)
        reader = broker.add_service("reader", "api")
        ingest_user = broker.add_service("ingest", "ingest")
        ops = broker.add_user("ops", [f"topic write camperhub/v1/{CAMPER}/cmd/#"])
        assert broker.pki is not None
        store = SqliteStore(tmp_path / "store.sqlite")
        ingest = Ingest(IngestSettings(mqtt_url=broker.url(ingest_user)), store)
        ingest.start()
        with TcpProxy(broker.tls_port or 0, mss=1400) as proxy, MqttTestClient(broker, reader) as sub, MqttTestClient(broker, ops) as cmd:
            assert ingest.subscribed.wait(10), "the ingest subscribed"
            sub.connect()
            sub.subscribe(f"camperhub/v1/{CAMPER}/+")
            cmd.connect()
            config = _config(proxy.via(broker.url(creds, tls=True)), broker.pki.ca_cert, sim.listen.port, tmp_path / "queue.sqlite", k, modes)
            agent = AgentThread(config).start()
            try:
                sub.pump_until(lambda: agent.publisher.connected.is_set(), 20, "the agent connected over TLS")
                if live_minutes:
                    # the agent subscribes to cmd/ just after its CONNACK: repeat the command until it is live
                    command = json.dumps({"mode": "live", "minutes": live_minutes}).encode()
                    for _ in range(20):
                        cmd.publish(contract.command_topic(CAMPER, "mode"), command)
                        retry_at = time.monotonic() + 0.5
                        sub.pump_until(lambda: agent.agent.modes.mode == "live" or time.monotonic() >= retry_at, 2, "live mode or a retry")
                        if agent.agent.modes.mode == "live":
                            break
                    assert agent.agent.modes.mode == "live", "the agent did not switch to live mode"
                w0 = proxy.wire()
                t_end = time.monotonic() + seconds
                sub.pump_until(lambda: time.monotonic() >= t_end, seconds + 30, "the measured period")
                w1 = proxy.wire()
                # one 4G drop: what a reconnect costs (TLS handshake, CONNECT, SUBSCRIBE, status)
                proxy.cut()
                sub.pump_until(lambda: not agent.publisher.connected.is_set(), 10, "the link down")
                proxy.restore()
                sub.pump_until(lambda: agent.publisher.connected.is_set(), 30, "the link back")
                time.sleep(0.5)
                w2 = proxy.wire()
            finally:
                agent.stop()
                ingest.stop()
                store.close()
        readings = agent.agent.counters["samples"]
        confirmed = agent.publisher.counters["confirmed"]
        energy = [m for m in sub.messages if m.topic == contract.topic(CAMPER, "energy")]
        status = [m for m in sub.messages if m.topic == contract.topic(CAMPER, "status")]
    up, down = (b - a for a, b in zip(w0.on_the_wire(), w1.on_the_wire()))
    rup, rdown = (b - a for a, b in zip(w1.on_the_wire(), w2.on_the_wire()))
    return {
        "up": up, "down": down, "payload_up": w1.bytes_received - w0.bytes_received, "segments": (w1.segs_in - w0.segs_in) + (w1.segs_out - w0.segs_out),
        "readings": readings, "energy_msgs": len(energy), "energy_payload": sum(len(m.payload) for m in energy), "status_msgs": len(status),
        "reconnect": rup + rdown, "retrans": w1.total_retrans - w0.total_retrans, "confirmed": confirmed,
    }


def test_mobile_bytes_of_a_day_in_normal_mode(tmp_path: Path):
    start = datetime(2026, 4, 15, tzinfo=ZoneInfo("Europe/Rome"))  # a spring day: sunrise, sunset, clouds
    modes = "{normal: {batch_interval_s: %s, compress: true, status_interval_s: %s}}" % (300 / SPEED, 300 / SPEED)
    f = _run(tmp_path, start=start, k=SPEED, seconds=DAY_S / SPEED, modes=modes)
    day = f["up"] + f["down"]
    print(
        f"\nnormal mode, one simulated day (x{SPEED}): {f['readings']:.0f} readings in {f['energy_msgs']:.0f} gzip'd envelopes "
        f"({f['energy_payload'] / max(1, f['readings']):.0f} B of payload a reading), {f['status_msgs']:.0f} status messages; "
        f"on the wire: up {f['up'] / 1e3:.0f} kB, down {f['down'] / 1e3:.0f} kB ({f['segments']:.0f} segments, "
        f"{f['retrans']:.0f} retransmitted) = {day / 1e3:.0f} kB a day = {day * MONTH_DAYS / MB:.1f} MB a month "
        f"(budget 150 MB); one reconnect costs {f['reconnect'] / 1e3:.1f} kB; {f['confirmed']:.0f} readings receipted"
    )


def test_mobile_bytes_in_live_mode(tmp_path: Path):
    start = datetime(2026, 4, 15, 12, tzinfo=ZoneInfo("Europe/Rome"))
    seconds = float(os.environ.get("CAMPERHUB_BENCH_LIVE_S", "120"))
    modes = "{live: {interval_s: 1, compress: false, status_interval_s: 30}}"
    f = _run(tmp_path, start=start, k=1, seconds=seconds, modes=modes, live_minutes=60)
    total = f["up"] + f["down"]
    print(
        f"\nlive mode, {seconds:.0f} s real: {f['readings']:.0f} readings, {f['energy_msgs']:.0f} envelopes; on the wire "
        f"{total / 1e3:.0f} kB = {total * 3600 / seconds / MB:.2f} MB an hour = {total * DAY_S / seconds / MB:.1f} MB a day"
    )
