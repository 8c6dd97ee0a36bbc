"""API benchmarks (issue 5, ARCHITECTURE.md §11), each beside its anchor in the same run.

Run with ``.venv/bin/pytest -m bench -s tests/bench/test_bench_api.py`` (deselected from the
normal run); it prints Markdown rows for the README and asserts no speed.

* ``/location``: requests per second and p50/p99 latency at 500 concurrent
  connections (``wrk -t2 -c500``, Debian's wrk 4.1), beside a bare FastAPI
  endpoint returning a constant JSON served the same way. Both apps run as
  their own process under uvicorn (one worker, 127.0.0.1, tests/bench/api_server.py).
  The API reads a SQLite store holding the camper's status and recent
  positions and the demo schedule (firmware-config/demo/schedule.yaml).
* ``/location/stream``: N server-sent-events clients (1,000, 2,500, 5,000;
  ``CAMPERHUB_BENCH_SSE_STEPS``) held by one API process, from one client
  process (tests/bench/sse_clients.py, raw asyncio sockets). The camper
  publishes positions through a real Mosquitto that move it between a stop
  and the road (``in_service_at_stop`` <-> ``on_the_way``), so every one
  changes the public view; the delay from publish to receipt is measured per
  client and per update, and the API's RSS before and after connecting gives
  the memory per connection.

The rate limiter is set out of the way (CAMPERHUB_API_RATE_PER_S=10000,
CAMPERHUB_API_RATE_BURST=100000; every client is 127.0.0.1); wrk's count of
non-2xx answers is printed to show that nothing was throttled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from camperhub import contract
from camperhub.contract import Stream
from camperhub.netutil import free_port
from camperhub.schedule_io import ScheduleRepository, load_schedule_yaml
from camperhub.service_state import distance_m
from camperhub.store.base import StoredSample
from camperhub.store.sqlite import SqliteStore
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.procs import terminate

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCHEDULE = ROOT / "firmware-config" / "demo" / "schedule.yaml"
CAMPER = "varese-1"
CONNECTIONS = 500
DURATION_S = int(os.environ.get("CAMPERHUB_BENCH_DURATION_S", "20"))
SSE_STEPS = [int(n) for n in os.environ.get("CAMPERHUB_BENCH_SSE_STEPS", "1000,2500,5000").split(",")]
#: Seconds between connecting and the first update.
SETTLE_S = float(os.environ.get("CAMPERHUB_BENCH_SSE_SETTLE_S", "10"))
UPDATES_PER_STEP = int(os.environ.get("CAMPERHUB_BENCH_SSE_UPDATES", "6"))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _places() -> tuple[tuple[float, float], tuple[float, float]]:
    """(at a stop, on the road: over 1 km from every stop). The stop is the one of the window
    running now, if any: parked at another stop during a window the public view says "on
    the way" to the window's stop (camperhub/service_state.py), not "at" the other one."""
    sched = load_schedule_yaml(SCHEDULE)
    window = sched.current_visit(datetime.now(UTC))
    stop = window.stop if window is not None else sched.stops[0]
    for dlat in (0.015, -0.015, 0.03, -0.03):
        road = (stop.lat + dlat, stop.lon + 0.01)
        if all(distance_m(road[0], road[1], s.lat, s.lon) > 1000 for s in sched.stops):
            return (stop.lat, stop.lon), road
    raise AssertionError("no point far from every stop")


