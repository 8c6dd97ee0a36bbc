"""Property-based requests against every path of the app's own OpenAPI document (schemathesis).

Hypothesis generates parameters and bodies from the schema for each operation, and
each case is sent twice, with a staff token and without one. Every answer must keep
the document's promises: no 500 (a crash), a body that matches its response schema
and the content type it declares, and on the fleet routes a status code the
operation documents; the staff token is never refused but on the admin route. The only
5xx allowed is the documented 503 of ``POST .../mode`` (this app has no broker).

The server-sent-event streams are left out: they never end, so a request to one
would not return. The store is a real SQLite store with a camper in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import settings as api_settings
from tests.api.test_fleet_api import seed
from tests.api.test_page_browser import Server

pytestmark = pytest.mark.timeout(600)

EXAMPLES = 25


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """The app under uvicorn on a loopback port (its lifespan runs), with a camper and a staff token."""
    monkeypatch.setenv("CAMPERHUB_ALERTS_PATH", str(tmp_path / "alerts.sqlite"))
    monkeypatch.setenv("CAMPERHUB_AUDIT_PATH", str(tmp_path / "audit.sqlite"))
    store = SqliteStore(tmp_path / "store.sqlite")
    seed(store)
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    token = tokens.create("fuzz", "staff")
    with Server(create_app(api_settings(), store, tokens=tokens)) as server:
        yield f"http://127.0.0.1:{server.port}", token


CHECKS = [response_schema_conformance, content_type_conformance]
#: Routes whose every status code must be documented too (the fleet API; others' gaps are reported, not fuzzed here).
STRICT = re.compile(r"^/api/v1/(fleet|campers/\{camper\}/mode)")


def _check(case: schemathesis.Case, base_url: str, token: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        where = f"{case.method} {case.formatted_path} {case.query or ''}"
        assert response.status_code != 500, f"{where}: {response.text[:300]}"
        if response.status_code >= 500:
            assert response.status_code == 503 and case.path.endswith("/mode"), (where, response.status_code, response.text[:300])
        case.validate_response(response, checks=CHECKS + ([status_code_conformance] if STRICT.match(case.path) else []))
        if headers and "staff" in (case.operation.tags or []):  # the staff token opens every staff route but the admin one
            assert response.status_code != 401 and (response.status_code != 403 or case.path == "/api/v1/fleet/audit"), (where, response.text[:300])


def test_every_operation_keeps_its_openapi_promises(served: tuple[str, str]) -> None:
    base_url, token = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(path_regex=r"/stream$")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            _check(case, base_url, token)

        run()


def test_the_fuzzed_document_covers_the_fleet_api(served: tuple[str, str]) -> None:
    """The fuzzing above reaches every fleet route (a route left out of the document would escape it)."""
    schema = schemathesis.openapi.from_url(f"{served[0]}/openapi.json")
    assert {"/api/v1/fleet", "/api/v1/fleet/{camper}/battery", "/api/v1/fleet/alerts", "/api/v1/fleet/{camper}/positions",
            "/api/v1/fleet/{camper}/series", "/api/v1/campers/{camper}/mode"} <= set(schema.raw_schema["paths"])
