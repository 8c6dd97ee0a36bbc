"""The agent with its peripherals: a real gpsd fed NMEA, GPIO on gpiozero's mock pins, a real Mosquitto."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from camperhub import contract
from camperhub.edge.config import EdgeConfig
from tests.edge.test_agent import AgentThread, _config, _victron_sim
from tests.fixtures.gpsd import GpsdServer, fix_sentences, no_fix_sentences
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

CAMPER = "varese-1"
LED, BUTTON, SHORE = 17, 27, 22


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """gpiozero's own mock pin factory as the default, for the agent to find; restored after."""
    before = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.close()
        Device.pin_factory = before


def _with(config: EdgeConfig, extra_yaml: str) -> EdgeConfig:
    """The config with top-level sections added (YAML, as a person would write them)."""
    data = config.model_dump(mode="json", exclude_none=True)
    data.update(yaml.safe_load(extra_yaml))
    return EdgeConfig.model_validate(data)


def _stream(sub: MqttTestClient, stream: str) -> list[dict[str, Any]]:
    return [s.model_dump(exclude_none=True) for m in sub.messages if m.topic == contract.topic(CAMPER, stream) for s in contract.decode_envelope(m.payload, m.topic).samples]


def _led_blinks(pin: Any, seconds: float = 1.6) -> bool:
    start = len(pin.states)
    time.sleep(seconds)
    return len(pin.states) - start >= 2


def test_gpio_button_shore_power_and_status_led(mosquitto: MosquittoBroker, mock_pins: MockFactory, tmp_path: Path):
    camper = mosquitto.add_camper(CAMPER)
    reader = mosquitto.add_service("ingest", "ingest")
    led, button, shore = mock_pins.pin(LED), mock_pins.pin(BUTTON), mock_pins.pin(SHORE)
    with _victron_sim() as sim, MqttTestClient(mosquitto, reader) as sub:
        sub.connect()
        sub.subscribe(f"camperhub/v1/{CAMPER}/+")
        config = _with(_config(CAMPER, mosquitto.url(camper), sim.listen.port, tmp_path), f"gpio: {{status_led: {LED}, workshop_button: {BUTTON}, shore_power: {SHORE}}}")
        agent = AgentThread(config).start()
        try:
            sub.pump_until(lambda: len(_stream(sub, "energy")) >= 3, 20, "energy")
            sub.pump_until(lambda: led.state, 5, "the LED on")
            assert not _led_blinks(led), "steady while data flows"
            assert _stream(sub, "energy")[-1]["shore_power"] is False, "the switch is open: no shore power"

            shore.drive_low()  # switch closed to ground: shore power connected
            button.drive_low()
            button.drive_high()
            sub.pump_until(lambda: {"shore_power_on", "button"} <= {e["kind"] for e in _stream(sub, "event")}, 10, "the two events")
            sub.pump_until(lambda: any(s.get("mode") == "live" for s in _stream(sub, "status")), 10, "live mode from the button")
            sub.pump_until(lambda: _stream(sub, "energy")[-1].get("shore_power") is True, 10, "shore_power in the readings")

            mosquitto.stop()  # the link is gone: buffering
            time.sleep(1.0)
            assert _led_blinks(led, 2.0), "blinking while buffering"
        finally:
            agent.stop()
    assert led.state is False or led.state == 0, "off when the agent is down"


