"""ACL provisioning and enforcement, against the real Mosquitto 2.0.11.

What the real broker does (checked here, relied on by the edge agent):
- a denied QoS 1 PUBLISH under MQTT 5 gets PUBACK reason 135 "Not
  authorized" and the connection stays up; under 3.1.1 it gets a plain
  PUBACK, as if delivered, and the message is silently dropped;
- an allowed publish nobody subscribes to gets reason 16 "No matching
  subscribers" under MQTT 5, so success means "reason < 128", not "== 0";
- a SUBSCRIBE to a denied topic is granted (SUBACK QoS 1, both protocols)
  and filtered on delivery;
- SIGHUP re-reads the ACL, and the new rules apply to connections already open.

"Nothing was delivered" is proven without sleeping: after the denied message
the same publisher (or sender) sends an allowed one; Mosquitto keeps the
order per connection, so if the denied one had been delivered it would
arrive first.
The ``mosquitto`` fixture comes from tests/conftest.py (tests/fixtures/mosquitto.py).
"""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from camperhub.broker.provision import (
    Credentials,
    add_camper,
    add_service,
    render_mosquitto_conf,
    set_acl_block,
)
from camperhub.contract import Stream, command_topic, topic
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

NOT_AUTHORIZED = 135
NO_MATCHING_SUBSCRIBERS = 16
PROTOCOLS = [pytest.param(mqtt.MQTTv5, id="v5"), pytest.param(mqtt.MQTTv311, id="v311")]

EXPECTED_CAMPER_BLOCK = """\
user varese-1
topic write camperhub/v1/varese-1/energy
topic write camperhub/v1/varese-1/position
topic write camperhub/v1/varese-1/event
topic write camperhub/v1/varese-1/status
topic read camperhub/v1/varese-1/cmd/#
"""


# -- provisioning (files only) --------------------------------------------


def test_camper_block_is_exactly_the_contract(tmp_path: Path) -> None:
    creds = add_camper("varese-1", tmp_path / "passwd", tmp_path / "acl")
    assert creds == Credentials("varese-1", creds.password)
    assert (tmp_path / "acl").read_text() == EXPECTED_CAMPER_BLOCK
    assert creds.password not in repr(creds)
    assert creds.password not in (tmp_path / "passwd").read_text()


