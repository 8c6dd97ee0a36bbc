"""Downlink commands from the API to a camper (``camperhub/v1/{camper}/cmd/{name}``, ARCHITECTURE.md §4).

Used by ``POST /api/v1/campers/{camper}/mode`` (api/routers/fleet.py). The API's
broker user (``camperhub broker add-service api --role api``) may write only
``camperhub/v1/+/cmd/mode`` besides reading (broker/provision.py).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camperhub.mqtturl import MqttUrl
from camperhub.settings import MqttClientSettings

#: Seconds to wait for the broker's CONNACK, then for its PUBACK.
COMMAND_TIMEOUT_S = 5.0


class CommandNotSent(Exception):
    """The broker did not take the command (unreachable, refused the login or the publish)."""


class _NoConnack(CommandNotSent):
    pass


def _publish_once(url: MqttUrl, ca_file: Any, protocol: int, topic: str, payload: bytes, timeout_s: float) -> None:
    connected, acked = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["connack"] = reason
        connected.set()

    def on_publish(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        result["puback"] = reason
        acked.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"camperhub-api-cmd-{secrets.token_hex(4)}", protocol=protocol,
                         reconnect_on_failure=False)
    url.configure(client, ca_file)
    client.on_connect, client.on_publish = on_connect, on_publish
    try:
        client.connect(url.host, url.port, keepalive=30)
    except OSError as exc:
        raise CommandNotSent(f"the broker {url.redacted()} cannot be reached ({exc.strerror or exc})") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise _NoConnack(f"the broker {url.redacted()} did not answer the connection within {timeout_s:g} s")
        if result["connack"].is_failure:
            raise CommandNotSent(f"the broker {url.redacted()} refused the API's login: {result['connack']}")
        info = client.publish(topic, payload, qos=1)
        if not acked.wait(timeout_s):
            raise CommandNotSent(f"the broker {url.redacted()} did not acknowledge the command within {timeout_s:g} s")
        if getattr(result["puback"], "is_failure", False):
            raise CommandNotSent(f"the broker refused the command on {topic}: {result['puback']} (the api user needs 'topic write {topic}')")
        del info
    finally:
        client.disconnect()
        client.loop_stop()


def publish_command(settings: MqttClientSettings, protocol: str, topic: str, payload: bytes, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK; CommandNotSent with the reason.

    A connection per command: commands are rare (a staff click), and a long-lived
    publisher would be one more thing to keep alive. MQTT 5 first (its PUBACK says when
    the ACL refuses), 3.1.1 when the broker does not answer it (the demo's amqtt)."""
    url = MqttUrl.parse(settings.mqtt_url)
    versions = {"5": [mqtt.MQTTv5], "3.1.1": [mqtt.MQTTv311]}.get(protocol, [mqtt.MQTTv5, mqtt.MQTTv311])
    last: CommandNotSent | None = None
    for version in versions:
        try:
            _publish_once(url, settings.mqtt_ca_file, version, topic, payload, timeout_s)
            return
        except _NoConnack as exc:
            last = exc
    assert last is not None
    raise last
