"""Ingest throughput, side by side with its anchors in the same run (ARCHITECTURE.md §11).

Run with ``scripts/run.sh test -m bench -s`` (deselected from the normal run):
prints samples per second of

* Mosquitto's own pub/sub rate (mosquitto_pub -> broker -> mosquitto_sub, QoS 1),
* InfluxDB's own batch write rate (5,000-point line-protocol batches to /write),
* the ingest: envelopes of 10 energy samples (15 fields each) published to
  Mosquitto, validated, batched and written to InfluxDB by `camperhub ingest`
  running as its own process, whose CPU use is read from /proc.

Figures go in the README; nothing here asserts a speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from camperhub import contract
from tests.fixtures.influxdb import InfluxServer
from tests.fixtures.mosquitto import MosquittoBroker, MqttTestClient

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

SAMPLES = 200_000
PER_ENVELOPE = 10
BASE_TS = int(time.time() * 1000) - SAMPLES * 1000


def _sample(i: int) -> dict:
    return {
        "seq": i, "ts": BASE_TS + i * 1000, "pv_voltage_v": 36.5, "pv_current_a": 5.25, "pv_power_w": 191.6,
        "battery_voltage_v": 13.31, "battery_current_a": 9.8, "battery_power_w": 130.4, "battery_soc_pct": 71.5,
        "battery_temp_c": 21.3, "load_current_a": 4.6, "load_power_w": 61.2, "charge_state": "bulk",
        "pv_yield_today_wh": 1234.0, "load_today_wh": 845.0, "controller_temp_c": 30.5, "shore_power": False,
    }


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _influx_count(server: InfluxServer, db: str) -> int:
    res = server.query('SELECT COUNT("seq") FROM "energy"', db=db)
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_bench_ingest_throughput(mosquitto: MosquittoBroker, tmp_path: Path):
    payloads = [
        contract.encode_envelope("bench-1", "energy", [_sample(i) for i in range(k, k + PER_ENVELOPE)])
        for k in range(1, SAMPLES + 1, PER_ENVELOPE)
    ]
    one_sample = contract.encode_envelope("bench-1", "energy", [_sample(1)])
    camper = mosquitto.add_camper("bench-1")
    ingest_creds = mosquitto.add_service("ingest", "ingest")
    watcher = mosquitto.add_service("watcher", "api")
    figures: dict[str, str] = {}

    # anchor 1: Mosquitto's own clients, one-sample messages, QoS 1
    n_msgs = 50_000
    lines = tmp_path / "lines.txt"
    lines.write_bytes((one_sample.decode() + "\n").encode() * n_msgs)
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-u", watcher.username, "-P", watcher.password,
         "-q", "1", "-t", "camperhub/v1/bench-1/energy", "-C", str(n_msgs)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    t0 = time.perf_counter()
    with lines.open("rb") as fh:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-u", camper.username, "-P", camper.password,
                        "-q", "1", "-t", "camperhub/v1/bench-1/energy", "-l"], stdin=fh, check=True, timeout=300)
    sub.wait(300)
    figures["mosquitto pub/sub (mosquitto_pub -> mosquitto_sub, QoS 1, 1 sample/msg)"] = f"{n_msgs / (time.perf_counter() - t0):,.0f} msg/s"

    with InfluxServer(tmp_path / "influx") as server:
        # anchor 2: InfluxDB's own batch write rate
        from camperhub.store.influx import InfluxStore
        from camperhub.store.base import StoredSample

        store = InfluxStore(server.url, "anchor")
        store.ping()
        store.write([StoredSample("warmup", contract.Stream.ENERGY, BASE_TS, {"seq": 0})])
        from influxdb_client import Point, WritePrecision

        batches = []
        for k in range(0, 100_000, 5000):
            batch_lines = []
            for i in range(k, k + 5000):
                s = _sample(i + 1)
                p = Point("energy").tag("camper", "anchor-1").time(s.pop("ts"), WritePrecision.MS)
                for key, v in s.items():
                    p = p.field(key, float(v) if isinstance(v, int) and key != "seq" and not isinstance(v, bool) else v)
                batch_lines.append(p.to_line_protocol())
            batches.append("\n".join(batch_lines))
        with httpx.Client(auth=(server.admin_user, server.admin_password)) as http:
            t0 = time.perf_counter()
            for body in batches:
                http.post(f"{server.url_without_credentials}/write", params={"db": "anchor", "precision": "ms"}, content=body).raise_for_status()
            figures["InfluxDB /write (5,000-point batches, 15 fields)"] = f"{100_000 / (time.perf_counter() - t0):,.0f} points/s"
        store.close()

        # the ingest, as its own process
        env = {**os.environ, "CAMPERHUB_MQTT_URL": mosquitto.url(ingest_creds), "CAMPERHUB_STORE": "influx",
               "CAMPERHUB_INFLUX_URL": server.url, "CAMPERHUB_INFLUX_DB": "camperhub"}
        log = open(tmp_path / "ingest.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "camperhub.cli", "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while b"subscribed" not in (tmp_path / "ingest.log").read_bytes():
                assert time.monotonic() < deadline, (tmp_path / "ingest.log").read_text()
                time.sleep(0.1)
            cpu0, t0 = _cpu_s(proc.pid), time.perf_counter()
            with MqttTestClient(mosquitto, camper) as pub:
                pub.connect()
                for i, payload in enumerate(payloads):
                    pub.client.publish("camperhub/v1/bench-1/energy", payload, qos=1)
                    if i % 200 == 0:
                        pub.client.loop(0)
                pub.pump_until(lambda: len(pub.client._out_messages) == 0, 300, "all publishes acknowledged")
            t_pub = time.perf_counter() - t0
            deadline = time.monotonic() + 600
            while _influx_count(server, "camperhub") < SAMPLES:
                assert time.monotonic() < deadline, "ingest did not store everything"
                time.sleep(0.2)
            elapsed, cpu = time.perf_counter() - t0, _cpu_s(proc.pid) - cpu0
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
        figures[f"publisher alone (paho, {PER_ENVELOPE} samples/msg)"] = f"{SAMPLES / t_pub:,.0f} samples/s"
        figures["ingest Mosquitto -> InfluxDB (end to end)"] = f"{SAMPLES / elapsed:,.0f} samples/s, ingest CPU {100 * cpu / elapsed:.0f} % of one core"
    print()
    for k, v in figures.items():
        print(f"| {k} | {v} |")


def test_bench_publish_to_queryable_latency(mosquitto: MosquittoBroker, tmp_path: Path):
    """100 campers x 1 Hz for 60 s through a real ingest into InfluxDB; latency from publish to queryable."""
    import statistics
    import threading

    import paho.mqtt.client as mqtt

    from camperhub.broker.provision import add_camper

    n_campers, seconds = 100, 30
    creds = [add_camper(f"bench-{i}", mosquitto.passwd_file, mosquitto.acl_file) for i in range(n_campers)]
    mosquitto.reload()
    ingest_creds = mosquitto.add_service("ingest", "ingest")
    results: dict[str, list[float]] = {}
    with InfluxServer(tmp_path / "influx") as server:
        for wait_s in ("0.1", "0.5"):
            db = f"lat_{wait_s.replace('.', '')}"
            env = {**os.environ, "CAMPERHUB_MQTT_URL": mosquitto.url(ingest_creds), "CAMPERHUB_STORE": "influx",
                   "CAMPERHUB_INFLUX_URL": server.url, "CAMPERHUB_INFLUX_DB": db, "CAMPERHUB_INGEST_BATCH_MAX_WAIT_S": wait_s}
            # the same client id for both runs: a persistent session of a first ingest that never comes
            # back keeps receiving its share of the shared subscription (queued for it by the broker)
            log_path = tmp_path / f"ingest-{db}.log"
            log = open(log_path, "wb")
            proc = subprocess.Popen([sys.executable, "-m", "camperhub.cli", "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)
            clients = []
            seen: dict[tuple[str, int], float] = {}
            stop = threading.Event()

            def poll() -> None:
                # what is queryable: new points, polled every 20 ms (the figures carry that resolution)
                last_ns = 0
                with httpx.Client(auth=(server.admin_user, server.admin_password)) as http:
                    while not stop.is_set():
                        r = http.get(f"{server.url_without_credentials}/query", params={
                            "db": db, "epoch": "ms", "q": f'SELECT "seq","camper" FROM "energy" WHERE time > {last_ns}'})
                        now = time.time()
                        for series in r.json()["results"][0].get("series", []):
                            for t, _seq, camper in series["values"]:
                                seen.setdefault((camper, t), now)
                                last_ns = max(last_ns, t * 1_000_000 - 5_000_000_000)
                        stop.wait(0.02)

            try:
                deadline = time.monotonic() + 30
                while b"subscribed" not in log_path.read_bytes():
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.1)
                for c in creds:
                    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{c.username}-{db}", protocol=mqtt.MQTTv5)
                    client.username_pw_set(c.username, c.password)
                    client.connect(mosquitto.host, mosquitto.port)
                    client.loop_start()
                    clients.append((c.username, client))
                poller = threading.Thread(target=poll)
                poller.start()
                sent: list[tuple[str, int]] = []
                t_start = time.monotonic()
                for tick in range(seconds):
                    for i, (name, client) in enumerate(clients):
                        ts = int(time.time() * 1000)
                        client.publish(f"camperhub/v1/{name}/energy", contract.encode_envelope(name, "energy", [{**_sample(tick + 1), "ts": ts}]), qos=1)
                        sent.append((name, ts))
                    time.sleep(max(0.0, t_start + tick + 1 - time.monotonic()))
                deadline = time.monotonic() + 30
                while len([k for k in sent if k in seen]) < len(sent) and time.monotonic() < deadline:
                    time.sleep(0.1)
                stop.set()
                poller.join(10)
            finally:
                stop.set()
                for _, client in clients:
                    client.loop_stop()
                    client.disconnect()
                proc.terminate()
                proc.wait(30)
                log.close()
            results[wait_s] = sorted((seen[k] * 1000 - k[1]) for k in sent if k in seen)
            results[wait_s + " lost"] = [len(sent) - len(results[wait_s])]
    print()
    for wait_s in ("0.1", "0.5"):
        lat = results[wait_s]
        q = statistics.quantiles(lat, n=100)
        print(f"| 100 campers x 1 Hz, batch_max_wait_s={wait_s} | p50 {q[49]:.0f} ms | p99 {q[98]:.0f} ms | {len(lat)} samples, {results[wait_s + ' lost'][0]} not seen |")
