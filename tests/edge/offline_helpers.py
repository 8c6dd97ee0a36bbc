"""Helpers for the durable-queue tests: a subscriber whose session survives a broker restart."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from camperhub import contract
from tests.fixtures.mosquitto import MqttTestClient

#: A whole hour a day ago: readings from it are inside the default 30-day age budget; a minute boundary.
T0_MS = (int(time.time() * 1000) // 3_600_000 - 24) * 3_600_000


class DurableSubscriber(MqttTestClient):
    """MQTT 5 with clean_start=False and a session expiry: Mosquitto keeps (and persists) its
    QoS 1 messages while it is away, so a broker restart loses nothing on the test's side."""

    def connect(self, timeout: float = 5.0) -> ReasonCode:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=False, properties=props)
        self.pump_until(lambda: self.connack is not None or self.disconnected, timeout, "CONNACK")
        assert self.connack is not None, "connection closed without CONNACK"
        return self.connack

    def settle(self, seconds: float = 0.3) -> None:
        """Run the loop a little: paho writes the PUBACKs of what it received (else the broker redelivers them)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.client.loop(timeout=0.05)

    def reconnect(self, timeout: float = 10.0) -> None:
        """After a broker restart: connect again to the same session."""
        self.client.loop(timeout=0)  # let paho notice the dead socket
        self.connack, self.disconnected = None, False
        self.connect(timeout)


def samples(messages: list[mqtt.MQTTMessage], camper: str, stream: str = "energy") -> list[dict[str, Any]]:
    """Every sample of ``stream`` received, in arrival order."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.topic == contract.topic(camper, stream):
            out += json.loads(m.payload)["samples"]
    return out


def energy(i: int, ts_ms: int) -> dict[str, Any]:
    """A contract-valid energy reading numbered ``i`` (in battery_cycles)."""
    return {"ts": ts_ms, "battery_voltage_v": 12.5 + (i % 10) / 10, "battery_cycles": i, "charge_state": "bulk" if i % 2 else "float", "shore_power": bool(i % 3)}
