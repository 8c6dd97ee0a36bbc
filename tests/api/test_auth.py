"""Staff tokens: hashed storage, bearer checks (401/403), the `camperhub token` verbs. Tokens are made at run time."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.api.deps import AdminDep, StaffDep
from camperhub.cli import main as cli_main
from camperhub.schedule_io import ScheduleRepository
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import settings

pytestmark = pytest.mark.timeout(30)


def test_tokens_are_random_stored_only_as_hashes_and_revocable(tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    a = tokens.create("maria", "staff")
    b = tokens.create("root-desk", "admin")
    assert a != b and len(a) >= 43
    raw = (tmp_path / "tokens.sqlite").read_bytes()
    assert a.encode() not in raw and b.encode() not in raw
    with sqlite3.connect(tmp_path / "tokens.sqlite") as db:
        hashes = {r[0] for r in db.execute("SELECT hash FROM token")}
    assert hashes == {hashlib.sha256(a.encode()).hexdigest(), hashlib.sha256(b.encode()).hexdigest()}
    assert (tmp_path / "tokens.sqlite").stat().st_mode & 0o077 == 0
    assert tokens.verify(a).name == "maria" and tokens.verify(b).role == "admin"
    assert tokens.verify(a + "x") is None and tokens.verify("") is None
    assert [(t.name, t.role) for t in tokens.list()] == [("maria", "staff"), ("root-desk", "admin")]
    with pytest.raises(ValueError, match="exists already"):
        tokens.create("maria", "staff")
    with pytest.raises(ValueError, match="role"):
        tokens.create("bob", "root")
    with pytest.raises(ValueError, match="name"):
        tokens.create("bad name", "staff")
    assert tokens.revoke("maria") and not tokens.revoke("maria")
    assert tokens.verify(a) is None


@pytest.fixture
def client(tmp_path: Path):
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    app = create_app(settings(), SqliteStore(tmp_path / "s.sqlite"), tokens=tokens, schedules=ScheduleRepository(tmp_path / "sch.sqlite"))
    probe = APIRouter()

    @probe.get("/probe/staff")
    def staff_only(who: StaffDep) -> dict:
        return {"name": who.name, "role": who.role}

    @probe.get("/probe/admin")
    def admin_only(who: AdminDep) -> dict:
        return {"name": who.name}

    app.include_router(probe)
    with TestClient(app) as c:
        yield c, tokens


def test_bearer_tokens_401_403_and_roles(client, caplog: pytest.LogCaptureFixture) -> None:
    c, tokens = client
    staff, admin = tokens.create("maria", "staff"), tokens.create("boss", "admin")
    caplog.set_level(logging.DEBUG)
    r = c.get("/probe/staff")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer") and "Bearer TOKEN" in r.json()["detail"]
    r = c.get("/probe/staff", headers={"Authorization": "Bearer " + staff + "nope"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"] and "not valid" in r.json()["detail"]
    r = c.get("/probe/staff", headers={"Authorization": "Basic " + staff})
    assert r.status_code == 401 and "Bearer TOKEN" in r.json()["detail"]
    assert c.get("/probe/staff", headers={"Authorization": f"Bearer {staff}"}).json() == {"name": "maria", "role": "staff"}
    assert c.get("/probe/staff", headers={"Authorization": f"Bearer {admin}"}).json() == {"name": "boss", "role": "admin"}
    r = c.get("/probe/admin", headers={"Authorization": f"Bearer {staff}"})
    assert r.status_code == 403 and "needs admin" in r.json()["detail"]
    assert c.get("/probe/admin", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    tokens.revoke("maria")
    assert c.get("/probe/staff", headers={"Authorization": f"Bearer {staff}"}).status_code == 401
    assert staff not in caplog.text and admin not in caplog.text  # never logged
    assert "refused a bearer token" in caplog.text


def test_cli_token_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "t" / "tokens.sqlite"
    monkeypatch.setenv("CAMPERHUB_TOKENS_PATH", str(path))
    assert cli_main(["token", "create", "maria", "--role", "staff"]) == 0
    out = capsys.readouterr().out
    token = next(line.strip() for line in out.splitlines() if len(line.strip()) >= 43 and " " not in line.strip())
    assert TokenStore(path).verify(token).name == "maria"
    assert cli_main(["token", "create", "maria", "--role", "admin"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert cli_main(["token", "list"]) == 0
    listed = capsys.readouterr().out
    assert "maria" in listed and "staff" in listed and token not in listed
    assert cli_main(["token", "revoke", "maria"]) == 0
    assert cli_main(["token", "revoke", "maria"]) == 1
    assert TokenStore(path).verify(token) is None
    with pytest.raises(SystemExit):
        cli_main(["token", "create", "x", "--role", "root"])
