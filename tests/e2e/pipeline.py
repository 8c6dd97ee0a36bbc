"""The whole pipeline on real parts, for the end-to-end fault tests ("never lose a sample").

    pymodbus simulator (in this process, the physical model)
      -> `camperhub edge --config FILE` (its own process: it can be SIGKILLed)
      -> Mosquitto (fixture; optionally through tests/fixtures/tcpproxy.py)
      -> `camperhub ingest` (its own process, a stable client id: its persistent session survives a kill)
      -> InfluxDB (fixture)

:class:`Pipeline` starts and stops the parts and answers the one question of
these tests: is every reading taken in InfluxDB exactly once, in order?
Every reading is numbered by the agent (``seq``, committed with the reading
in the agent's queue file), so :meth:`Pipeline.finish` can check that the
``seq`` of the ``energy`` points of the camper, in time order, is exactly
``1..N`` and that ``N`` is the last ``seq`` the agent committed. Points with
the same timestamp and tags overwrite each other in InfluxDB, so a reading
that came twice under one ``ts`` is one point (what the idempotent writes
promise); a reading that came twice under two timestamps would show as a
``seq`` out of place.

Nothing here reaches into the product's internals: the agent is driven by its
YAML config and signals, the ingest by its ``CAMPERHUB_*`` environment, and
the agent's queue file is read with plain SQLite (table ``seqs``) or
``DurableQueue.all_rows`` once the agent has stopped.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from camperhub.broker.provision import Credentials
from camperhub.contract import Stream
from camperhub.edge.queue import DurableQueue
from camperhub.edge.sim.modbus_server import ModbusSimulator
from camperhub.edge.sim.runner import start_simulator
from camperhub.netutil import free_port
from tests.fixtures.influxdb import InfluxServer
from tests.fixtures.mosquitto import MosquittoBroker

CAMPER = "varese-1"
#: The simulated camper: a sunny June morning in Varese, the GX's system service (2 Modbus reads a cycle).
SIM_MAP, SIM_START = "victron-gx", "2026-06-21T08:30:00+00:00"
#: Edge defaults for these tests: fast polls and commits, normal mode's gzip'd batches every second.
INTERVAL_S = 0.2
COMMIT_INTERVAL_S = 0.2


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, diagnostics: Callable[[], str] = lambda: "") -> None:
    """Poll ``cond`` every 50 ms; AssertionError naming ``what`` (and the diagnostics) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{diagnostics()}")
        time.sleep(0.05)


class Service:
    """One ``camperhub`` process with its own log file; started again after a kill under the same name."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, ready: str | None = None, timeout_s: float = 20.0) -> Service:
        """Start; with ``ready``, wait until the log shows that text once more than before."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        before = self.log_text().count(ready) if ready else 0
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        if ready:
            self.wait_log(ready, before + 1, timeout_s)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_log(self, text: str, count: int = 1, timeout_s: float = 20.0) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.log_text().count(text) >= count

        wait_for(seen, timeout_s, f"{text!r} x{count} in the {self.name} log", self.log_tail)

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, the way systemd stops it; its exit status (None if it was not running)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM within {timeout_s} s:\n{self.log_tail()}") from None
        return proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.name} log tail:\n" + "\n".join(self.log_text().splitlines()[-lines:])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any CAMPERHUB_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPERHUB_")}
    env.update(extra)
    return env


@dataclass
class EdgeSettings:
    """What the tests vary in the edge config."""

    mqtt_url: str
    interval_s: float = INTERVAL_S
    commit_interval_s: float = COMMIT_INTERVAL_S
    keepalive_s: int = 30
    batch_interval_s: float = 1.0
    compress: bool = True
    devices: bool = True
    resend_after_s: float = 5.0  # a reading the broker took but the server never confirmed is sent again


def edge_yaml(s: EdgeSettings, modbus_port: int | None, queue_path: Path) -> str:
    devices = (
        f"""devices:
  - map: {SIM_MAP}
    transport: tcp://127.0.0.1:{modbus_port}
    interval_s: {s.interval_s}
    timeout_s: 0.5
    retries: 0
"""
        if s.devices
        else "devices: []\n"
    )
    return f"""camper: {CAMPER}
mqtt:
  url: {s.mqtt_url}
  keepalive_s: {s.keepalive_s}
{devices}queue:
  path: {queue_path}
  commit_interval_s: {s.commit_interval_s}
  resend_after_s: {s.resend_after_s}
clock:
  trust_system: always
modes:
  normal: {{batch_interval_s: {s.batch_interval_s}, compress: {str(s.compress).lower()}, status_interval_s: 5}}
"""


