"""``camperhub demo``: the whole system on embedded defaults, needing nothing but Python.

A simulated Victron GX (solar charger + battery monitor, Modbus TCP on a free
loopback port) fed by the physical model, the real edge agent polling it, an
embedded MQTT broker (amqtt, MQTT 3.1.1) in process, and a subscriber that
prints what arrives. Later parts of the system (ingest, API, pages) join here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camperhub.contract import TOPIC_ROOT, ContractError, decode_envelope

log = logging.getLogger("camperhub.demo")
CAMPER = "varese-1"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_edge_config(mqtt_port: int, modbus_port: int, folder: Path) -> str:
    """The demo camper's edge config: the same file format as on a real Pi."""
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
status_interval_s: 30
"""


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


def _format_energy(camper: str, sample: Any) -> str:
    f = sample.fields()

    def show(name: str, fmt: str) -> str:
        return fmt.format(f[name]) if name in f else "–"

    return (
        f"{camper} seq={sample.seq:<5} sun {show('pv_power_w', '{:6.0f} W')} | "
        f"battery {show('battery_voltage_v', '{:5.2f} V')} {show('battery_current_a', '{:+6.1f} A')} "
        f"{show('battery_soc_pct', '{:5.1f} %')} {show('charge_state', '{}'):<10} | "
        f"yield today {show('pv_yield_today_wh', '{:5.0f} Wh')}"
    )


def _start_printer(port: int, stop: threading.Event) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="camperhub-demo-console", protocol=mqtt.MQTTv311)
    client.username_pw_set("demo-console")

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe(f"{TOPIC_ROOT}/+/+", qos=1)

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            env = decode_envelope(msg.payload, msg.topic)
        except ContractError as exc:
            print(f"refused message on {msg.topic}: {exc}", flush=True)
            return
        for sample in env.samples:  # type: ignore[attr-defined]
            if env.stream == "energy":  # type: ignore[attr-defined]
                print(_format_energy(env.camper, sample), flush=True)  # type: ignore[attr-defined]
            else:
                print(f"{env.camper} {env.stream}: {json.dumps(sample.fields())}", flush=True)  # type: ignore[attr-defined]

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


async def _run(duration_s: float | None, speed: float) -> int:
    from camperhub.edge.agent import run_agent
    from camperhub.edge.config import EdgeConfig
    from camperhub.edge.sim.runner import start_simulator
    from camperhub.yamlconf import validate_yaml

    mqtt_port, modbus_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="camperhub-demo-") as tmp:
        folder = Path(tmp)
        broker = await _start_broker(mqtt_port)
        sim = start_simulator(
            f"tcp://127.0.0.1:{modbus_port}", [("victron-gx-solarcharger", None), ("victron-gx-battery", None)], speed=speed
        )
        print(f"simulated Victron GX on tcp://127.0.0.1:{modbus_port} (time x{speed:g}); broker on mqtt://127.0.0.1:{mqtt_port}")
        stop = threading.Event()
        printer = _start_printer(mqtt_port, stop)
        config = validate_yaml(EdgeConfig, demo_edge_config(mqtt_port, modbus_port, folder), "demo-edge.yaml")
        agent_task = asyncio.create_task(run_agent(config, install_signals=False))
        try:
            if duration_s is None:
                await agent_task
            else:
                done, _ = await asyncio.wait({agent_task}, timeout=duration_s)
                if not done:
                    agent_task.cancel()
        except asyncio.CancelledError:
            pass
        finally:
            if not agent_task.done():
                agent_task.cancel()
            await asyncio.gather(agent_task, return_exceptions=True)
            printer.loop_stop()
            printer.disconnect()
            sim.stop()
            await broker.shutdown()
    return 0


def run_demo(port: int = 8000, duration_s: float | None = None, speed: float = 60.0) -> int:
    """Run the demo until Ctrl-C (or for ``duration_s`` seconds)."""
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    try:
        return asyncio.run(_run(duration_s, speed))
    except KeyboardInterrupt:
        return 0