def test_gps_sets_the_clock_and_positions_carry_gps_time(mosquitto: MosquittoBroker, gpsd: GpsdServer, tmp_path: Path):
    camper = mosquitto.add_camper(CAMPER)
    reader = mosquitto.add_service("ingest", "ingest")
    gps_start = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)  # not this machine's time: the GPS's must win
    with _victron_sim() as sim, MqttTestClient(mosquitto, reader) as sub:
        sub.connect()
        sub.subscribe(f"camperhub/v1/{CAMPER}/+")
        base = _config(CAMPER, mosquitto.url(camper), sim.listen.port, tmp_path, interval_s=0.3, commit_interval_s=0.2, trust_system="never")
        config = _with(base, f"gps: {{gpsd: '{gpsd.address}'}}\nposition: {{min_distance_m: 20, min_interval_s: 0, max_interval_s: 600}}")
        agent = AgentThread(config).start()
        try:
            gpsd.write(no_fix_sentences(gps_start))
            sub.pump_until(lambda: agent.agent.counters["samples"] >= 5, 20, "readings without a fix")
            assert not _stream(sub, "energy") and agent.agent.clock.source == "unsynced"


            def no_fix_in_status() -> bool:
                gpsd.write(no_fix_sentences(gps_start))  # the receiver keeps saying it has no fix
                return any(s.get("gps_fix") == 0 for s in _stream(sub, "status"))

            sub.pump_until(no_fix_in_status, 15, "status: no fix")
            fixed_at_boot_s = time.clock_gettime(time.CLOCK_BOOTTIME)
            for i in range(6):  # driving east along Viale Aguggiari, ~23 m a second (84 km/h)
                at = gps_start + timedelta(seconds=10 + i)
                gpsd.write(fix_sentences(at, 45.8166, 8.8250 + i * 0.0003, speed_kn=45.0))
                time.sleep(0.3)
            sub.pump_until(lambda: len(_stream(sub, "position")) >= 3, 20, "positions")
            sub.pump_until(lambda: _stream(sub, "status")[-1].get("gps_fix") == 3, 10, "status: a 3D fix")
            sub.pump_until(lambda: len(_stream(sub, "energy")) >= agent.agent.counters["samples"] - 10, 20, "the held readings, dated")
        finally:
            agent.stop()
    positions = _stream(sub, "position")
    assert positions[0]["ts"] == int((gps_start + timedelta(seconds=10)).timestamp() * 1000), "stamped with the GPS's time"
    assert positions[0]["fix"] == 3 and abs(positions[0]["lat"] - 45.8166) < 1e-6
    energy = _stream(sub, "energy")
    assert [s["seq"] for s in energy] == list(range(1, len(energy) + 1))
    # the first fix's time minus the time since boot it came at dates every reading, the held ones too
    first_fix_ms = int((gps_start + timedelta(seconds=10)).timestamp() * 1000)
    taken_before = [s for s in energy if s["ts"] < first_fix_ms]
    assert len(taken_before) >= 5, "readings taken before the fix are dated before it"
    assert all(first_fix_ms - 60_000 < s["ts"] < first_fix_ms + 60_000 for s in energy), "all on the GPS's timeline"
    assert fixed_at_boot_s > 0


def test_parking_at_a_stop_becomes_an_arrival_event(mosquitto: MosquittoBroker, gpsd: GpsdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CAMPERHUB_ARRIVAL_DWELL_S", "3")  # two minutes on the road; three seconds here
    camper = mosquitto.add_camper(CAMPER)
    reader = mosquitto.add_service("ingest", "ingest")
    stop = {"id": "bustecche", "name": "Bustecche", "neighbourhood": "Bustecche", "address": "via Cimabue", "lat": 45.8068, "lon": 8.8128, "radius_m": 120}
    stops_file = tmp_path / "stops.yaml"
    stops_file.write_text(yaml.safe_dump([stop]))
    start = datetime.now(UTC).replace(microsecond=0)
    with _victron_sim() as sim, MqttTestClient(mosquitto, reader) as sub:
        sub.connect()
        sub.subscribe(f"camperhub/v1/{CAMPER}/+")
        base = _config(CAMPER, mosquitto.url(camper), sim.listen.port, tmp_path, interval_s=0.5, commit_interval_s=0.2)
        config = _with(base, f"gps: {{gpsd: '{gpsd.address}'}}\nposition: {{stops_file: '{stops_file}'}}")
        agent = AgentThread(config).start()
        try:
            for i in range(8):  # parked 20 m from the stop's point, a fix a second
                gpsd.write(fix_sentences(start + timedelta(seconds=i), 45.8069, 8.8130, speed_kn=0.0))
                time.sleep(0.6)
            sub.pump_until(lambda: any(e["kind"] == "arrival" for e in _stream(sub, "event")), 20, "an arrival event")
        finally:
            agent.stop()
    (arrival,) = [e for e in _stream(sub, "event") if e["kind"] == "arrival"]
    assert arrival["detail"] == "bustecche"
    assert not [e for e in _stream(sub, "event") if e["kind"] == "departure"]
