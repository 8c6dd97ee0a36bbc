"""The edge agent end to end on real parts: pymodbus simulator -> agent -> real Mosquitto -> subscriber."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from camperhub import contract
from camperhub.edge.agent import EXIT_CONFIG, EdgeAgent, run_agent
from camperhub.edge.config import EdgeConfig
from camperhub.edge.publisher import MqttPublisher
from camperhub.edge.registermap import load_register_map
from camperhub.edge.sim.modbus_server import ModbusSimulator, SimulatedDevice
from camperhub.edge.transport import parse_transport
from camperhub.yamlconf import validate_yaml
from tests.edge.helpers import free_port, frozen_model
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

SCHEMA = json.loads((Path(contract.__file__).parent / "schema" / "telemetry-v1.schema.json").read_text())


def _victron_sim() -> ModbusSimulator:
    devices = [
        SimulatedDevice(load_register_map("victron-gx-solarcharger"), 226),
        SimulatedDevice(load_register_map("victron-gx-battery"), 225),
    ]
    return ModbusSimulator(parse_transport(f"tcp://127.0.0.1:{free_port()}"), devices, frozen_model())


def _config(camper: str, url: str, modbus_port: int, tmp: Path, **extra: Any) -> EdgeConfig:
    text = f"""
camper: {camper}
mqtt:
  url: {url}
  keepalive_s: {extra.get("keepalive_s", 30)}
devices:
  - map: victron-gx-solarcharger
    transport: tcp://127.0.0.1:{modbus_port}
    interval_s: {extra.get("interval_s", 0.3)}
    exclude_fields: [battery_voltage_v, battery_temp_c]
  - map: victron-gx-battery
    transport: tcp://127.0.0.1:{extra.get("battery_port", modbus_port)}
    interval_s: {extra.get("interval_s", 0.3)}
    timeout_s: 0.3
    retries: 0
queue:
  path: {tmp / "queue.sqlite"}
  commit_interval_s: {extra.get("commit_interval_s", 1.0)}
  delete_on: {extra.get("delete_on", "broker")}   # no ingest here to send receipts
clock:
  trust_system: {extra.get("trust_system", "always")}
modes:
  normal: {extra.get("normal", "{batch_interval_s: 0, compress: false, status_interval_s: 1}")}
  live: {extra.get("live", "{interval_s: 0.2, status_interval_s: 1}")}
"""
    return validate_yaml(EdgeConfig, text, "test-edge.yaml")


class AgentThread:
    """Runs run_agent() in its own thread and event loop; stop() ends it like SIGTERM would."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.agent: EdgeAgent | None = None
        self.publisher: MqttPublisher | None = None
        self.exit_code: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-under-test")

    def _run(self) -> None:
        async def main() -> int:
            loop = asyncio.get_running_loop()

            def started(agent: EdgeAgent, publisher: MqttPublisher) -> None:
                self.agent, self.publisher, self._loop = agent, publisher, loop
                self._ready.set()

            return await run_agent(self.config, install_signals=False, on_start=started)

        try:
            self.exit_code = asyncio.run(main())
        finally:
            self._ready.set()

    def start(self) -> "AgentThread":
        self._thread.start()
        assert self._ready.wait(10), "agent did not start"
        return self

    def wait(self, timeout_s: float) -> int | None:
        self._thread.join(timeout_s)
        return self.exit_code

    def stop(self) -> None:
        if self._thread.is_alive() and self.agent is not None:
            self._loop.call_soon_threadsafe(self.agent.stop)
        self._thread.join(15)
        assert not self._thread.is_alive(), "agent did not stop"


def _energy(messages: list[Any], camper: str) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.topic == contract.topic(camper, "energy"):
            out.append(json.loads(m.payload))
    return out


