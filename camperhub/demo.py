"""``camperhub demo``: the whole system on embedded defaults, needing nothing but Python.

A simulated Victron GX (solar charger + battery monitor, Modbus TCP on a free
loopback port) fed by the physical model, the real edge agent polling it, an
embedded MQTT broker (amqtt, MQTT 3.1.1) in process, the ingest writing to the
embedded SQLite store, and a console that prints what reached the store.
The API and the pages join here in later issues.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import tempfile
from pathlib import Path
from typing import Any

from camperhub.broker.ingest import Ingest, IngestSettings
from camperhub.contract import Stream
from camperhub.netutil import free_port
from camperhub.settings import StoreSettings
from camperhub.store.base import StoredSample
from camperhub.store.sqlite import SqliteStore

log = logging.getLogger("camperhub.demo")
CAMPER = "varese-1"


def demo_edge_config(mqtt_port: int, modbus_port: int, folder: Path, gps_port: int | None = None) -> str:
    """The demo camper's edge config: the same file format as on a real Pi."""
    from camperhub.edge.stops import DEMO_STOPS_FILE

    return f"""\
camper: {CAMPER}
mqtt:
  url: mqtt://{CAMPER}:demo@127.0.0.1:{mqtt_port}
  protocol: "3.1.1"        # the embedded broker (amqtt) speaks 3.1.1 only
devices:
  - map: victron-gx-solarcharger
    transport: tcp://127.0.0.1:{modbus_port}
    interval_s: 1
    exclude_fields: [battery_voltage_v, battery_temp_c]   # the battery monitor measures these better
  - map: victron-gx-battery
    transport: tcp://127.0.0.1:{modbus_port}
    interval_s: 1
queue:
  path: {folder / "queue.sqlite"}
clock:
  trust_system: always     # a laptop has a real-time clock
modes:
  normal:
    batch_interval_s: 0    # no 4G to spare here: every reading at once
    status_interval_s: 30
""" + (f"""\
gps:
  nmea: tcp://127.0.0.1:{gps_port}    # the route simulator (no gpsd needed for the demo)
position:
  stops_file: {DEMO_STOPS_FILE}
""" if gps_port is not None else "")


async def _start_broker(port: int) -> Any:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        # Loopback only, demo only: any user name is accepted. The real broker
        # (Mosquitto, broker/) has per-camper passwords and an ACL.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
    }
    broker = Broker(config)
    await broker.start()
    return broker


def _format_energy(camper: str, sample: StoredSample) -> str:
    f = sample.fields

    def show(name: str, fmt: str) -> str:
        return fmt.format(f[name]) if f.get(name) is not None else "–"

    return (
        f"{camper} seq={int(f['seq']):<5} sun {show('pv_power_w', '{:6.0f} W')} | "
        f"battery {show('battery_voltage_v', '{:5.2f} V')} {show('battery_current_a', '{:+6.1f} A')} "
        f"{show('battery_soc_pct', '{:5.1f} %')} {show('charge_state', '{}'):<10} | "
        f"yield today {show('pv_yield_today_wh', '{:5.0f} Wh')}"
    )


