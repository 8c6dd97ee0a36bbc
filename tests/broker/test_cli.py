"""`camperhub broker add-camper` / `add-service`: credentials printed once, files a real Mosquitto accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient


def camperhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camperhub.cli", *args], capture_output=True, text=True, timeout=60)


def test_add_camper_prints_credentials_that_the_broker_accepts(mosquitto: MosquittoBroker):
    res = camperhub("broker", "add-camper", "varese-7", "--passwd-file", str(mosquitto.passwd_file), "--acl-file", str(mosquitto.acl_file))
    assert res.returncode == 0, res.stderr
    password = re.search(r"mqtts://varese-7:([^@]+)@BROKER-HOST:8883", res.stdout).group(1)
    assert password not in mosquitto.passwd_file.read_text(), "only the hash is stored"
    assert "user varese-7" in mosquitto.acl_file.read_text()
    mosquitto.reload()
    from camperhub.broker.provision import Credentials

    with MqttTestClient(mosquitto, Credentials("varese-7", password)) as client:
        assert client.connect().value == 0
        assert client.publish("camperhub/v1/varese-7/energy").value < 0x80
        assert client.publish("camperhub/v1/varese-8/energy").value == 135


def test_add_camper_refuses_a_bad_name(tmp_path: Path):
    res = camperhub("broker", "add-camper", "Varese 1", "--passwd-file", str(tmp_path / "p"), "--acl-file", str(tmp_path / "a"))
    assert res.returncode == 2 and "not a valid camper id" in res.stderr
    assert not (tmp_path / "p").exists()


def test_add_service_prints_an_mqtt_url(tmp_path: Path):
    res = camperhub("broker", "add-service", "ingest", "--role", "ingest", "--passwd-file", str(tmp_path / "p"), "--acl-file", str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr
    assert re.search(r"CAMPERHUB_MQTT_URL=mqtt://ingest:\S+@BROKER-HOST:1883", res.stdout)
    assert "topic read camperhub/v1/+/energy" in (tmp_path / "a").read_text()
