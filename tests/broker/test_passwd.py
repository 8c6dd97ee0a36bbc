"""Password hashing and authentication, against the real Mosquitto 2.0.11.

The hashes are written by our own code (no ``mosquitto_passwd`` at
provisioning time), so the only proof that they are right is a real broker
accepting them and ``mosquitto_passwd`` output verifying with our code.
The ``mosquitto`` fixture comes from tests/conftest.py (tests/fixtures/mosquitto.py).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from camperhub.broker.passwd import generate_password, hash_password, set_password_line, verify_password
from camperhub.broker.provision import Credentials
from tests.fixtures import mosquitto as fixture_module
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

# Mosquitto 2.0.11 refuses a bad password, an unknown user and an anonymous
# client all alike with "Not authorized": CONNACK reason 135 under MQTT 5,
# return code 5 under 3.1.1 (which paho reports as reason 135 too).
NOT_AUTHORIZED = 135
PROTOCOLS = [pytest.param(mqtt.MQTTv5, id="v5"), pytest.param(mqtt.MQTTv311, id="v311")]
_HASH_RE = re.compile(r"^\$7\$101\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


# -- unit tests of the hash -----------------------------------------------


def test_hash_has_mosquitto_2_format() -> None:
    match = _HASH_RE.fullmatch(hash_password("secret"))
    assert match, "expected $7$101$<b64 salt>$<b64 hash>"
    assert len(base64.b64decode(match.group(1))) == 12
    assert len(base64.b64decode(match.group(2))) == 64


def test_hash_is_salted_and_reproducible_with_a_given_salt() -> None:
    assert hash_password("secret") != hash_password("secret")
    salt = bytes(range(12))
    assert hash_password("secret", salt=salt) == hash_password("secret", salt=salt)
    assert hash_password("secret", salt=salt, iterations=5).startswith("$7$5$AAECAwQFBgcICQoL$")


def test_verify_round_trip_and_wrong_password() -> None:
    encoded = hash_password("correct horse")
    assert verify_password("correct horse", encoded)
    assert verify_password("correct horse", f"someone:{encoded}")
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("", encoded)


@pytest.mark.parametrize("garbage", ["", "nonsense", "$7$x$AAAA$BBBB", "$7$101$!!$AAAA", "$5$abc$def", "user:"])
def test_verify_malformed_is_false(garbage: str) -> None:
    assert not verify_password("x", garbage)


def test_generated_passwords_are_url_safe_and_distinct() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for pw in passwords:
        assert re.fullmatch(r"[A-Za-z0-9_-]{24}", pw)


def test_mosquitto_passwd_output_verifies(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
    assert tool, "mosquitto_passwd not found: run scripts/install-system-deps.sh"
    pwfile = tmp_path / "pw"
    subprocess.run([tool, "-b", "-c", str(pwfile), "someone", "p4ss w0rd"], check=True, timeout=10)
    line = pwfile.read_text().strip()
    user, encoded = line.split(":", 1)
    assert user == "someone"
    assert _HASH_RE.fullmatch(encoded), f"mosquitto_passwd format changed: {encoded}"
    assert verify_password("p4ss w0rd", encoded)
    assert not verify_password("p4ss w0rd!", encoded)


def test_set_password_line_adds_replaces_and_keeps_others(tmp_path: Path) -> None:
    pwfile = tmp_path / "sub" / "passwd"
    set_password_line(pwfile, "alpha", "one")
    set_password_line(pwfile, "beta", "two")
    set_password_line(pwfile, "alpha", "three")
    lines = pwfile.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["beta", "alpha"]
    assert verify_password("two", lines[0]) and verify_password("three", lines[1])
    assert not verify_password("one", lines[1])
    assert pwfile.stat().st_mode & 0o777 in (0o640, 0o600)
    assert "three" not in pwfile.read_text()
    assert list(pwfile.parent.iterdir()) == [pwfile], "temp file left behind"


@pytest.mark.parametrize("bad", ["", "a:b", "a\nb", " padded"])
def test_set_password_line_rejects_bad_usernames(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        set_password_line(tmp_path / "passwd", bad, "pw")


# -- the real broker ------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_camper_connects_with_its_password(mosquitto: MosquittoBroker, protocol: int) -> None:
    creds = mosquitto.add_camper("varese-1")
    with MqttTestClient(mosquitto, creds, protocol=protocol) as client:
        assert client.connect().value == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_password_is_refused(mosquitto: MosquittoBroker, protocol: int) -> None:
    creds = mosquitto.add_camper("varese-1")
    with MqttTestClient(mosquitto, Credentials(creds.username, creds.password + "x"), protocol=protocol) as client:
        rc = client.connect()
    assert rc.value == NOT_AUTHORIZED
    assert str(rc) == "Not authorized"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_anonymous_and_unknown_users_are_refused(mosquitto: MosquittoBroker, protocol: int) -> None:
    mosquitto.add_camper("varese-1")
    with MqttTestClient(mosquitto, None, protocol=protocol) as client:
        assert client.connect().value == NOT_AUTHORIZED
    with MqttTestClient(mosquitto, Credentials("nobody", "whatever"), protocol=protocol) as client:
        assert client.connect().value == NOT_AUTHORIZED


def test_sighup_reloads_passwords_so_re_adding_rotates(mosquitto: MosquittoBroker) -> None:
    old = mosquitto.add_camper("varese-1")
    new = mosquitto.add_camper("varese-1")  # writes a new password line, then SIGHUP
    assert old.password != new.password
    with MqttTestClient(mosquitto, old) as client:
        assert client.connect().value == NOT_AUTHORIZED
    with MqttTestClient(mosquitto, new) as client:
        assert client.connect().value == 0
    assert mosquitto.url(new) == f"mqtt://varese-1:{new.password}@127.0.0.1:{mosquitto.port}"


def test_fixture_stop_leaves_no_process(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b")
    with broker:
        pid = broker.pid
        assert pid is not None
    assert broker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    broker.stop()  # idempotent


def test_fixture_start_failure_reports_the_log(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b")
    broker.workdir.mkdir(parents=True)
    broker.acl_file.write_text("user someone\ntopic bogus a/b\n")
    with pytest.raises(RuntimeError, match=r'(?s)mosquitto exited.*log tail:.*Invalid topic access type "bogus"'):
        broker.start()
    assert broker.pid is None


def test_fixture_without_mosquitto_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(fixture_module, "_EXTRA_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="mosquitto not found: run scripts/install-system-deps.sh"):
        MosquittoBroker(tmp_path / "b").start()
