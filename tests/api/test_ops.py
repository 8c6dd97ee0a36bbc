"""Operations endpoints and the app's plumbing: health, readiness, metrics, docs, JSON errors, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from camperhub.api.app import create_app
from camperhub.api.settings import ApiSettings
from camperhub.netutil import free_port
from camperhub.store.influx import InfluxStore
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import settings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sqlite_store(tmp_path: Path):
    return SqliteStore(tmp_path / "ops.sqlite")


def _down_influx(tmp_path: Path) -> InfluxStore:
    """A real InfluxStore whose server is not there (nothing listens on the port)."""
    return InfluxStore(f"http://127.0.0.1:{free_port()}", database="camperhub", timeout_s=1.0, journal_path=tmp_path / "journal.sqlite")


def test_healthz_and_readyz(sqlite_store: SqliteStore) -> None:
    with TestClient(create_app(settings(), sqlite_store)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready", "store": "ok", "live": "off"}
        assert r.headers["cache-control"] == "no-store"


def test_readyz_on_influx(influx_store: InfluxStore) -> None:
    with TestClient(create_app(settings(), influx_store)) as client:
        assert client.get("/readyz").status_code == 200


def test_readyz_is_503_with_the_reason_when_the_store_is_down(tmp_path: Path) -> None:
    with TestClient(create_app(settings(), _down_influx(tmp_path))) as client:
        assert client.get("/healthz").status_code == 200  # alive all the same
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["detail"].startswith("store unavailable:")
        r = client.get("/api/v1/campers")
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and "unavailable" in r.json()["detail"]
        text = client.get("/metrics").text
        assert 'camperhub_api_store_errors_total{kind="StoreUnavailable"} 2.0' in text


def test_metrics_count_requests_by_route_template(sqlite_store: SqliteStore) -> None:
    with TestClient(create_app(settings(), sqlite_store)) as client:
        client.get("/api/v1/campers/nobody/energy/now")
        client.get("/api/v1/campers/other/energy/now")
        client.get("/no/such/page")
        r = client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert 'camperhub_api_requests_total{method="GET",route="/api/v1/campers/{camper}/energy/now",status="404"} 2.0' in r.text
        assert 'route="(unmatched)",status="404"' in r.text
        assert "camperhub_api_request_duration_seconds_bucket" in r.text and "camperhub_api_sse_clients 0.0" in r.text


def test_docs_and_openapi(sqlite_store: SqliteStore) -> None:
    with TestClient(create_app(settings(), sqlite_store)) as client:
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
        assert spec["info"]["title"] == "Camper Hub API"
        assert "/api/v1/campers/{camper}/energy/series" in spec["paths"]
        r = client.get("/nowhere")
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_the_lifespan_closes_the_store(sqlite_store: SqliteStore) -> None:
    with TestClient(create_app(settings(), sqlite_store)):
        pass
    with pytest.raises(Exception):
        sqlite_store.campers()


def test_cors_is_off_by_default_and_on_when_configured(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    with TestClient(create_app(settings(), sqlite_store)) as client:
        assert "access-control-allow-origin" not in client.get("/api/v1/campers", headers={"Origin": "https://x.example"}).headers
    other = SqliteStore(tmp_path / "cors.sqlite")
    with TestClient(create_app(settings(cors_origins=["https://x.example"]), other)) as client:
        r = client.get("/api/v1/campers", headers={"Origin": "https://x.example"})
        assert r.headers["access-control-allow-origin"] == "https://x.example"


def test_settings_come_from_the_environment_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPERHUB_API_PORT", "8123")
    monkeypatch.setenv("CAMPERHUB_API_CORS_ORIGINS", '["https://a.example"]')
    s = ApiSettings()
    assert s.port == 8123 and s.cors_origins == ["https://a.example"] and s.rate_per_s == 5.0
    monkeypatch.setenv("CAMPERHUB_API_PORT", "0")
    with pytest.raises(ValidationError, match="port"):
        ApiSettings()
    monkeypatch.setenv("CAMPERHUB_API_PORT", "80")
    monkeypatch.setenv("CAMPERHUB_API_CORS_ORIGINS", '["x.example"]')
    with pytest.raises(ValidationError, match="CAMPERHUB_API_CORS_ORIGINS"):
        ApiSettings()


def test_camperhub_api_serves_with_settings_from_the_environment(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.fixtures.procs import terminate

    port = free_port()
    env = {**os.environ, "CAMPERHUB_SQLITE_PATH": str(tmp_path / "cli.sqlite"), "CAMPERHUB_API_LIVE": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "camperhub.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "camperhub api did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["store"] == "ok"
    finally:
        terminate(proc)
        if proc.stdout:
            proc.stdout.close()
    bad = subprocess.run(
        [sys.executable, "-m", "camperhub.cli", "api"], env={**env, "CAMPERHUB_API_RATE_PER_S": "-1"}, capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 78 and "CAMPERHUB_API_RATE_PER_S" in bad.stderr