def _seed(tmp_path: Path) -> dict[str, str]:
    """A SQLite store with the camper's status and recent positions, the demo schedule; the API's env."""
    store_path, schedule_path = tmp_path / "store.sqlite", tmp_path / "schedules.sqlite"
    store = SqliteStore(store_path)
    now = _now_ms()
    _, road = _places()
    samples = [StoredSample(CAMPER, Stream.STATUS, now - 60_000, {"seq": 1, "state": "online", "in_service": True})]
    for i in range(10):  # the last minutes on the road, at 30 km/h
        samples.append(StoredSample(CAMPER, Stream.POSITION, now - 50_000 + 5_000 * i,
                                    {"seq": 2 + i, "lat": road[0] + 0.0004 * i, "lon": road[1], "fix": 3, "speed_kmh": 30.0}))
    store.write(samples)
    store.close()
    ScheduleRepository(schedule_path).save(load_schedule_yaml(SCHEDULE))
    return {
        **os.environ,
        "CAMPERHUB_STORE": "sqlite", "CAMPERHUB_SQLITE_PATH": str(store_path), "CAMPERHUB_SCHEDULE_PATH": str(schedule_path),
        "CAMPERHUB_TOKENS_PATH": str(tmp_path / "tokens.sqlite"),
        "CAMPERHUB_API_RATE_PER_S": "10000", "CAMPERHUB_API_RATE_BURST": "100000", "CAMPERHUB_API_LIVE": "false",
    }