def test_re_adding_replaces_the_block_and_keeps_others(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("# header kept\n\n")
    add_camper("varese-1", tmp_path / "passwd", acl)
    add_service("ingest", "ingest", tmp_path / "passwd", acl)
    add_camper("como-2", tmp_path / "passwd", acl)
    before = acl.read_text()
    add_camper("varese-1", tmp_path / "passwd", acl)
    after = acl.read_text()
    assert after.startswith("# header kept\n")
    assert after.count("user varese-1\n") == 1
    assert sorted(after.strip().split("\n\n")) == sorted(before.strip().split("\n\n"))
    assert [line.split(":")[0] for line in (tmp_path / "passwd").read_text().splitlines()] == ["ingest", "como-2", "varese-1"]


def test_service_blocks_read_the_uplink_and_the_ingest_writes_only_receipts(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    add_service("ingest", "ingest", tmp_path / "passwd", acl)
    add_service("api", "api", tmp_path / "passwd", acl)
    assert acl.read_text() == (
        "user ingest\n"
        "topic read camperhub/v1/+/energy\n"
        "topic read camperhub/v1/+/position\n"
        "topic read camperhub/v1/+/event\n"
        "topic read camperhub/v1/+/status\n"
        "topic write camperhub/v1/+/cmd/stored\n"
        "\n"
        "user api\n"
        "topic read camperhub/v1/#\n"
        "topic write camperhub/v1/+/cmd/mode\n"
    )


@pytest.mark.parametrize("bad", ["Varese-1", "varese_1", "", "a" * 33, "varese/1", "+", "#", "x y"])
def test_invalid_camper_name_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid camper id"):
        add_camper(bad, tmp_path / "passwd", tmp_path / "acl")
    assert not (tmp_path / "acl").exists() and not (tmp_path / "passwd").exists()


def test_invalid_service_role_or_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="role"):
        add_service("ingest", "admin", tmp_path / "passwd", tmp_path / "acl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="service name"):
        add_service("in gest", "ingest", tmp_path / "passwd", tmp_path / "acl")


def test_render_conf(tmp_path: Path) -> None:
    conf = render_mosquitto_conf(
        port=1883, bind="127.0.0.1", passwd_file=tmp_path / "passwd", acl_file=tmp_path / "acl", persistence_dir=tmp_path / "data", user="root"
    )
    lines = conf.splitlines()
    for expected in (
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {tmp_path / 'passwd'}",
        f"acl_file {tmp_path / 'acl'}",
        "persistence true",
        f"persistence_location {tmp_path / 'data'}/",
        "listener 1883 127.0.0.1",
        "max_queued_messages 100000",
        "max_inflight_messages 100",
        "user root",
    ):
        assert expected in lines
    bare = render_mosquitto_conf(port=1, bind="127.0.0.1", passwd_file=tmp_path, acl_file=tmp_path, persistence_dir=None)
    assert "persistence false" in bare.splitlines() and "user" not in {line.split(" ")[0] for line in bare.splitlines()}


# -- enforcement by the real broker ---------------------------------------


@pytest.fixture
def fleet(mosquitto: MosquittoBroker) -> dict[str, Credentials]:
    """Two campers, the two services and a test-only command sender of every cmd/ (the api writes only cmd/mode)."""
    return {
        "a": mosquitto.add_camper("cam-a"),
        "b": mosquitto.add_camper("cam-b"),
        "ingest": mosquitto.add_service("ingest", "ingest"),
        "api": mosquitto.add_service("api", "api"),
        "sender": mosquitto.add_user("test-cmd-sender", ["topic write camperhub/v1/+/cmd/#"]),
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_camper_publishes_its_streams_and_ingest_receives(mosquitto: MosquittoBroker, fleet: dict[str, Credentials], protocol: int) -> None:
    with MqttTestClient(mosquitto, fleet["a"], protocol=protocol) as cam, MqttTestClient(mosquitto, fleet["ingest"], protocol=protocol) as ingest:
        assert cam.connect().value == 0 and ingest.connect().value == 0
        for stream in Stream:
            assert [rc.value for rc in ingest.subscribe(f"camperhub/v1/+/{stream.value}")] == [1]
        for stream in Stream:
            assert cam.publish(topic("cam-a", stream), stream.value.encode()).value == 0
            msg = ingest.next_message()
            assert (msg.topic, msg.payload) == (topic("cam-a", stream), stream.value.encode())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_camper_cannot_publish_under_another_camper(mosquitto: MosquittoBroker, fleet: dict[str, Credentials], protocol: int) -> None:
    with (
        MqttTestClient(mosquitto, fleet["a"], protocol=protocol) as cam,
        MqttTestClient(mosquitto, fleet["ingest"], protocol=protocol) as ingest,
        MqttTestClient(mosquitto, fleet["api"], protocol=protocol) as api,
    ):
        assert cam.connect().value == ingest.connect().value == api.connect().value == 0
        ingest.subscribe("camperhub/v1/+/energy")
        api.subscribe("camperhub/v1/#")
        rc = cam.publish(topic("cam-b", Stream.ENERGY), b"forged")
        if protocol == mqtt.MQTTv5:
            assert rc.value == NOT_AUTHORIZED and str(rc) == "Not authorized"
        else:
            assert rc.value == 0  # 3.1.1 has no way to say no: acknowledged, then dropped
        assert cam.client.is_connected()
        assert cam.publish(topic("cam-a", Stream.ENERGY), b"own").value == 0
        for subscriber in (ingest, api):
            msg = subscriber.next_message()
            assert (msg.topic, msg.payload) == (topic("cam-a", Stream.ENERGY), b"own")


@pytest.mark.parametrize(
    "where",
    ["camperhub/v1/cam-a/cmd/mode", "camperhub/v1/cam-a/other", "camperhub/v1/cam-a", "camperhub/v2/cam-a/energy", "elsewhere"],
)
def test_camper_may_write_only_its_four_streams(mosquitto: MosquittoBroker, fleet: dict[str, Credentials], where: str) -> None:
    with MqttTestClient(mosquitto, fleet["a"]) as cam:
        cam.connect()
        assert cam.publish(where).value == NOT_AUTHORIZED


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_camper_reads_only_its_own_commands(mosquitto: MosquittoBroker, fleet: dict[str, Credentials], protocol: int) -> None:
    with (
        MqttTestClient(mosquitto, fleet["a"], protocol=protocol) as cam,
        MqttTestClient(mosquitto, fleet["sender"], protocol=protocol) as sender,
    ):
        assert cam.connect().value == sender.connect().value == 0
        # Mosquitto grants both subscriptions and filters on delivery.
        assert [rc.value for rc in cam.subscribe("camperhub/v1/cam-b/cmd/#")] == [1]
        assert [rc.value for rc in cam.subscribe("camperhub/v1/+/cmd/#")] == [1]
        assert sender.publish(command_topic("cam-b", "mode"), b"for b").value < 128
        assert sender.publish(command_topic("cam-a", "mode"), b"for a").value == 0
        msg = cam.next_message()
        assert (msg.topic, msg.payload) == (command_topic("cam-a", "mode"), b"for a")
        # cam-a matches with both subscriptions at most: never B's command.
        assert all(m.payload == b"for a" for m in cam.messages)


def test_services_cannot_publish(mosquitto: MosquittoBroker, fleet: dict[str, Credentials]) -> None:
    with (
        MqttTestClient(mosquitto, fleet["ingest"]) as ingest,
        MqttTestClient(mosquitto, fleet["api"]) as api,
        MqttTestClient(mosquitto, fleet["a"]) as cam,
    ):
        assert ingest.connect().value == api.connect().value == cam.connect().value == 0
        cam.subscribe("camperhub/v1/cam-a/cmd/#")
        api.subscribe("camperhub/v1/#")
        for client in (ingest, api):
            for where in (topic("cam-a", Stream.ENERGY), topic("cam-a", Stream.STATUS), command_topic("cam-a", "mode"), "anything"):
                if client is api and where == command_topic("cam-a", "mode"):
                    continue  # the api sends the mode command (POST .../mode): test_the_api_may_write_only_the_mode_command
                rc = client.publish(where, b"forged")
                assert rc.value == NOT_AUTHORIZED, (where, rc)
        # The api (reading everything) sees none of the forged messages, only the real one.
        assert cam.publish(topic("cam-a", Stream.EVENT), b"real").value == 0
        assert api.next_message().payload == b"real"
        assert cam.messages == []


def test_ingest_does_not_read_commands(mosquitto: MosquittoBroker, fleet: dict[str, Credentials]) -> None:
    with (
        MqttTestClient(mosquitto, fleet["ingest"]) as ingest,
        MqttTestClient(mosquitto, fleet["sender"]) as sender,
        MqttTestClient(mosquitto, fleet["a"]) as cam,
    ):
        assert ingest.connect().value == sender.connect().value == cam.connect().value == 0
        ingest.subscribe("camperhub/v1/#")
        sender.publish(command_topic("cam-a", "mode"), b"cmd")
        cam.publish(topic("cam-a", Stream.ENERGY), b"energy")
        assert ingest.next_message().payload == b"energy"
        assert ingest.messages == []


def test_sighup_reloads_the_acl_for_open_connections(mosquitto: MosquittoBroker) -> None:
    probe = mosquitto.add_user("probe", ["topic write test/a"])
    with MqttTestClient(mosquitto, probe) as client:
        assert client.connect().value == 0
        assert client.publish("test/b").value == NOT_AUTHORIZED
        assert client.publish("test/a").value == NO_MATCHING_SUBSCRIBERS  # allowed; nobody listens
        mosquitto.add_user("probe", ["topic write test/b"], password=probe.password)
        assert client.publish("test/b").value == NO_MATCHING_SUBSCRIBERS
        assert client.publish("test/a").value == NOT_AUTHORIZED


def test_set_acl_block_writes_a_hand_made_user(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    set_acl_block(acl, "probe", ["topic write test/a"])
    set_acl_block(acl, "probe", ["topic write test/b"])
    assert acl.read_text() == "user probe\ntopic write test/b\n"


# -- the alerts role (camperhub/fleet/alerts_notify.py) --------------------------------------


def test_alerts_block_writes_only_alert_topics(tmp_path: Path) -> None:
    add_service("alerts", "alerts", tmp_path / "passwd", tmp_path / "acl")
    assert (tmp_path / "acl").read_text() == "user alerts\ntopic write camperhub/v1/+/alert\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_alerts_service_publishes_alerts_the_api_reads_them_and_campers_cannot_forge_them(
    mosquitto: MosquittoBroker, fleet: dict[str, Credentials], protocol: int
) -> None:
    alerts = mosquitto.add_service("alerts", "alerts")
    with (
        MqttTestClient(mosquitto, alerts, protocol=protocol) as svc,
        MqttTestClient(mosquitto, fleet["api"], protocol=protocol) as api,
        MqttTestClient(mosquitto, fleet["a"], protocol=protocol) as cam,
    ):
        assert svc.connect().value == api.connect().value == cam.connect().value == 0
        api.subscribe("camperhub/v1/+/alert")
        rc = cam.publish("camperhub/v1/cam-a/alert", b"forged by the camper")
        if protocol == mqtt.MQTTv5:
            assert rc.value == NOT_AUTHORIZED
        # ordered per connection on the broker: had the forged one passed, the api would get it first
        assert svc.publish("camperhub/v1/cam-a/alert", b"real").value == 0
        msg = api.next_message()
        assert (msg.topic, msg.payload) == ("camperhub/v1/cam-a/alert", b"real")
        # the camper publishes its own stream after the forgery: the api's next message is that, not the forgery
        api.subscribe("camperhub/v1/+/energy")
        assert cam.publish(topic("cam-a", Stream.ENERGY), b"own").value == 0
        assert api.next_message().payload == b"own"
        assert api.messages == []


def test_alerts_service_cannot_publish_telemetry_or_commands(mosquitto: MosquittoBroker, fleet: dict[str, Credentials]) -> None:
    alerts = mosquitto.add_service("alerts", "alerts")
    with MqttTestClient(mosquitto, alerts) as svc:
        assert svc.connect().value == 0
        for where in (topic("cam-a", Stream.ENERGY), topic("cam-a", Stream.STATUS), command_topic("cam-a", "mode"), "camperhub/v1/cam-a"):
            assert svc.publish(where, b"forged").value == NOT_AUTHORIZED, where


# -- the api sends the mode command (POST /api/v1/campers/{camper}/mode, api/routers/fleet.py) -----


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_api_may_write_only_the_mode_command(mosquitto: MosquittoBroker, fleet: dict[str, Credentials], protocol: int) -> None:
    with (
        MqttTestClient(mosquitto, fleet["api"], protocol=protocol) as api,
        MqttTestClient(mosquitto, fleet["a"], protocol=protocol) as cam,
    ):
        assert api.connect().value == cam.connect().value == 0
        cam.subscribe("camperhub/v1/cam-a/cmd/#")
        for where in (command_topic("cam-a", "stored"), command_topic("cam-a", "other"), topic("cam-a", Stream.STATUS)):
            rc = api.publish(where, b"forged")
            assert rc.value == (NOT_AUTHORIZED if protocol == mqtt.MQTTv5 else 0), (where, rc)
        assert api.publish(command_topic("cam-a", "mode"), b'{"mode":"normal"}').value == 0
        msg = cam.next_message()
        assert (msg.topic, msg.payload) == (command_topic("cam-a", "mode"), b'{"mode":"normal"}')
        assert cam.messages == []  # none of the refused ones came through
