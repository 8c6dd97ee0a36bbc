"""GET (public) and PUT (staff) /api/v1/campers/{camper}/schedule: JSON, YAML and CSV bodies, 422s that
say where, kept across restarts. Tokens are made at run time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.auth import TokenStore
from camperhub.schedule_io import ScheduleRepository, load_schedule_yaml
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import T0, settings

pytestmark = pytest.mark.timeout(30)

DEMO = Path(__file__).resolve().parents[2] / "firmware-config" / "demo"
URL = "/api/v1/campers/varese-1/schedule"
#: Monday 2026-05-04, 14:00 in Europe/Rome
NOW = datetime.fromtimestamp(T0 / 1000, UTC)


def _app(tmp_path: Path, tokens: TokenStore):
    return create_app(
        settings(), SqliteStore(tmp_path / "s.sqlite"), schedules=ScheduleRepository(tmp_path / "schedules.sqlite"),
        tokens=tokens, clock=lambda: NOW,
    )


@pytest.fixture
def staff(tmp_path: Path):
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    auth = {"Authorization": "Bearer " + tokens.create("maria", "staff")}
    with TestClient(_app(tmp_path, tokens)) as client:
        yield client, auth, tokens


def test_put_needs_a_staff_token(staff) -> None:
    client, auth, _ = staff
    body = load_schedule_yaml(DEMO / "schedule.yaml").model_dump_json()
    r = client.put(URL, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = client.put(URL, content=body, headers={"Content-Type": "application/json", "Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    assert client.get(URL).status_code == 404  # nothing was saved
    assert client.put(URL, content=body, headers={"Content-Type": "application/json", **auth}).status_code == 200


def test_json_put_then_public_get_with_local_times_and_kept_across_restarts(staff, tmp_path: Path) -> None:
    client, auth, tokens = staff
    assert client.get(URL).json()["detail"] == "camper 'varese-1' has no schedule"
    body = load_schedule_yaml(DEMO / "schedule.yaml").model_dump_json()
    r = client.put(URL, content=body, headers={"Content-Type": "application/json", **auth})
    assert r.status_code == 200, r.text
    assert r.json()["saved_by"] == "maria" and r.json()["visits"] == 14 and r.json()["stops"] == 6
    r = client.get(URL)
    assert r.status_code == 200 and r.headers["cache-control"].startswith("public, max-age=")
    got = r.json()
    assert got["from"] == "2026-05-04" and got["days"] == 14 and len(got["stops"]) == 6
    assert "radius_m" not in got["stops"][0]
    assert len(got["visits"]) == 28  # two weeks of the weekly plan, no exception falls in them
    first = got["visits"][0]
    assert first == {
        "stop": "bustecche", "stop_name": "Bustecche", "neighbourhood": "Bustecche", "date": "2026-05-04", "weekday": "mon",
        "start_local": "09:00", "end_local": "12:00",
        "start": {"utc": "2026-05-04T07:00:00Z", "local": "2026-05-04T09:00:00+02:00"},
        "end": {"utc": "2026-05-04T10:00:00Z", "local": "2026-05-04T12:00:00+02:00"},
        "services": ["maintenance_desk", "paperwork_help"],
    }
    assert got["visits"][-1]["date"] == "2026-05-16"  # the second Saturday; Sunday 17th has none
    assert len(got["exceptions"]) == 8 and got["exceptions"][0]["note"] == "Immacolata Concezione"
    assert len(client.get(URL, params={"days": 1}).json()["visits"]) == 2
    assert client.get(URL, params={"days": 0}).status_code == 422
    # a restart: a new app over the same files
    with TestClient(_app(tmp_path, tokens)) as again:
        assert again.get(URL).json() == got


def test_yaml_put_and_422_naming_the_line(staff) -> None:
    client, auth, _ = staff
    text = (DEMO / "schedule.yaml").read_text(encoding="utf-8")
    yaml_h = {"Content-Type": "application/yaml", **auth}
    assert client.put(URL, content=text.encode(), headers=yaml_h).status_code == 200
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if "stop: valle-olona, weekday: tue" in line)
    lines[n] = lines[n].replace("valle-olona", "nowhere")
    r = client.put(URL, content="\n".join(lines).encode(), headers=yaml_h)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert f"schedule.yaml:{n + 1}: visits[3].stop: unknown stop 'nowhere'" in detail, detail
    assert r.json()["errors"][0]["line"] == n + 1
    # the camper in the path must be the body's
    r = client.put("/api/v1/campers/varese-2/schedule", content=text.encode(), headers=yaml_h)
    assert r.status_code == 422 and "the body is the schedule of 'varese-1', the path names 'varese-2'" in r.json()["detail"]
    assert client.get("/api/v1/campers/varese-2/schedule").status_code == 404
    # the first upload is still there, whole
    assert client.get(URL).json()["visits"][3]["stop"] == "valle-olona"


def test_json_422_names_the_key_path_and_bad_requests(staff) -> None:
    client, auth, _ = staff
    data = load_schedule_yaml(DEMO / "schedule.yaml").model_dump(mode="json")
    data["stops"][0]["lat"] = 123
    r = client.put(URL, json=data, headers=auth)
    assert r.status_code == 422 and r.json()["detail"].startswith("stops.0.lat: ")
    assert r.json()["errors"][0]["loc"] == ["stops", 0, "lat"]
    data["stops"][0]["lat"] = 45.8
    data["visits"][1]["start"] = "09:30"  # Monday's second visit, now 09:30-17:30, overlaps the first (09:00-12:00)
    r = client.put(URL, json=data, headers=auth)
    assert r.status_code == 422 and "overlaps visits[0] on mon" in r.json()["detail"], r.text
    r = client.put(URL, content=b"not json", headers={"Content-Type": "application/json", **auth})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = client.put(URL, content=b"x", headers={"Content-Type": "text/plain", **auth})
    assert r.status_code == 415 and "application/yaml" in r.json()["detail"]
    assert client.put("/api/v1/campers/NOPE/schedule", json=data, headers=auth).status_code == 422


def test_csv_put_keeps_the_exceptions_and_422_names_line_and_column(staff) -> None:
    client, auth, _ = staff
    yaml_h = {"Content-Type": "application/yaml", **auth}
    assert client.put(URL, content=(DEMO / "schedule.yaml").read_bytes(), headers=yaml_h).status_code == 200
    csv_text = (DEMO / "schedule.csv").read_text(encoding="utf-8")
    csv_h = {"Content-Type": "text/csv; charset=utf-8", **auth}
    lines = csv_text.splitlines()
    tue = [lines[0]] + [line for line in lines[1:] if ",tue," in line]
    r = client.put(URL, content="\n".join(tue).encode(), headers=csv_h)
    # a kept exception that no longer matches a visit (San Fermo on Thursday 24 December) is named
    assert r.status_code == 422 and "exceptions.1: cancels nothing: no visit at 'san-fermo' on 2026-12-24" in r.json()["detail"]
    without_sat = [line for line in lines if ",sat," not in line]
    r = client.put(URL, content="\n".join(without_sat).encode(), headers=csv_h)
    assert r.status_code == 200, r.text
    assert r.json()["visits"] == 12 and r.json()["exceptions"] == 8  # the exceptions of the replaced schedule stay
    got = client.get(URL, params={"days": 7}).json()
    assert {v["weekday"] for v in got["visits"]} == {"mon", "tue", "wed", "thu", "fri"}
    bad = list(without_sat)
    bad[2] = bad[2].replace("14:30", "25:30")
    r = client.put(URL, content="\n".join(bad).encode(), headers=csv_h)
    assert r.status_code == 422 and r.json()["detail"].startswith("schedule.csv:3: start: "), r.text