class Server:
    """tests/bench/api_server.py as its own process on a free loopback port."""

    def __init__(self, kind: str, env: dict[str, str], log: Path, probe: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "api_server.py"), kind, str(self.port)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None and time.monotonic() < deadline, Path(log).read_text()
            try:
                if httpx.get(self.base + probe, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        terminate(self.proc, 10)
        self.log.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def _wrk(url: str, duration_s: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--timeout", "10s", "--latency", url],
                         capture_output=True, text=True, check=True, timeout=duration_s + 60).stdout
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        res[f"p{pct}"] = _ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: (.*)", out)
    res["errors"] = errors.group(1) if errors else "none"  # type: ignore[assignment]
    res["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    return res


def test_bench_location_rps(tmp_path: Path) -> None:
    assert shutil.which("wrk"), "wrk missing: run scripts/install-system-deps.sh (Debian package wrk)"
    env = _seed(tmp_path)
    url = f"/api/v1/campers/{CAMPER}/location"
    api = Server("camperhub", env, tmp_path / "api.log", url)
    bare = Server("bare", env, tmp_path / "bare.log", "/bare")
    try:
        assert httpx.get(api.base + url).json()["state"] != "not_in_service"
        rows = []
        for name, server, path in (("bare FastAPI endpoint (constant JSON)", bare, "/bare"), (f"`GET {url}`", api, url)):
            _wrk(server.base + path, 3)  # warm-up
            r = _wrk(server.base + path, DURATION_S)
            rows.append(f"| {name} | {r['rps']:,.0f} | {r['p50']:.0f} ms | {r['p99']:.0f} ms | "
                        f"{r['requests']:,} requests, {r['non2xx']} non-2xx, socket errors: {r['errors']} |")
    finally:
        api.stop()
        bare.stop()
    print(f"\n| {CONNECTIONS} concurrent connections, {DURATION_S} s (wrk -t2) | requests/s | p50 | p99 | |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


class Clients:
    """tests/bench/sse_clients.py as its own process."""

    def __init__(self, port: int, path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "sse_clients.py"), "127.0.0.1", str(port), path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer.startswith(("ok", "json")), answer
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        terminate(self.proc)


def _q(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def _gc_pauses(log: Path) -> list[tuple[float, float]]:
    """(when it ended, ms) of the garbage collections over 50 ms that api_server.py logged."""
    return [(float(m.group(2)), float(m.group(1)))
            for m in re.finditer(r"gc: generation \d took (\d+) ms at ([\d.]+)", log.read_text(errors="replace"))]


def test_bench_location_stream_clients(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    van = mosquitto.add_camper(CAMPER)
    api_user = mosquitto.add_service("camperhub-api", "api")
    env = {**_seed(tmp_path), "CAMPERHUB_API_LIVE": "true", "CAMPERHUB_MQTT_URL": mosquitto.url(api_user)}
    path = f"/api/v1/campers/{CAMPER}/location/stream"
    stop_pos, road = _places()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-van", protocol=mqtt.MQTTv5)
    pub.username_pw_set(van.username, van.password)
    seq = iter(range(100, 10**6))
    api = Server("camperhub", env, tmp_path / "api.log", f"/api/v1/campers/{CAMPER}/location")
    clients = None
    rows = []
    try:
        deadline = time.monotonic() + 15
        while httpx.get(api.base + "/readyz").json().get("live") != "connected":
            assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.1)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        status = contract.encode_envelope(CAMPER, "status", [{"seq": next(seq), "ts": _now_ms(), "state": "online", "in_service": True}])
        pub.publish(contract.topic(CAMPER, "status"), status, qos=1, retain=True).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while not any(c["status_time"] and c["in_service"] for c in httpx.get(api.base + "/api/v1/campers").json()["campers"]):
            assert time.monotonic() < deadline, "the live listener did not see the status"
            time.sleep(0.1)
        time.sleep(1)
        rss0 = api.rss_mb()
        clients = Clients(api.port, path)
        n_update = 0
        for n in SSE_STEPS:
            _, total, failed, secs = clients.ask(f"connect {n}").split()
            time.sleep(SETTLE_S)  # the full garbage collections that growing by thousands of connections sets off
            rss = api.rss_mb()
            published: list[tuple[float, str]] = []
            for _ in range(UPDATES_PER_STEP):
                n_update += 1
                at_stop = n_update % 2 == 1
                lat, lon = stop_pos if at_stop else road
                env_ = contract.encode_envelope(CAMPER, "position", [
                    {"seq": next(seq), "ts": _now_ms(), "lat": lat, "lon": lon, "fix": 3, "speed_kmh": 0.0 if at_stop else 30.0}])
                t_pub = time.time()
                pub.publish(contract.topic(CAMPER, "position"), env_, qos=1)
                published.append((t_pub, "in_service_at_stop" if at_stop else "on_the_way"))
                clients.ask(f"wait_after {t_pub} 60")
                time.sleep(0.5)
            data = json.loads(clients.ask("dump")[5:])
            delays, missed = [], 0
            per_update: list[list[float]] = [[] for _ in published]
            for times, states, _lost in data:
                # the first event after each publish that shows what it changed (a periodic refresh
                # that happened to fall in between shows the previous state and does not count)
                for k, (t_pub, want) in enumerate(published):
                    got = next((t for t, s in zip(times, states) if t >= t_pub and s == want), None)
                    if got is None:
                        missed += 1
                    else:
                        delays.append((got - t_pub) * 1000)
                        per_update[k].append(delays[-1])
            lost = sum(1 for *_, lo in data if lo)
            gcs = _gc_pauses(tmp_path / "api.log")
            print("  per update (first/median/last delivery; * = a garbage collection of the API process over 50 ms ended meanwhile):",
                  ", ".join(
                      f"{min(d):.0f}/{statistics.median(d):.0f}/{max(d):.0f} ms"
                      + ("*" if any(t_pub <= at <= t_pub + max(d) / 1000 for at, _ in gcs) else "")
                      for (t_pub, _), d in zip(published, per_update) if d), flush=True)
            rows.append(
                f"| {int(total):,} | {_q(delays, 50):.0f} ms | {_q(delays, 99):.0f} ms | {max(delays):.0f} ms | "
                f"{rss:.0f} MB ({rss0:.0f} MB with none) | {(rss - rss0) * 1024 / int(total):.1f} KB | "
                f"{float(secs):.0f} s, {failed} failed | {len(delays):,} deliveries, {missed} missed, {lost} streams ended |"
            )
            print(rows[-1], flush=True)
        clients.ask("close")
    finally:
        if clients is not None:
            clients.stop()
        pub.loop_stop()
        pub.disconnect()
        api.stop()
    gcs = _gc_pauses(tmp_path / "api.log")
    if gcs:
        print(f"\ngarbage collections of the API process over 50 ms: {len(gcs)}, longest {max(ms for _, ms in gcs):.0f} ms")
    print("\n| SSE clients on /location/stream | p50 | p99 | max | API RSS | per connection | connecting | |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