def test_agent_publishes_valid_envelopes_with_increasing_seq(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    with _victron_sim() as sim, MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/+/+")
        agent = AgentThread(_config("varese-1", mosquitto.url(camper), sim.listen.port, tmp_path)).start()
        try:
            sub.pump_until(lambda: len(_energy(sub.messages, "varese-1")) >= 5, 20, "five energy envelopes")
        finally:
            agent.stop()
        sub.pump_until(lambda: any(json.loads(m.payload)["samples"][0]["state"] == "offline" for m in sub.messages if m.topic.endswith("/status")), 10, "offline status")
    assert agent.exit_code == 0
    envelopes = _energy(sub.messages, "varese-1")
    seqs = []
    for env in envelopes:
        jsonschema.validate(env, SCHEMA)
        assert env["camper"] == "varese-1" and env["stream"] == "energy"
        seqs += [s["seq"] for s in env["samples"]]
    assert seqs == sorted(set(seqs)), "seq strictly increasing"
    fields = envelopes[-1]["samples"][0]
    # fields from both devices merged into one sample; none invented
    assert {"pv_power_w", "pv_voltage_v", "battery_soc_pct", "battery_current_a", "charge_state"} <= set(fields)
    assert "shore_power" not in fields
    statuses = [json.loads(m.payload) for m in sub.messages if m.topic == "camperhub/v1/varese-1/status"]
    for st in statuses:
        jsonschema.validate(st, SCHEMA)
    assert statuses[0]["samples"][0]["state"] == "online" and statuses[0]["samples"][0]["agent_version"]
    assert statuses[-1]["samples"][0]["state"] == "offline"


def test_seq_survives_a_restart(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    with _victron_sim() as sim, MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/energy")
        config = _config("varese-1", mosquitto.url(camper), sim.listen.port, tmp_path)
        for run_no in (1, 2):
            agent = AgentThread(config).start()
            try:
                sub.pump_until(lambda n=run_no: len(sub.messages) >= 3 * n, 20, f"energy of run {run_no}")
            finally:
                agent.stop()
    seqs = [s["seq"] for env in _energy(sub.messages, "varese-1") for s in env["samples"]]
    assert seqs == sorted(set(seqs))


def test_one_dead_device_does_not_stop_the_other(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    with _victron_sim() as sim, MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/+")
        config = _config("varese-1", mosquitto.url(camper), sim.listen.port, tmp_path, battery_port=free_port())
        agent = AgentThread(config).start()
        try:
            statuses = lambda: [json.loads(m.payload)["samples"][0] for m in sub.messages if m.topic.endswith("/status")]  # noqa: E731
            sub.pump_until(
                lambda: len(_energy(sub.messages, "varese-1")) >= 4 and any(s.get("last_error") for s in statuses()),
                20, "energy from the live device and a status naming the dead one",
            )
            stats = agent.agent.stats()
        finally:
            agent.stop()
    sample = _energy(sub.messages, "varese-1")[-1]["samples"][0]
    assert "pv_power_w" in sample and "battery_soc_pct" not in sample
    assert stats["victron-gx-battery"]["stale"] is True and stats["victron-gx-battery"]["timeouts"] >= 1
    assert stats["victron-gx-solarcharger"]["stale"] is False
    assert any("victron-gx-battery" in (s.get("last_error") or "") for s in statuses()), "status names the failing device"


def test_wrong_password_stops_the_agent_with_what_to_do(mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    mosquitto.add_camper("varese-1")
    url = f"mqtt://varese-1:wrong-password@127.0.0.1:{mosquitto.port}"
    with _victron_sim() as sim:
        agent = AgentThread(_config("varese-1", url, sim.listen.port, tmp_path))
        with caplog.at_level(logging.ERROR):
            agent.start()
            assert agent.wait(20) == EXIT_CONFIG
    text = caplog.text
    # Mosquitto 2.0 answers a bad password with 'not authorized' under MQTT 5
    assert re.search(r"refused the connection: (bad user name or password|not authorized)\. Check mqtt\.url", text)
    assert "camperhub broker add-camper varese-1" in text
    assert "wrong-password" not in text, "the password is never logged"


def test_publishing_under_another_campers_prefix_is_refused_and_counted(mosquitto: MosquittoBroker, tmp_path: Path):
    creds = mosquitto.add_camper("varese-1")
    mosquitto.add_camper("varese-2")
    ingest = mosquitto.add_service("ingest", "ingest")
    with _victron_sim() as sim, MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/+/+")
        # varese-1's credentials, but the config claims to be varese-2
        agent = AgentThread(_config("varese-2", mosquitto.url(creds), sim.listen.port, tmp_path)).start()
        try:
            deadline = time.monotonic() + 20
            while agent.publisher.counters["refused"] < 3 and time.monotonic() < deadline:
                sub.client.loop(0.1)
            refused = agent.publisher.counters["refused"]
        finally:
            agent.stop()
    assert refused >= 3, "MQTT 5 PUBACK 'not authorized' is seen and counted"
    assert not [m for m in sub.messages if "/varese-2/" in m.topic], "nothing leaked under the other camper's prefix"


def test_last_will_says_offline_when_the_agent_dies(mosquitto: MosquittoBroker, tmp_path: Path):
    camper = mosquitto.add_camper("varese-1")
    ingest = mosquitto.add_service("ingest", "ingest")
    with _victron_sim() as sim, MqttTestClient(mosquitto, ingest) as sub:
        sub.connect()
        sub.subscribe("camperhub/v1/varese-1/status")
        cfg = tmp_path / "edge.yaml"
        cfg.write_text(
            f"camper: varese-1\nmqtt:\n  url: {mosquitto.url(camper)}\n  keepalive_s: 5\n"
            f"devices:\n  - map: victron-gx-battery\n    transport: tcp://127.0.0.1:{sim.listen.port}\n    interval_s: 0.5\n"
            f"queue:\n  path: {tmp_path / 'q.sqlite'}\n  delete_on: broker\n"
        )
        proc = subprocess.Popen([sys.executable, "-m", "camperhub.cli", "edge", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            states = lambda: [json.loads(m.payload)["samples"][0]["state"] for m in sub.messages]  # noqa: E731
            sub.pump_until(lambda: "online" in states(), 20, "online status")
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            sub.pump_until(lambda: states()[-1] == "offline", 20, "offline status from the Last Will")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    retained = MqttTestClient(mosquitto, ingest)
    with retained:
        retained.connect()
        retained.subscribe("camperhub/v1/varese-1/status")
        msg = retained.next_message(10)
    assert msg.retain and json.loads(msg.payload)["samples"][0]["state"] == "offline"