# -- the agent's queue file ----------------------------------------------------------


def committed_last_seq(queue_path: Path) -> int:
    """The last energy ``seq`` committed to the agent's queue file (0 before the first commit).

    Read-only (no checkpoint, no recovery written back): safe while the agent
    runs, and leaves a killed agent's file exactly as the kill left it.
    """
    if not queue_path.exists():
        return 0
    db = sqlite3.connect(f"file:{queue_path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT last FROM seqs WHERE stream=?", (Stream.ENERGY.value,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        db.close()
    return 0 if row is None else int(row[0])


def queued_rows(queue_path: Path) -> int:
    """Energy rows in a (running) agent's queue file, read-only."""
    db = sqlite3.connect(f"file:{queue_path}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM samples WHERE stream='energy'").fetchone()[0])
    finally:
        db.close()


def integrity(queue_path: Path) -> str:
    """SQLite's integrity check of the queue file, read-only ("ok" when sound)."""
    db = sqlite3.connect(f"file:{queue_path}?mode=ro", uri=True, timeout=5)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def queued_energy_seqs(queue_path: Path) -> list[int]:
    """The energy seqs still in a stopped agent's queue."""
    q = DurableQueue(queue_path)
    try:
        return [r.seq for r in q.all_rows(Stream.ENERGY)]
    finally:
        q.close()


# -- InfluxDB ----------------------------------------------------------------------------


def influx_rows(server: InfluxServer, db: str, q: str) -> list[list]:
    """Every row of a one-series InfluxQL answer (chunked: no row limit), as lists [time_ms, ...]."""
    params = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms", "chunked": "true", "chunk_size": "20000"})
    token = base64.b64encode(f"{server.admin_user}:{server.admin_password}".encode()).decode()
    req = urllib.request.Request(f"{server.url_without_credentials}/query?{params}", headers={"Authorization": f"Basic {token}"})
    rows: list[list] = []
    with urllib.request.urlopen(req, timeout=10) as resp:
        for line in resp:
            if not line.strip():
                continue
            chunk = json.loads(line)
            for result in chunk.get("results", []):
                if result.get("error"):
                    if "database not found" in result["error"]:
                        return []
                    raise AssertionError(f"InfluxDB: {result['error']}")
                for series in result.get("series", []):
                    rows += series["values"]
            if chunk.get("error"):
                raise AssertionError(f"InfluxDB: {chunk['error']}")
    return rows


# -- the pipeline --------------------------------------------------------------------------


class Pipeline:
    """Simulator, agent, broker, ingest and InfluxDB of one test; :meth:`close` stops what it started."""

    def __init__(self, broker: MosquittoBroker, influx: InfluxServer, workdir: Path) -> None:
        self.broker = broker
        self.influx = influx
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.db = f"e2e_{uuid.uuid4().hex[:10]}"
        self.camper_creds: Credentials = broker.add_camper(CAMPER)
        self.ingest_creds: Credentials = broker.add_service("ingest", "ingest")
        self.queue_path = workdir / "edge" / "queue.sqlite"
        self.sim: ModbusSimulator | None = None
        self.modbus_port: int | None = None
        self.ingest_service: Service | None = None
        self.agents: list[Service] = []

    # -- parts ------------------------------------------------------------------------
    @property
    def broker_url(self) -> str:
        """The camper's own MQTT URL, straight to the broker."""
        return self.broker.url(self.camper_creds)

    def start_sim(self) -> ModbusSimulator:
        self.modbus_port = free_port()
        self.sim = start_simulator(f"tcp://127.0.0.1:{self.modbus_port}", [(SIM_MAP, None)], start=SIM_START)
        return self.sim

    def start_ingest(self, **settings: str) -> Service:
        """`camperhub ingest` on InfluxDB; ``settings`` are CAMPERHUB_INGEST_* (e.g. BATCH_MAX_WAIT_S="1")."""
        env = clean_env(
            CAMPERHUB_MQTT_URL=self.broker.url(self.ingest_creds),
            CAMPERHUB_STORE="influx",
            CAMPERHUB_INFLUX_URL=self.influx.url,
            CAMPERHUB_INFLUX_DB=self.db,
            CAMPERHUB_INFLUX_TIMEOUT_S="2",
            CAMPERHUB_ROLLUP_JOURNAL=str(self.workdir / "rollup-journal.sqlite"),
            CAMPERHUB_RAW_RETENTION_DAYS="0",
            CAMPERHUB_INGEST_CLIENT_ID="e2e-ingest",  # stable: the broker keeps its session across a kill
            CAMPERHUB_INGEST_RETRY_MAX_S="1",
            CAMPERHUB_INGEST_ROLLUP_EVERY_S="3600",
            CAMPERHUB_INGEST_RECEIPT_EVERY_S="0.5",  # well inside the agent's resend_after_s (5 s here)
            **{f"CAMPERHUB_INGEST_{k.upper()}": v for k, v in settings.items()},
        )
        if self.ingest_service is None:
            self.ingest_service = Service("ingest", [sys.executable, "-m", "camperhub.cli", "ingest"], env, self.workdir)
        self.ingest_service.env = env
        return self.ingest_service.start(ready="subscribed to")

    @property
    def ingest(self) -> Service:
        assert self.ingest_service is not None, "start_ingest() first"
        return self.ingest_service

    def start_agent(self, settings: EdgeSettings | None = None, *, name: str = "agent", wait_connected: bool = True) -> Service:
        """`camperhub edge --config FILE` as its own process (the queue file is the same for every run)."""
        settings = settings or EdgeSettings(self.broker_url)
        if settings.devices and self.modbus_port is None:
            self.start_sim()
        config = self.workdir / f"{name}.yaml"
        config.write_text(edge_yaml(settings, self.modbus_port, self.queue_path), encoding="utf-8")
        service = next((a for a in self.agents if a.name == name), None)
        if service is None:
            service = Service(name, [sys.executable, "-m", "camperhub.cli", "edge", "--config", str(config)], clean_env(), self.workdir)
            self.agents.append(service)
        return service.start(ready="connected to" if wait_connected else None)

    # -- what is where ------------------------------------------------------------------
    def committed(self) -> int:
        return committed_last_seq(self.queue_path)

    def stored(self) -> tuple[int, int]:
        """(number of energy points of the camper, highest seq among them) in InfluxDB."""
        rows = influx_rows(self.influx, self.db, f"""SELECT COUNT("seq"), MAX("seq") FROM "energy" WHERE "camper"='{CAMPER}'""")
        return (int(rows[0][1]), int(rows[0][2])) if rows else (0, 0)

    def points(self, fields: str = '"seq"') -> list[list]:
        """Every energy point of the camper in time order: [ts_ms, seq, ...]."""
        return influx_rows(self.influx, self.db, f"""SELECT {fields} FROM "energy" WHERE "camper"='{CAMPER}'""")

    def diagnostics(self) -> str:
        """Where the readings are and what the processes said last, for a failure message."""
        try:
            stored: object = self.stored()
        except OSError as exc:  # InfluxDB down or hung
            stored = f"unknown ({exc})"
        parts = [f"committed {self.committed()}, stored (count, max) {stored}"]
        services = [*self.agents, *([self.ingest_service] if self.ingest_service else [])]
        parts += [s.log_tail(15) for s in services]
        return "\n".join(parts)

    def wait_stored_past(self, seq: int, timeout_s: float = 30.0, what: str = "") -> None:
        """Until InfluxDB holds a reading with a seq above ``seq`` (readings flow end to end)."""
        wait_for(lambda: self.stored()[1] > seq, timeout_s, what or f"a reading past seq {seq} in InfluxDB", self.diagnostics)

    def wait_committed_past(self, seq: int, timeout_s: float = 20.0) -> None:
        """Until the agent has committed a reading with a seq above ``seq`` to its queue file."""
        wait_for(lambda: self.committed() > seq, timeout_s, f"the agent committing a reading past seq {seq}", self.diagnostics)

    def wait_flowing(self, readings: int = 3, timeout_s: float = 30.0, what: str = "readings flowing") -> None:
        """Until readings taken from now on reach InfluxDB: a seq ``readings`` past what is committed now."""
        self.wait_stored_past(self.committed() + readings, timeout_s, what)

    # -- the verdict -----------------------------------------------------------------------
    def finish(self, agent: Service | None = None, timeout_s: float = 60.0) -> list[list]:
        """Stop taking readings, deliver what is queued, and check exactly-once in order; the points.

        The agent is stopped as systemd would (SIGTERM); whatever it had
        committed and not yet sent is sent by one more run of the agent with
        no devices (it takes no readings, only empties its queue), as the next
        start would on the road. Then: InfluxDB holds seq 1..N in time order,
        each once, N is the last seq committed, and the queue is empty.
        """
        if agent is not None:
            code = agent.stop()
            assert code == 0, f"the agent exited with {code} on SIGTERM\n{agent.log_tail()}"
        last = self.committed()
        assert last > 0, "the agent committed no reading"
        drain = self.start_agent(EdgeSettings(self.broker_url, devices=False), name="agent-drain")
        self._wait_all_stored(last, timeout_s)
        # the agent forgets a reading at the server's receipt (cmd/stored), one commit after it came
        wait_for(lambda: queued_rows(self.queue_path) == 0, timeout_s, "the receipts emptying the queue", self.diagnostics)
        code = drain.stop()
        assert code == 0, f"the draining agent exited with {code}\n{drain.log_tail()}"
        assert self.committed() == last, "the draining run took no reading"
        assert queued_energy_seqs(self.queue_path) == [], "nothing is left in the queue"
        points = self.points()
        check_exactly_once_in_order(points, last)
        return points

    def _wait_all_stored(self, last: int, timeout_s: float, settle_s: float = 3.0) -> None:
        """Until InfluxDB holds ``last`` points with ``last`` the highest seq; or, once the highest
        seq is there, until nothing has changed for ``settle_s`` (a loss or a double: the exact
        check that follows says which)."""
        seen: tuple[int, int] | None = None
        since = time.monotonic()

        def done() -> bool:
            nonlocal seen, since
            now = self.stored()
            if now != seen:
                seen, since = now, time.monotonic()
            return now == (last, last) or (now[1] >= last and time.monotonic() - since >= settle_s)

        wait_for(done, timeout_s, f"all {last} readings in InfluxDB", self.diagnostics)

    def close(self) -> None:
        """Stop every process and thread this pipeline started; drop its databases."""
        errors = []
        for service in [*self.agents, *([self.ingest_service] if self.ingest_service else [])]:
            if service.running:
                service.kill()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        if self.influx.pid is not None and self.influx.ping():
            for db in (self.db, f"{self.db}_1m"):
                try:
                    self.influx.query(f'DROP DATABASE "{db}"')
                except RuntimeError as exc:
                    errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))


