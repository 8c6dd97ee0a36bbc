"""The fleet staff API (api/routers/fleet.py): tokens at every staff endpoint, the overview on both
real stores, the audit of position reads, the mode command through a real Mosquitto, readiness and
metrics of the fleet.

Times are fixed (the app's clock at T0 = 2026-05-04T12:00Z, 14:00 in Europe/Rome), so "today"
and "online" do not depend on when the suite runs.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.completeness import completeness
from camperhub.contract import ModeCommand, Stream, command_topic
from camperhub.fleet.alerts_rules import Alert, AlertKind, Transition
from camperhub.fleet.alerts_store import AlertRepository
from camperhub.settings import MqttClientSettings
from camperhub.store.base import DeadLetter, Store
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import MIN, T0, settings, smp
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

pytestmark = pytest.mark.timeout(90)

NOW = datetime.fromtimestamp(T0 / 1000, UTC)


class Env:
    """An app over ``store`` with a staff and an admin token, alerts and audit files in tmp."""

    def __init__(self, client: TestClient, staff: str, admin: str, tmp: Path, repo: AlertRepository) -> None:
        self.client, self.tmp, self.repo = client, tmp, repo
        self.staff_token, self.admin_token = staff, admin
        self.staff = {"Authorization": f"Bearer {staff}"}
        self.admin = {"Authorization": f"Bearer {admin}"}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TokenStore, AlertRepository]:
    monkeypatch.setenv("CAMPERHUB_ALERTS_PATH", str(tmp_path / "alerts.sqlite"))
    monkeypatch.setenv("CAMPERHUB_AUDIT_PATH", str(tmp_path / "audit.sqlite"))
    return TokenStore(tmp_path / "tokens.sqlite"), AlertRepository(tmp_path / "alerts.sqlite")


def _open_alert(repo: AlertRepository, camper: str, kind: AlertKind, severity: str, at: datetime) -> None:
    alert = Alert(id=f"{camper}-{kind.value}", camper=camper, kind=kind, severity=severity, state="open", opened_at=at, updated_at=at,
                  value=12.0, unit="%", message=f"{kind.value} on {camper}")
    repo.apply(camper, {}, [Transition("open", alert, True)])


def seed(store: Store) -> None:
    """van-1: online, live mode, nothing queued, a BMS, 8 of 10 readings of today arrived (seq 6, 7 lost).
    van-2: its Last Will two hours ago, 7 readings still queued, no energy today."""
    seqs = [1, 2, 3, 4, 5, 8, 9, 10]
    store.write([
        smp(Stream.ENERGY, T0 - (11 - s) * MIN, camper="van-1", seq=s, battery_soc_pct=80.0 + s, battery_soh_pct=95.0, battery_cycles=120,
            battery_voltage_v=13.2, battery_current_a=-2.5, battery_temp_c=21.0)
        for s in seqs
    ])
    store.write([smp(Stream.STATUS, T0 - 2 * MIN, camper="van-1", state="online", mode="live", queue_depth=0, oldest_queued_s=0.0,
                     agent_version="1.2.0", in_service=True)])
    store.write([smp(Stream.POSITION, T0 - (5 - k) * MIN, camper="van-1", lat=45.82 + k / 1000, lon=8.83, fix=3) for k in range(5)])
    store.write([smp(Stream.STATUS, T0 - 120 * MIN, camper="van-2", state="offline", queue_depth=7, oldest_queued_s=600.0)])


@pytest.fixture
def env(store: Store, files: tuple[TokenStore, AlertRepository], tmp_path: Path) -> Iterator[Env]:
    tokens, repo = files
    seed(store)
    staff, admin = tokens.create("maria", "staff"), tokens.create("root", "admin")
    with TestClient(create_app(settings(), store, tokens=tokens, clock=lambda: NOW)) as client:
        yield Env(client, staff, admin, tmp_path, repo)


@pytest.fixture
def sqlite_env(files: tuple[TokenStore, AlertRepository], tmp_path: Path) -> Iterator[Env]:
    tokens, repo = files
    store = SqliteStore(tmp_path / "store.sqlite")
    seed(store)
    staff, admin = tokens.create("maria", "staff"), tokens.create("root", "admin")
    with TestClient(create_app(settings(), store, tokens=tokens, clock=lambda: NOW)) as client:
        yield Env(client, staff, admin, tmp_path, repo)


# -- tokens at every endpoint ---------------------------------------------------------------
STAFF_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/fleet", None),
    ("GET", "/api/v1/fleet/van-1/battery", None),
    ("GET", "/api/v1/fleet/alerts", None),
    ("GET", "/api/v1/fleet/van-1/positions", None),
    ("GET", "/api/v1/fleet/van-1/series", None),
    ("POST", "/api/v1/campers/van-1/mode", {"mode": "live", "minutes": 60}),
]
ADMIN_ROUTES: list[tuple[str, str, Any]] = [("GET", "/api/v1/fleet/audit", None)]


def test_every_fleet_route_is_in_this_list(sqlite_env: Env) -> None:
    """A new staff route must be added to the auth checks below."""
    paths = sqlite_env.client.get("/openapi.json").json()["paths"]
    fleet = {(m.upper(), p) for p, ops in paths.items() for m, op in ops.items() if "staff" in op.get("tags", []) and ("/fleet" in p or p.endswith("/mode"))}
    listed = {(m, p.replace("van-1", "{camper}")) for m, p, _ in STAFF_ROUTES + ADMIN_ROUTES}
    assert fleet == listed


@pytest.mark.parametrize(("method", "path", "body"), STAFF_ROUTES + ADMIN_ROUTES)
def test_no_token_or_a_bad_one_is_401(sqlite_env: Env, method: str, path: str, body: Any) -> None:
    c = sqlite_env.client
    r = c.request(method, path, json=body)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer") and "token" in r.json()["detail"]
    r = c.request(method, path, json=body, headers={"Authorization": "Bearer not-a-token-we-issued"})
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    r = c.request(method, path, json=body, headers={"Authorization": "Basic bWFyaWE6eA=="})
    assert r.status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), STAFF_ROUTES)
def test_staff_and_admin_tokens_pass(sqlite_env: Env, method: str, path: str, body: Any) -> None:
    for headers in (sqlite_env.staff, sqlite_env.admin):
        r = sqlite_env.client.request(method, path, json=body, headers=headers)
        # the mode command has no broker in this app: 503 says so (test_mode_* below use a real one)
        assert r.status_code == (503 if path.endswith("/mode") else 200), r.text
        if r.status_code == 200:  # staff data is never kept by a shared cache
            assert r.headers["Cache-Control"] in ("no-store", "private, no-store")
        else:
            assert "no broker configured" in r.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_a_staff_token(sqlite_env: Env, method: str, path: str, body: Any) -> None:
    r = sqlite_env.client.request(method, path, json=body, headers=sqlite_env.staff)
    assert r.status_code == 403 and "needs admin" in r.json()["detail"]
    assert sqlite_env.client.request(method, path, json=body, headers=sqlite_env.admin).status_code == 200


def test_a_revoked_token_is_refused_at_once(sqlite_env: Env, files: tuple[TokenStore, AlertRepository]) -> None:
    assert sqlite_env.client.get("/api/v1/fleet", headers=sqlite_env.staff).status_code == 200
    assert files[0].revoke("maria")
    assert sqlite_env.client.get("/api/v1/fleet", headers=sqlite_env.staff).status_code == 401


# -- the overview, on both stores -----------------------------------------------------------
def test_fleet_overview_on_both_stores(env: Env, store: Store) -> None:
    _open_alert(env.repo, "van-1", AlertKind.LOW_SOC, "warning", NOW - 30 * timedelta(minutes=1))
    _open_alert(env.repo, "van-1", AlertKind.BATTERY_OVER_TEMP, "critical", NOW - timedelta(minutes=5))
    r = env.client.get("/api/v1/fleet", headers=env.staff)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timezone"] == "Europe/Rome" and body["alerts_available"] is True
    lines = {c["camper"]: c for c in body["campers"]}
    assert set(lines) == {"van-1", "van-2"}
    v1, v2 = lines["van-1"], lines["van-2"]
    assert v1["state"] == "online" and v1["online"] is True and v1["mode"] == "live" and v1["queue_depth"] == 0
    assert v1["last_data"]["utc"] == "2026-05-04T11:59:00Z" and v1["last_data"]["local"].startswith("2026-05-04T13:59:00")
    assert v1["last_data_age_s"] == 60.0
    assert v1["battery"]["soc_pct"] == 90.0 and v1["battery"]["soh_pct"] == 95.0 and v1["battery"]["soh_source"] == "bms"
    assert v1["battery"]["cycles"] == 120.0
    assert v1["open_alerts"] == 2 and v1["worst_alert"] == "critical"
    assert v1["completeness_today_pct"] == 80.0  # seq 1..10 taken, 6 and 7 never came
    assert v2["state"] == "offline" and v2["online"] is False and v2["queue_depth"] == 7 and v2["open_alerts"] == 0
    assert v2["battery"]["soc_pct"] is None and v2["worst_alert"] is None
    expected = completeness(store, "van-2", NOW.date(), NOW.date(), now=NOW).days[0].arrived_pct
    assert v2["completeness_today_pct"] == (None if expected is None else round(expected, 1))


def test_an_online_status_that_went_silent_is_not_online(sqlite_env: Env, tmp_path: Path, files: tuple[TokenStore, AlertRepository]) -> None:
    store = SqliteStore(tmp_path / "silent.sqlite")
    store.write([smp(Stream.STATUS, T0 - 16 * MIN, camper="van-3", state="online")])
    with TestClient(create_app(settings(), store, tokens=files[0], clock=lambda: NOW)) as c:
        line = c.get("/api/v1/fleet", headers=sqlite_env.staff).json()["campers"][0]
    assert line["state"] == "online" and line["online"] is False


def test_the_overview_lines_are_cached_but_alerts_are_fresh(sqlite_env: Env, tmp_path: Path) -> None:
    c = sqlite_env.client
    first = c.get("/api/v1/fleet", headers=sqlite_env.staff).json()
    c.app.state.store.write([smp(Stream.ENERGY, T0 - 30_000, camper="van-1", seq=11, battery_soc_pct=42.0)])
    _open_alert(sqlite_env.repo, "van-2", AlertKind.AGENT_OFFLINE, "warning", NOW)
    again = {x["camper"]: x for x in c.get("/api/v1/fleet", headers=sqlite_env.staff).json()["campers"]}
    assert again["van-1"]["battery"]["soc_pct"] == first["campers"][0]["battery"]["soc_pct"] == 90.0  # within fleet_cache_s
    assert again["van-2"]["open_alerts"] == 1


# -- battery, alerts, series ----------------------------------------------------------------
def test_battery_report_and_its_window(sqlite_env: Env) -> None:
    c, h = sqlite_env.client, sqlite_env.staff
    r = c.get("/api/v1/fleet/van-1/battery", params={"start": "2026-05-04", "end": "2026-05-04T14:00:00+02:00"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["camper"] == "van-1" and body["intervals"] == 8 and body["every_s"] == 60
    assert body["soh_pct"]["value"] is None or "unit" in body["soh_pct"]
    r = c.get("/api/v1/fleet/van-1/battery", params={"start": "2026-05-04", "end": "2026-05-03"}, headers=h)
    assert r.status_code == 422 and "must be before end" in r.json()["detail"]
    r = c.get("/api/v1/fleet/van-1/battery", params={"start": "yesterday"}, headers=h)
    assert r.status_code == 422 and "start" in r.json()["detail"]
    r = c.get("/api/v1/fleet/van-1/battery", params={"start": "2024-01-01"}, headers=h)
    assert r.status_code == 422 and "400 days" in r.json()["detail"]
    r = c.get("/api/v1/fleet/nobody/battery", headers=h)
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    r = c.get("/api/v1/fleet/Bad_Id/battery", headers=h)
    assert r.status_code == 422 and "does not match" in r.json()["detail"]


def test_alerts_open_and_history(sqlite_env: Env) -> None:
    c, h, repo = sqlite_env.client, sqlite_env.staff, sqlite_env.repo
    _open_alert(repo, "van-1", AlertKind.LOW_SOC, "warning", NOW - timedelta(hours=3))
    _open_alert(repo, "van-2", AlertKind.AGENT_OFFLINE, "critical", NOW - timedelta(hours=2))
    old = Alert(id="van-1-old", camper="van-1", kind=AlertKind.DATA_GAP, severity="info", state="closed", opened_at=NOW - timedelta(days=3),
                updated_at=NOW - timedelta(days=2), closed_at=NOW - timedelta(days=2), message="gap")
    repo.apply("van-1", {}, [Transition("close", old, True)])
    body = c.get("/api/v1/fleet/alerts", headers=h).json()
    assert body["state"] == "open" and [a["kind"] for a in body["alerts"]] == ["agent_offline", "low_soc"]  # most severe first
    assert [a["camper"] for a in c.get("/api/v1/fleet/alerts", params={"camper": "van-1"}, headers=h).json()["alerts"]] == ["van-1"]
    every = c.get("/api/v1/fleet/alerts", params={"state": "all"}, headers=h).json()["alerts"]
    assert {a["id"] for a in every} == {"van-1-low_soc", "van-2-agent_offline", "van-1-old"}
    recent = c.get("/api/v1/fleet/alerts", params={"state": "all", "since": "2026-05-04"}, headers=h).json()["alerts"]
    assert "van-1-old" not in {a["id"] for a in recent} and len(recent) == 2
    for params, words in (({"state": "closed"}, "state"), ({"since": "2026-05-04"}, "only with state=all"),
                          ({"state": "all", "since": "soon"}, "since"), ({"camper": "Van 1"}, "camper"), ({"state": "all", "limit": 0}, "limit")):
        r = c.get("/api/v1/fleet/alerts", params=params, headers=h)
        assert r.status_code == 422 and words in r.json()["detail"], (params, r.text)


def test_series_for_the_charts_reuses_energy_series(sqlite_env: Env) -> None:
    c, h = sqlite_env.client, sqlite_env.staff
    params = {"start": "2026-05-04T11:00:00Z", "end": "2026-05-04T12:00:00Z"}
    r = c.get("/api/v1/fleet/van-1/series", params=params, headers=h)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "private, no-store"
    body = r.json()
    assert set(body["values"]) == {"battery_voltage_v", "battery_current_a", "battery_temp_c"}
    assert len(body["time"]) == 8 and body["values"]["battery_current_a"] == [-2.5] * 8
    public = c.get("/api/v1/campers/van-1/energy/series", params={**params, "fields": "battery_voltage_v,battery_current_a,battery_temp_c"}).json()
    assert public["values"] == body["values"] and public["time"] == body["time"]
    r = c.get("/api/v1/fleet/van-1/series", params={**params, "fields": "battery_volts"}, headers=h)
    assert r.status_code == 422 and "battery_volts" in r.json()["detail"]
    r = c.get("/api/v1/fleet/van-1/series", params={**params, "colour": "red"}, headers=h)
    assert r.status_code == 422 and "unknown parameter" in r.json()["detail"]


# -- position history and its audit ---------------------------------------------------------
def test_every_position_read_is_audited_and_the_token_is_never_written(sqlite_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    c, h = sqlite_env.client, sqlite_env.staff
    caplog.set_level(logging.DEBUG)
    r = c.get("/api/v1/fleet/van-1/positions", params={"start": "2026-05-04T11:50:00Z", "end": "2026-05-04T12:00:00Z"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["time"]) == 5 and body["values"]["lat"][0] == 45.82 and body["values"]["fix"] == [3] * 5
    assert c.get("/api/v1/fleet/van-1/positions", headers=h).status_code == 200  # default: the last 24 h
    refused = c.get("/api/v1/fleet/van-1/positions", params={"start": "2026-04-01"}, headers=h)
    assert refused.status_code == 422 and "7 days" in refused.json()["detail"]
    entries = c.get("/api/v1/fleet/audit", headers=sqlite_env.admin).json()["entries"]
    assert len(entries) == 2  # the refused window read nothing and is not a read
    newest, first = entries
    assert first["who"] == "maria" and first["role"] == "staff" and first["action"] == "positions.read" and first["camper"] == "van-1"
    assert (first["start"], first["end"]) == ("2026-05-04T11:50:00Z", "2026-05-04T12:00:00Z")
    assert newest["start"] == "2026-05-03T12:00:00Z" and first["client"] == "testclient"
    raw = (sqlite_env.tmp / "audit.sqlite").read_bytes()
    for secret in (sqlite_env.staff_token, sqlite_env.admin_token):
        assert secret.encode() not in raw and secret not in caplog.text
    assert b"maria" in raw


def test_the_audit_log_is_append_only(sqlite_env: Env) -> None:
    import sqlite3

    sqlite_env.client.get("/api/v1/fleet/van-1/positions", headers=sqlite_env.staff)
    db = sqlite3.connect(sqlite_env.tmp / "audit.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET who = 'nobody'")
    db.close()


def test_positions_are_not_served_when_the_audit_cannot_be_written(files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the audit folder should be")
    monkeypatch.setenv("CAMPERHUB_AUDIT_PATH", str(blocker / "audit.sqlite"))
    store = SqliteStore(tmp_path / "store.sqlite")
    seed(store)
    token = files[0].create("maria", "staff")
    with TestClient(create_app(settings(), store, tokens=files[0], clock=lambda: NOW)) as c:
        r = c.get("/api/v1/fleet/van-1/positions", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and "audit log" in r.json()["detail"] and "lat" not in r.text


# -- the mode command ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_mode_command_reaches_the_camper_through_mosquitto(
    mosquitto: MosquittoBroker, files: tuple[TokenStore, AlertRepository], tmp_path: Path, protocol: str
) -> None:
    api_user = mosquitto.add_service("api", "api")
    cam = mosquitto.add_camper("van-1")
    store = SqliteStore(tmp_path / "store.sqlite")
    seed(store)
    token = files[0].create("maria", "staff")
    app = create_app(settings(mqtt_protocol=protocol), store, tokens=files[0], mqtt=MqttClientSettings(mqtt_url=mosquitto.url(api_user)))
    with MqttTestClient(mosquitto, cam) as sub, TestClient(app) as c:
        assert sub.connect().value == 0 and sub.subscribe("camperhub/v1/van-1/cmd/#")[0].value < 128
        before = int(time.time() * 1000)
        r = c.post("/api/v1/campers/van-1/mode", json={"mode": "live", "minutes": 60}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202, r.text
        assert r.json()["issued_by"] == "maria" and r.json()["topic"] == command_topic("van-1", "mode")
        msg = sub.next_message()
        assert msg.topic == "camperhub/v1/van-1/cmd/mode" and msg.qos == 1 and not msg.retain
        cmd = ModeCommand.model_validate_json(msg.payload)
        assert cmd.mode == "live" and cmd.minutes == 60 and before <= cmd.issued_ts <= int(time.time() * 1000)
        back = c.post("/api/v1/campers/van-1/mode", json={"mode": "normal"}, headers={"Authorization": f"Bearer {token}"})
        assert back.status_code == 202 and json.loads(sub.next_message().payload)["mode"] == "normal"


def test_mode_command_refused_by_the_broker_or_unreachable_is_503(
    mosquitto: MosquittoBroker, files: tuple[TokenStore, AlertRepository], tmp_path: Path
) -> None:
    reader = mosquitto.add_user("api-read-only", ["topic read camperhub/v1/#"])  # an api user provisioned before cmd/mode
    store = SqliteStore(tmp_path / "store.sqlite")
    seed(store)
    auth = {"Authorization": f"Bearer {files[0].create('maria', 'staff')}"}
    body = {"mode": "live", "minutes": 5}
    app = create_app(settings(mqtt_protocol="5"), store, tokens=files[0], mqtt=MqttClientSettings(mqtt_url=mosquitto.url(reader)))
    with TestClient(app) as c:
        r = c.post("/api/v1/campers/van-1/mode", json=body, headers=auth)
        assert r.status_code == 503 and "refused the command" in r.json()["detail"] and "cmd/mode" in r.json()["detail"]
    dead = MqttClientSettings(mqtt_url=f"mqtt://api:secret@127.0.0.1:{_free_port()}")
    with TestClient(create_app(settings(), SqliteStore(tmp_path / "store.sqlite"), tokens=files[0], mqtt=dead)) as c:
        r = c.post("/api/v1/campers/van-1/mode", json=body, headers=auth)
        assert r.status_code == 503 and "cannot be reached" in r.json()["detail"] and "secret" not in r.text


@pytest.mark.parametrize(
    ("body", "words"),
    [({"mode": "live"}, "needs minutes"), ({"mode": "turbo", "minutes": 5}, "mode"), ({"mode": "live", "minutes": 0}, "minutes"),
     ({"mode": "live", "minutes": 2000}, "minutes"), ({"mode": "live", "minutes": 5, "issued_ts": 1}, "unknown parameter"), ([], "")],
)
def test_mode_command_bad_input_is_422(sqlite_env: Env, body: Any, words: str) -> None:
    r = sqlite_env.client.post("/api/v1/campers/van-1/mode", json=body, headers=sqlite_env.staff)
    assert r.status_code == 422 and words in r.json()["detail"], r.text


def test_mode_command_for_an_unknown_camper_is_404(sqlite_env: Env) -> None:
    r = sqlite_env.client.post("/api/v1/campers/nobody/mode", json={"mode": "normal"}, headers=sqlite_env.staff)
    assert r.status_code == 404 and "nobody" in r.json()["detail"]


# -- operations: readiness with the broker, fleet metrics -------------------------------------
def test_readyz_names_the_broker_when_the_listener_is_not_connected(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    dead = MqttClientSettings(mqtt_url=f"mqtt://127.0.0.1:{_free_port()}")
    with TestClient(create_app(settings(live=True), SqliteStore(tmp_path / "a.sqlite"), mqtt=dead)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["live"] == "disconnected" and r.json()["store"] == "ok"
        assert "broker unavailable" in r.json()["detail"]
    user = mosquitto.add_service("api", "api")
    live = MqttClientSettings(mqtt_url=mosquitto.url(user))
    with TestClient(create_app(settings(live=True), SqliteStore(tmp_path / "b.sqlite"), mqtt=live)) as c:
        assert c.app.state.live.connected.wait(10)
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["live"] == "connected" and user.password not in r.text


def test_metrics_show_open_alerts_queues_and_dead_letters(sqlite_env: Env) -> None:
    c = sqlite_env.client
    _open_alert(sqlite_env.repo, "van-1", AlertKind.LOW_SOC, "warning", NOW)
    store = c.app.state.store
    now_ms = int(time.time() * 1000)
    store.write_dead_letters([DeadLetter(now_ms - k, "camperhub/v1/van-1/energy", "bad envelope", b"{}", "van-1") for k in range(3)])
    text = c.get("/metrics").text
    assert 'camperhub_open_alerts{kind="low_soc"} 1.0' in text and 'camperhub_open_alerts{kind="agent_offline"} 0.0' in text
    assert 'camperhub_camper_queue_depth{camper="van-2"} 7.0' in text and 'camperhub_camper_queue_depth{camper="van-1"} 0.0' in text
    assert "camperhub_dead_letters_recent 3.0" in text
    sqlite_env.repo.apply("van-1", {}, [Transition("close", Alert(
        id="van-1-low_soc", camper="van-1", kind=AlertKind.LOW_SOC, severity="warning", state="closed", opened_at=NOW, updated_at=NOW,
        closed_at=NOW, message="ok"), True)])
    assert 'camperhub_open_alerts{kind="low_soc"} 0.0' in c.get("/metrics").text
