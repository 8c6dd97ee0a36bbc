"""The agent's modes and clock end to end: simulator -> agent -> real Mosquitto, commands downlink."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from camperhub import contract
from camperhub.edge.clock import boot_ms
from tests.edge.test_agent import AgentThread, _config, _victron_sim
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

CAMPER = "varese-1"


def _statuses(sub: MqttTestClient) -> list[dict[str, Any]]:
    return [json.loads(m.payload)["samples"][0] for m in sub.messages if m.topic == contract.topic(CAMPER, "status")]


def _energy_envelopes(sub: MqttTestClient) -> list[Any]:
    return [contract.decode_envelope(m.payload, m.topic) for m in sub.messages if m.topic == contract.topic(CAMPER, "energy")]


def _setup(mosquitto: MosquittoBroker) -> tuple[Any, Any, Any]:
    camper = mosquitto.add_camper(CAMPER)
    reader = mosquitto.add_service("ingest", "ingest")
    # the API's job (issue 7); here a user allowed to send this camper commands
    ops = mosquitto.add_user("ops", [f"topic write camperhub/v1/{CAMPER}/cmd/#"])
    return camper, reader, ops


def test_cmd_mode_switches_to_live_and_live_falls_back_by_itself(mosquitto: MosquittoBroker, tmp_path: Path):
    camper, reader, ops = _setup(mosquitto)
    with _victron_sim() as sim, MqttTestClient(mosquitto, reader) as sub, MqttTestClient(mosquitto, ops) as cmd:
        sub.connect()
        sub.subscribe(f"camperhub/v1/{CAMPER}/+")
        cmd.connect()
        config = _config(CAMPER, mosquitto.url(camper), sim.listen.port, tmp_path, interval_s=1.0, live="{interval_s: 0.2, status_interval_s: 1}")
        agent = AgentThread(config).start()
        try:
            sub.pump_until(lambda: any(s.get("mode") == "normal" for s in _statuses(sub)), 20, "a normal-mode status")
            # live for a minute issued 56 s ago (it waited in the broker): 4 s of live mode are left
            issued = int(time.time() * 1000) - 56_000
            cmd.publish(contract.command_topic(CAMPER, "mode"), json.dumps({"mode": "live", "minutes": 1, "issued_ts": issued}).encode())
            sub.pump_until(lambda: any(s.get("mode") == "live" for s in _statuses(sub)), 10, "a live-mode status")
            live_status = next(s for s in _statuses(sub) if s.get("mode") == "live")
            taken_at_switch = agent.agent.counters["samples"]
            sub.pump_until(lambda: _statuses(sub)[-1].get("mode") == "normal", 15, "the fall back to normal")
            live_samples = agent.agent.counters["samples"] - taken_at_switch
            cmd.publish(contract.command_topic(CAMPER, "mode"), b'{"mode": "live"}')  # no minutes: refused
            cmd.publish(contract.command_topic(CAMPER, "reboot"), b"{}")  # unknown command
            sub.pump_until(lambda: agent.publisher.counters["bad_commands"] >= 2, 10, "two bad commands counted")
            assert agent.agent.modes.mode == "normal", "bad commands change nothing"
        finally:
            agent.stop()
    assert abs(live_status["live_until_ts"] - (issued + 60_000)) < 1500, "status says when live mode ends"
    # about 4 s at 5 Hz while live, against 1 Hz in normal mode
    assert live_samples >= 12, f"{live_samples} readings in the live period: not 5 Hz"


def test_normal_mode_sends_energy_in_gzip_batches(mosquitto: MosquittoBroker, tmp_path: Path):
    camper, reader, _ = _setup(mosquitto)
    with _victron_sim() as sim, MqttTestClient(mosquitto, reader) as sub:
        sub.connect()
        sub.subscribe(f"camperhub/v1/{CAMPER}/+")
        config = _config(
            CAMPER, mosquitto.url(camper), sim.listen.port, tmp_path, interval_s=0.2, commit_interval_s=0.2,
            normal="{batch_interval_s: 2, compress: true, status_interval_s: 1}",
        )
        agent = AgentThread(config).start()
        try:
            sub.pump_until(lambda: sum(len(e.samples) for e in _energy_envelopes(sub)) >= 25, 20, "25 readings")
        finally:
            agent.stop()
    raw = [m.payload for m in sub.messages if m.topic == contract.topic(CAMPER, "energy")]
    assert all(p[:2] == contract.GZIP_MAGIC for p in raw), "every energy payload is gzip'd"
    envelopes = _energy_envelopes(sub)
    seqs = [s.seq for e in envelopes for s in e.samples]
    assert seqs == list(range(1, len(seqs) + 1)), "in order, none missing"
    # 5 readings a second leave in one envelope every 2 s: far fewer messages than readings
    assert len(envelopes) * 4 <= len(seqs), f"{len(envelopes)} envelopes for {len(seqs)} readings: not batched"


def test_readings_taken_before_the_clock_is_trusted_carry_the_right_utc_time(mosquitto: MosquittoBroker, tmp_path: Path):
    camper, reader, _ = _setup(mosquitto)
    with _victron_sim() as sim, MqttTestClient(mosquitto, reader) as sub:
        sub.connect()
        sub.subscribe(f"camperhub/v1/{CAMPER}/+")
        config = _config(CAMPER, mosquitto.url(camper), sim.listen.port, tmp_path, interval_s=0.2, commit_interval_s=0.2, trust_system="never")
        agent = AgentThread(config).start()
        try:
            sub.pump_until(lambda: agent.agent.counters["samples"] >= 10 and any(s.get("clock") == "unsynced" for s in _statuses(sub)), 20, "readings with an unsynced clock")
            assert not _energy_envelopes(sub), "nothing sent while the time is unknown"
            assert agent.publisher.queue.depth >= 10
            taken_unsynced = agent.agent.counters["samples"]
            # the GPS says the true time is one hour behind the wall clock of this machine
            true_offset_ms = -3_600_000
            agent.agent.clock.gps_time(int(time.time() * 1000) + true_offset_ms, boot_ms())
            sub.pump_until(lambda: sum(len(e.samples) for e in _energy_envelopes(sub)) >= taken_unsynced + 5, 20, "the held readings, dated")
            assert any(s.get("clock") == "gps" for s in _statuses(sub)[-3:]) or agent.agent.clock.source == "gps"
        finally:
            agent.stop()
    samples = [s for e in _energy_envelopes(sub) for s in e.samples]
    assert [s.seq for s in samples] == list(range(1, len(samples) + 1))
    stamps = [s.ts for s in samples]
    assert stamps == sorted(stamps)
    now_ms = int(time.time() * 1000)
    # every reading lies within the run, shifted by the GPS's hour: before and after the trust alike
    assert all(now_ms - 3_600_000 - 60_000 < ts < now_ms - 3_600_000 for ts in stamps)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 1000, "no jump where the clock became trusted"
