"""Where is the camper? The whole path on real parts (issue 5):

    GPS route simulator (NMEA over TCP, sped up)
      -> a real gpsd reading it as a ``tcp://`` source
      -> ``camperhub edge`` (its own process: smoother, dwell detector, throttle, durable queue)
      -> a real Mosquitto
      -> the ingest (in this process) -> the SQLite store
      -> the API (``create_app`` over the same file, the demo schedule, "now" = the simulated time)
      -> ``GET /api/v1/campers/varese-1/location``

The simulated tour is the demo's: parked at Bustecche, then the leg to San
Fermo. The day is a past Monday (the receiver's clock says so; the agent
stamps positions with GPS time), the demo week has Bustecche 09:00-12:00 and
San Fermo 14:30 that day, so the camper is parked during a scheduled visit,
and drives off within the ten minutes of grace after it: the public view must
then say "on the way to San Fermo" with an ETA, never where the camper is.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.settings import ApiSettings
from camperhub.broker.ingest import Ingest, IngestSettings
from camperhub.contract import Stream
from camperhub.edge.position_filter import haversine_m
from camperhub.edge.sim.gps_route import DEFAULT_DWELL_S, GpsRouteServer, start_gps_simulator
from camperhub.edge.stops import DEMO_STOPS_FILE, load_stops
from camperhub.netutil import free_port
from camperhub.schedule_io import ScheduleRepository, load_schedule_yaml
from camperhub.store.sqlite import SqliteStore
from tests.e2e.pipeline import Service, clean_env, wait_for
from tests.fixtures.gpsd import GpsdServer
from tests.fixtures.mosquitto import MosquittoBroker

pytestmark = pytest.mark.timeout(120)

CAMPER = "varese-1"
URL = f"/api/v1/campers/{CAMPER}/location"
SCHEDULE_FILE = DEMO_STOPS_FILE.parent / "schedule.yaml"
STOPS = load_stops()
BUSTECCHE, SAN_FERMO = STOPS[0], STOPS[1]  # the tour's first leg (stops.yaml order)
#: Monday 2026-11-23: Bustecche 09:00-12:00 local (08:00-11:00 UTC), San Fermo from 14:30 local.
VISIT_END = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
#: Simulated seconds per real second.
SPEED = 8.0
#: The arrival dwell on the camper (simulated seconds; the default is two minutes).
ARRIVAL_DWELL_S = 20


class TcpSourceGpsd(GpsdServer):
    """The private test gpsd, reading the route simulator as a ``tcp://`` source instead of its PTY."""

    def __init__(self, workdir: Path, source: str) -> None:
        super().__init__(workdir)
        self.device = source


def edge_yaml(mqtt_url: str, gpsd: str, queue: Path) -> str:
    """No devices; the GPS through gpsd; positions often enough for a sped-up tour.

    The smoother and the throttle run on the agent's boot clock, which goes
    SPEED times slower than the simulated one: the jump filter must allow
    SPEED x town speed, and the heartbeat of a parked camper is one real second.
    """
    return f"""camper: {CAMPER}
mqtt:
  url: {mqtt_url}
devices: []
gps:
  gpsd: {gpsd}
position:
  stops_file: {DEMO_STOPS_FILE}
  min_distance_m: 20
  min_interval_s: 0.5
  max_interval_s: 1
  fast_min_interval_s: 0.5
  max_speed_kmh: 1000
queue:
  path: {queue}
  commit_interval_s: 0.2
clock:
  trust_system: always
modes:
  normal: {{batch_interval_s: 0, compress: true, status_interval_s: 5}}
"""