async def _print_stored(store: SqliteStore, ingest: Ingest, stop: asyncio.Event) -> None:
    """Show what reached the store: the newest energy sample, once per new seq."""
    last_seq = None
    while not stop.is_set():
        sample = await asyncio.to_thread(store.latest, CAMPER, Stream.ENERGY)
        if sample is not None and sample.fields.get("seq") != last_seq:
            last_seq = sample.fields.get("seq")
            print(f"stored: {_format_energy(CAMPER, sample)}   [{ingest.counters['stored_samples']} samples in store]", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass


def _print_status(store: SqliteStore) -> None:
    status = store.latest(CAMPER, Stream.STATUS)
    if status is not None:
        fields = {k: v for k, v in status.fields.items() if k != "seq"}
        print(f"stored: {CAMPER} status: {json.dumps(fields)}", flush=True)


DEMO_SCHEDULE_FILE = Path(__file__).resolve().parent.parent / "firmware-config" / "demo" / "schedule.yaml"
#: How long the demo camper stays at each stop (real seconds): short, so that it is seen driving.
DEMO_DWELL_S = 180.0


def _demo_schedules() -> Any:
    """The schedule repository (CAMPERHUB_SCHEDULE_PATH); the demo camper gets the demo week unless it has a schedule."""
    from camperhub.schedule_io import ScheduleRepository, load_schedule_yaml

    repo = ScheduleRepository()
    if repo.get(CAMPER) is None:
        repo.save(load_schedule_yaml(DEMO_SCHEDULE_FILE))
        print(f"schedule: {DEMO_SCHEDULE_FILE} loaded for {CAMPER}", flush=True)
    return repo


async def _serve_api(port: int, mqtt_port: int, store_path: Path) -> tuple[Any, asyncio.Task[None]]:
    """The API (api/app.py) on http://127.0.0.1:PORT, live from the demo broker; its own store connection
    (the app closes the store it is given at shutdown)."""
    import uvicorn

    from pydantic import SecretStr

    from camperhub.api.app import create_app
    from camperhub.api.settings import ApiSettings
    from camperhub.settings import MqttClientSettings
    from camperhub.workshops.sessions import SessionSettings

    app = create_app(
        ApiSettings(host="127.0.0.1", port=port, mqtt_protocol="3.1.1"), SqliteStore(store_path),
        mqtt=MqttClientSettings(mqtt_url=f"mqtt://camperhub-api:demo@127.0.0.1:{mqtt_port}"),
        schedules=_demo_schedules(),
    )
    sessions = SessionSettings()
    if sessions.kiosk_key is None:
        # a key for this run only, so that the kiosk can start and stop workshop sessions (api/routers/sessions.py)
        sessions = sessions.model_copy(update={"kiosk_key": SecretStr(secrets.token_urlsafe(24))})
    app.state.session_settings = sessions
    print(f"workshop kiosk: http://127.0.0.1:{port}/workshop#kiosk-key={sessions.kiosk_key.get_secret_value()}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # Ctrl-C is the demo's
    return server, asyncio.create_task(server.serve(), name="api")


async def _run(duration_s: float | None, speed: float, store_path: Path, port: int) -> int:
    from camperhub.edge.agent import run_agent
    from camperhub.edge.config import EdgeConfig
    from camperhub.edge.sim.runner import start_simulator
    from camperhub.yamlconf import validate_yaml

    from camperhub.edge.sim.gps_route import start_gps_simulator
    from camperhub.edge.stops import DEMO_STOPS_FILE, load_stops

    mqtt_port, modbus_port, gps_port = free_port(), free_port(), free_port()
    store = SqliteStore(store_path)
    with tempfile.TemporaryDirectory(prefix="camperhub-demo-") as tmp:
        folder = Path(tmp)
        broker = await _start_broker(mqtt_port)
        sim = start_simulator(
            f"tcp://127.0.0.1:{modbus_port}", [("victron-gx-solarcharger", None), ("victron-gx-battery", None)], speed=speed
        )
        ingest = Ingest(IngestSettings(mqtt_url=f"mqtt://camperhub-ingest:demo@127.0.0.1:{mqtt_port}", protocol="3.1.1", batch_max_wait_s=0.2), store)
        ingest.start()
        # the camper drives between the demo stops in real time (GPS time must be real: the ingest
        # refuses readings from the future), stopping a few minutes at each
        gps = start_gps_simulator(f"tcp://127.0.0.1:{gps_port}", load_stops(DEMO_STOPS_FILE), dwell_s=DEMO_DWELL_S)
        api, api_task = await _serve_api(port, mqtt_port, store_path)
        print(f"simulated Victron GX on tcp://127.0.0.1:{modbus_port} (time x{speed:g}); broker on mqtt://127.0.0.1:{mqtt_port}; store {store_path}")
        print(f"API on http://127.0.0.1:{port}/api/v1/campers (docs: http://127.0.0.1:{port}/docs)", flush=True)
        config = validate_yaml(EdgeConfig, demo_edge_config(mqtt_port, modbus_port, folder, gps_port), "demo-edge.yaml")
        stop = asyncio.Event()
        printer = asyncio.create_task(_print_stored(store, ingest, stop))
        agent_task = asyncio.create_task(run_agent(config, install_signals=False))
        try:
            done, _ = await asyncio.wait({agent_task}, timeout=duration_s)
        except asyncio.CancelledError:
            pass
        finally:
            if not agent_task.done():
                agent_task.cancel()
            await asyncio.gather(agent_task, return_exceptions=True)
            await asyncio.sleep(0.5)  # the agent's goodbye status reaches the store
            stop.set()
            await printer
            await asyncio.to_thread(ingest.stop)
            api.should_exit = True
            await asyncio.gather(api_task, return_exceptions=True)
            _print_status(store)
            gps.stop()
            sim.stop()
            await broker.shutdown()
            store.close()
    return 0


def run_demo(port: int = 8000, duration_s: float | None = None, speed: float = 60.0) -> int:
    """Run the demo until Ctrl-C (or for ``duration_s`` seconds); data stays in CAMPERHUB_SQLITE_PATH."""
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    store_path = StoreSettings().sqlite_path
    try:
        return asyncio.run(_run(duration_s, speed, store_path, port))
    except KeyboardInterrupt:
        return 0