class MissingReadings(AssertionError):
    """Readings the agent committed are not in InfluxDB (a loss, as opposed to a double or a disorder)."""


def check_exactly_once_in_order(points: list[list], last_seq: int) -> None:
    """Points [ts, seq] in time order are seq 1..last_seq: none missing, none twice, in order.

    :class:`MissingReadings` when some are missing, AssertionError for any other deviation.
    """
    seqs = [int(p[1]) for p in points]
    if seqs == list(range(1, last_seq + 1)):
        return
    present = set(seqs)
    missing = sorted(set(range(1, last_seq + 1)) - present)
    twice = sorted(s for s, n in Counter(seqs).items() if n > 1)
    out_of_order = [(points[i][0], seqs[i], points[i + 1][0], seqs[i + 1]) for i in range(len(seqs) - 1) if seqs[i + 1] <= seqs[i]]
    raise (MissingReadings if missing else AssertionError)(
        f"InfluxDB holds {len(seqs)} readings, expected seq 1..{last_seq} once each in time order: "
        f"missing {missing[:20]}{'...' if len(missing) > 20 else ''} ({len(missing)}), "
        f"at two timestamps {twice[:20]} ({len(twice)}), out of order (ts, seq, next ts, next seq) {out_of_order[:10]}, "
        f"beyond the last committed {sorted(present - set(range(1, last_seq + 1)))[:20]}"
    )


@contextmanager
def pipeline(broker: MosquittoBroker, influx: InfluxServer, workdir: Path) -> Iterator[Pipeline]:
    """A :class:`Pipeline`, closed on the way out."""
    p = Pipeline(broker, influx, workdir)
    try:
        yield p
    finally:
        p.close()