@dataclass
class Tour:
    """The running pipeline of one test and what the API answered."""

    sim: GpsRouteServer
    store: SqliteStore  # a reader of the ingest's store file
    client: TestClient
    agent: Service
    ingest: Ingest
    answers: list[tuple[datetime, str]] = field(default_factory=list)  # (simulated now, body)

    def now(self) -> datetime:
        """The simulated time: that of the newest receiver cycle sent."""
        return self.sim.time_of(max(0, self.sim.cycles - 1))

    def location(self) -> dict[str, Any]:
        r = self.client.get(URL)
        assert r.status_code == 200, r.text
        self.answers.append((self.now(), r.text))
        return r.json()

    def poll_until(self, cond, timeout_s: float, what: str) -> dict[str, Any]:
        """GET /location every 0.2 s until ``cond(view)``; that view."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.location()
            if cond(view):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last view {view}\n{self.diagnostics()}")
            time.sleep(0.2)

    def positions(self) -> list[tuple[int, float, float, float]]:
        """Every stored position: (ts_ms, lat, lon, speed_kmh)."""
        frame = self.store.series(CAMPER, Stream.POSITION, ["lat", "lon", "speed_kmh"], datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
        return [(int(ts.timestamp() * 1000), *row) for ts, row in zip(frame.index, frame.itertuples(index=False))]

    def events(self) -> list[tuple[int, str, str]]:
        frame = self.store.series(CAMPER, Stream.EVENT, ["kind", "detail"], datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
        return [(int(ts.timestamp() * 1000), kind, detail) for ts, (kind, detail) in zip(frame.index, frame.itertuples(index=False))]

    def diagnostics(self) -> str:
        return f"simulated now {self.now().isoformat()}, ingest {dict(self.ingest.counters)}\n{self.agent.log_tail(25)}"


@contextmanager
def tour(mosquitto: MosquittoBroker, tmp_path: Path, *, offset_s: float) -> Iterator[Tour]:
    """The pipeline with the simulated tour ``offset_s`` in, at ``VISIT_END + offset_s - DEFAULT_DWELL_S - 30 s``
    (the camper leaves Bustecche 30 simulated seconds after the visit's end)."""
    start = VISIT_END + timedelta(seconds=30 + offset_s - DEFAULT_DWELL_S)
    path = tmp_path / "store.sqlite"
    schedules = ScheduleRepository(tmp_path / "schedules.sqlite")
    schedules.save(load_schedule_yaml(SCHEDULE_FILE))
    camper_creds = mosquitto.add_camper(CAMPER)
    ingest_creds = mosquitto.add_service("ingest", "ingest")
    with ExitStack() as stack:
        ingest_store = SqliteStore(path)
        stack.callback(ingest_store.close)
        ingest = Ingest(IngestSettings(mqtt_url=mosquitto.url(ingest_creds), batch_max_wait_s=0.1), ingest_store)
        ingest.start()
        stack.callback(ingest.stop)
        assert ingest.subscribed.wait(10), "the ingest did not subscribe"

        sim = start_gps_simulator(f"tcp://127.0.0.1:{free_port()}", STOPS, speed=SPEED, start=start, offset_s=offset_s)
        stack.callback(sim.stop)
        gpsd = stack.enter_context(TcpSourceGpsd(tmp_path / "gpsd", sim.listen))

        config = tmp_path / "edge.yaml"
        config.write_text(edge_yaml(mosquitto.url(camper_creds), gpsd.address, tmp_path / "queue.sqlite"), encoding="utf-8")
        agent = Service("agent", [sys.executable, "-m", "camperhub.cli", "edge", "--config", str(config)],
                        clean_env(CAMPERHUB_ARRIVAL_DWELL_S=str(ARRIVAL_DWELL_S)), tmp_path)
        stack.callback(agent.stop)
        agent.start(ready="connected to")

        store = SqliteStore(path)
        stack.callback(store.close)
        holder: dict[str, Tour] = {}
        api_settings = ApiSettings(live=False, rate_burst=10_000, rate_per_s=10_000, sse_ping_s=0)
        app = create_app(api_settings, SqliteStore(path), schedules=schedules, clock=lambda: holder["tour"].now())
        client = stack.enter_context(TestClient(app))
        holder["tour"] = t = Tour(sim, store, client, agent, ingest)
        yield t


def _coordinates(value: Any) -> Iterator[tuple[float, float]]:
    """Every (lat, lon) pair anywhere in a JSON answer."""
    if isinstance(value, dict):
        if "lat" in value or "lon" in value:
            yield value.get("lat"), value.get("lon")
        for v in value.values():
            yield from _coordinates(v)
    elif isinstance(value, list):
        for v in value:
            yield from _coordinates(v)


def _assert_private(t: Tour) -> int:
    """No answer holds a coordinate that is not a stop's, nor any stored raw position in any spelling;
    the number of raw (not snapped) positions checked."""
    stops = {(s.lat, s.lon) for s in STOPS}
    published = {repr(c) for s in STOPS for c in (s.lat, s.lon)}
    raw = [(lat, lon) for _, lat, lon, _ in t.positions() if (lat, lon) not in stops]
    spellings = {
        text for lat, lon in raw for c in (lat, lon) for text in (repr(c), f"{c:.6f}", f"{c:.5f}", f"{c:.4f}")
        if text.rstrip("0") not in published  # a fix that rounds to a stop's published coordinate says nothing more
    }
    for at, body in t.answers:
        for pair in _coordinates(json.loads(body)):
            assert pair in stops, f"{at}: {pair} is not a stop's position: {body}"
        shown = [text for text in spellings if text in body]
        assert not shown, f"{at}: raw positions {shown} show in {body}"
    return len(raw)


def test_parked_at_the_stop_then_on_the_way_to_the_next_with_an_eta(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    # parked at Bustecche for 150 simulated s (19 real s) before the visit's end (+30 s), then off to San Fermo
    with tour(mosquitto, tmp_path, offset_s=DEFAULT_DWELL_S - 180) as t:
        leaves = t.sim.start_time + timedelta(seconds=180)
        assert leaves == VISIT_END + timedelta(seconds=30)

        # 1. at the stop, confirmed by a fix inside its geofence: the stop's position, not the fix
        at_stop = t.poll_until(lambda v: v["state"] == "in_service_at_stop" and v["confirmed"], 30, "a confirmed stop")
        assert t.now() < leaves, "the camper left before the API saw it parked: the machine is too slow for SPEED"
        assert at_stop["stop"]["id"] == "bustecche" and (at_stop["stop"]["lat"], at_stop["stop"]["lon"]) == (BUSTECCHE.lat, BUSTECCHE.lon)
        assert at_stop["until_local"] == "12:00" and at_stop["services"] == ["maintenance_desk", "paperwork_help"]

        # 2. the arrival, detected on the camper by dwell, reached the store with the time it happened
        wait_for(lambda: any(k == "arrival" for _, k, _ in t.events()), 20, "the arrival event in the store", t.diagnostics)
        arrivals = [(ts, d) for ts, k, d in t.events() if k == "arrival"]
        assert [d for _, d in arrivals] == ["bustecche"]
        assert t.sim.start_time.timestamp() * 1000 <= arrivals[0][0] < leaves.timestamp() * 1000
        parked = [p for p in t.positions() if p[0] < leaves.timestamp() * 1000]
        assert parked and all((lat, lon) == (BUSTECCHE.lat, BUSTECCHE.lon) for _, lat, lon, _ in parked)  # snapped on the camper

        # 3. it drives off after the visit (within its grace): on the way to San Fermo, with an ETA
        way = t.poll_until(lambda v: v["state"] == "on_the_way", 40, "on the way")
        now = t.now()
        assert leaves < now < VISIT_END + timedelta(minutes=10)
        assert way["to"]["id"] == "san-fermo" and (way["to"]["lat"], way["to"]["lon"]) == (SAN_FERMO.lat, SAN_FERMO.lon)
        assert way["scheduled_start_local"] == "14:30" and way["services"] == ["arrears_mediation", "cultural_mediation"]
        eta = datetime.fromisoformat(way["eta_utc"].replace("Z", "+00:00"))
        as_of = datetime.fromisoformat(way["as_of_utc"].replace("Z", "+00:00"))
        # ~3.3 km left, on roads 1.3 x the great circle, at the recent average speed (which still holds the parked
        # minutes, clamped to at least 12 km/h): minutes, not the 3.5 hours until the scheduled 14:30
        assert timedelta(minutes=2) < eta - as_of < timedelta(minutes=30), way
        assert way["eta_uncertainty_min"] >= 1 and way["eta_local"] == eta.astimezone(datetime.fromisoformat(way["eta_local_time"]).tzinfo).strftime("%H:%M")
        # the camper really was beyond the stop's exit radius (the stored trail says so)
        newest = max(t.positions())
        assert haversine_m(newest[1], newest[2], BUSTECCHE.lat, BUSTECCHE.lon) > BUSTECCHE.radius_m and newest[3] > 20

        assert _assert_private(t) >= 1, "no raw position between stops was stored: the privacy check checked nothing"
        assert t.ingest.counters["dead_letters"] == 0, dict(t.ingest.counters)


def test_a_raw_position_between_stops_never_appears_in_any_location_answer(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    # already 30 simulated s (some 300 m) on the leg to San Fermo, inside the grace after Bustecche's visit
    with tour(mosquitto, tmp_path, offset_s=DEFAULT_DWELL_S + 30) as t:
        wait_for(lambda: len(t.positions()) >= 3, 30, "positions along the leg in the store", t.diagnostics)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            view = t.location()
            assert view["state"] == "on_the_way" and view["to"]["id"] == "san-fermo", view
            assert "eta_utc" in view and "stop" not in view
            time.sleep(0.1)
        positions = t.positions()
        assert all(haversine_m(lat, lon, s.lat, s.lon) > s.radius_m for _, lat, lon, _ in positions for s in STOPS)
        assert len({(lat, lon) for _, lat, lon, _ in positions}) >= 5
        assert _assert_private(t) == len(positions)
        assert len(t.answers) >= 20
