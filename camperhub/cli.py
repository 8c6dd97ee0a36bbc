"""The one entry point, ``camperhub`` (ARCHITECTURE.md §7).

Each verb imports what it needs when it runs, so ``camperhub check-config``
works on a Pi that has only the edge extra installed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Protocol
from datetime import date
from pathlib import Path


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # paho and pymodbus are chatty at INFO about reconnects we already report
    for chatty in ("pymodbus", "transitions", "amqtt"):
        logging.getLogger(chatty).setLevel(logging.WARNING if not verbose else logging.INFO)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate edge configs and register maps; print every problem as file:line: key: message."""
    from camperhub.edge.config import load_edge_config
    from camperhub.edge.registermap import load_register_map, map_path
    from camperhub.yamlconf import ConfigError, load_yaml

    status = 0
    for name in args.files:
        path = Path(name) if Path(name).exists() else map_path(name)
        try:
            data, _ = load_yaml(path.read_text(encoding="utf-8"), str(path))
            # a register map has registers; anything else is taken for an edge config
            is_map = isinstance(data, dict) and "registers" in data
            load_register_map(str(path)) if is_map else load_edge_config(path)
            print(f"{path}: OK ({'register map' if is_map else 'edge config'})")
        except OSError as exc:
            print(f"{path}: cannot read file: {exc.strerror or exc}", file=sys.stderr)
            status = 1
        except ConfigError as exc:
            for issue in exc.issues:
                print(str(issue), file=sys.stderr)
            status = 1
    return status


def cmd_edge(args: argparse.Namespace) -> int:
    """Run the edge agent from its YAML config."""
    import asyncio

    from camperhub.edge.agent import run_agent
    from camperhub.edge.config import load_edge_config
    from camperhub.yamlconf import ConfigError

    try:
        config = load_edge_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        return 78
    return asyncio.run(run_agent(config))


def cmd_ingest(args: argparse.Namespace) -> int:
    """Run the ingest (MQTT -> store) with settings from CAMPERHUB_* variables."""
    from pydantic import ValidationError

    from camperhub.broker.ingest import run_ingest

    try:
        return run_ingest()
    except ValidationError as exc:
        for err in exc.errors():
            print(f"camperhub ingest: {err['msg']}", file=sys.stderr)
        return 78


def cmd_api(args: argparse.Namespace) -> int:
    """Run the API (uvicorn) with settings from CAMPERHUB_* variables; --host/--port override
    CAMPERHUB_API_HOST/PORT."""
    from pydantic import ValidationError

    try:
        import uvicorn

        from camperhub.api.app import create_app
        from camperhub.api.settings import ApiSettings
        from camperhub.settings import MqttClientSettings, StoreSettings
    except ImportError as exc:
        print(f"camperhub api: {exc.name} is missing: pip install 'camperhub[server]'", file=sys.stderr)
        return 78
    try:
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        settings = ApiSettings(**overrides)
        StoreSettings()  # validated now, opened by the app at start-up
        mqtt = MqttClientSettings() if settings.live else None
    except ValidationError as exc:
        prefix = "CAMPERHUB_API_" if exc.title == "ApiSettings" else "CAMPERHUB_"
        for err in exc.errors():
            where = "_".join(str(p) for p in err["loc"]).upper()
            print(f"camperhub api: {prefix}{where}: {err['msg']}" if where else f"camperhub api: {err['msg']}", file=sys.stderr)
        return 78
    app = create_app(settings, mqtt=mqtt)
    uvicorn.run(app, host=settings.host, port=settings.port, proxy_headers=True, log_level="debug" if args.verbose else "info")
    return 0


def cmd_completeness(args: argparse.Namespace) -> int:
    """Per local day, what share of a camper's energy readings arrived and why the rest did not
    (store settings from CAMPERHUB_* variables, like the ingest)."""
    from pydantic import ValidationError

    from camperhub.completeness import completeness, render_text
    from camperhub.contract import is_valid_camper_id
    from camperhub.settings import StoreSettings
    from camperhub.store import open_store
    from camperhub.store.base import StoreError

    if not is_valid_camper_id(args.camper):
        print(f"camperhub completeness: camper id {args.camper!r} is not [a-z0-9-]{{1,32}}", file=sys.stderr)
        return 2
    if args.end < args.start:
        print(f"camperhub completeness: --end {args.end} is before --start {args.start}", file=sys.stderr)
        return 2
    try:
        store = open_store(StoreSettings())
    except ValidationError as exc:
        for err in exc.errors():
            print(f"camperhub completeness: {err['msg']}", file=sys.stderr)
        return 78
    except (StoreError, ValueError) as exc:
        print(f"camperhub completeness: {exc}", file=sys.stderr)
        return 78
    try:
        report = completeness(store, args.camper, args.start, args.end)
    except StoreError as exc:
        print(f"camperhub completeness: the store did not answer: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(report.model_dump_json(indent=2) if args.json else render_text(report), end="\n" if args.json else "")
    return 0


def _day(text: str) -> date:
    """A YYYY-MM-DD argument (argparse turns the ValueError into a usage error)."""
    return date.fromisoformat(text)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve register maps from the physical model (or, with --gps, an NMEA route) until interrupted."""
    if args.gps is not None:
        return _simulate_gps(args)
    if not args.map or args.listen is None:
        print("camperhub simulate: --map and --listen are required (or --gps tcp://HOST:PORT)", file=sys.stderr)
        return 2

    from camperhub.edge.sim.runner import parse_map_specs, start_simulator

    try:
        specs = parse_map_specs(args.map)
        sim = start_simulator(args.listen, specs, speed=args.speed, start=args.start, seed=args.seed)
    except (ValueError, RuntimeError) as exc:
        print(f"camperhub simulate: {exc}", file=sys.stderr)
        return 2
    devices = ", ".join(f"{d.rmap.model} (unit {d.unit})" for d in sim.devices.values())
    print(f"simulating {devices} on {sim.listen}; Ctrl-C stops", flush=True)
    return _serve_until_signal(sim)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def _serve_until_signal(sim: "_Stoppable") -> int:
    """Keep a simulator serving until Ctrl-C or SIGTERM, then stop it."""
    import signal
    import threading

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    sim.stop()
    return 0


def _simulate_gps(args: argparse.Namespace) -> int:
    """``simulate --gps``: the camper's tour between the stops as NMEA over TCP (gpsd reads it as a tcp:// source)."""
    from camperhub.edge.sim.gps_route import start_gps_simulator
    from camperhub.edge.sim.runner import parse_start
    from camperhub.edge.stops import DEMO_STOPS_FILE, load_stops
    from camperhub.yamlconf import ConfigError

    try:
        stops = load_stops(args.stops or DEMO_STOPS_FILE)
        sim = start_gps_simulator(args.gps, stops, speed=args.speed, start=parse_start(args.start), seed=args.seed)
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"camperhub simulate: {exc}", file=sys.stderr)
        return 2
    print(f"simulating a GPS receiver touring {len(stops)} stops as NMEA on {sim.listen}; Ctrl-C stops", flush=True)
    return _serve_until_signal(sim)


def cmd_broker_add_camper(args: argparse.Namespace) -> int:
    """Create (or rotate) a camper's MQTT credentials and ACL block; print them once."""
    from camperhub.broker.provision import add_camper

    try:
        creds = add_camper(args.name, Path(args.passwd_file), Path(args.acl_file))
    except ValueError as exc:
        print(f"camperhub broker add-camper: {exc}", file=sys.stderr)
        return 2
    print(f"camper {creds.username}: password written to {args.passwd_file}, ACL to {args.acl_file}")
    print("Put this in the camper's edge config (shown once, not stored in clear):")
    print(f"  mqtt:\n    url: mqtts://{creds.username}:{creds.password}@BROKER-HOST:8883")
    print("Then reload the broker: systemctl reload mosquitto (or send it SIGHUP).")
    return 0


def cmd_broker_add_service(args: argparse.Namespace) -> int:
    """Create (or rotate) the read-only user of a server component (ingest, api)."""
    from camperhub.broker.provision import add_service

    try:
        creds = add_service(args.name, args.role, Path(args.passwd_file), Path(args.acl_file))
    except ValueError as exc:
        print(f"camperhub broker add-service: {exc}", file=sys.stderr)
        return 2
    print(f"service user {creds.username} ({args.role}): password written to {args.passwd_file}, ACL to {args.acl_file}")
    print(f"CAMPERHUB_MQTT_URL=mqtt://{creds.username}:{creds.password}@BROKER-HOST:1883")
    return 0


def _token_store(args: argparse.Namespace):  # -> camperhub.api.auth.TokenStore
    from camperhub.api.auth import TokenStore
    from camperhub.api.settings import AuthSettings

    return TokenStore(args.tokens_path or AuthSettings().tokens_path)


def cmd_token_create(args: argparse.Namespace) -> int:
    """A new staff/admin token: printed once, stored only as its SHA-256 hash (CAMPERHUB_TOKENS_PATH)."""
    tokens = _token_store(args)
    try:
        token = tokens.create(args.name, args.role)
    except ValueError as exc:
        print(f"camperhub token create: {exc}", file=sys.stderr)
        return 2
    print(f"{args.role} token {args.name!r} (shown once, only its hash is kept in {tokens.path}):")
    print(token)
    print("Send it as: Authorization: Bearer TOKEN")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    """Names, roles and creation times of the tokens (never the tokens)."""
    for t in _token_store(args).list():
        print(f"{t.name}\t{t.role}\t{t.created.isoformat(timespec='seconds')}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    if _token_store(args).revoke(args.name):
        print(f"revoked token {args.name!r}")
        return 0
    print(f"camperhub token revoke: no token named {args.name!r}", file=sys.stderr)
    return 1


def cmd_schema(args: argparse.Namespace) -> int:
    """Write (or check) the committed JSON Schema of the contract."""
    from camperhub.contract import json_schema_text

    target = Path(__file__).parent / "schema" / "telemetry-v1.schema.json"
    text = json_schema_text()
    if args.check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print(f"{target} is out of date: run `camperhub schema`", file=sys.stderr)
            return 1
        print(f"{target}: up to date")
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole system on embedded defaults with a simulated camper."""
    from camperhub.demo import run_demo

    return run_demo(port=args.port, duration_s=args.duration, speed=args.speed)


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmarks whose figures go in the README."""
    from camperhub.edge.bench import run_bench

    return run_bench(args.name, duration_s=args.duration)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camperhub", description="Camper Hub: solar camper telemetry, from Modbus register to tenant page.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("demo", help="run the whole system with a simulated camper")
    s.add_argument("--port", type=int, default=8000, help="API/pages port (from the API issue on)")
    s.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    s.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("simulate", help="serve a register map from the physical model (a Modbus device simulator), or an NMEA route (--gps)")
    s.add_argument("--map", action="append", metavar="NAME[@UNIT]", help="register map (repeat for several devices on one port); required without --gps")
    s.add_argument("--listen", help="tcp://127.0.0.1:5020 or rtu:///dev/ttyX?baudrate=9600; required without --gps")
    s.add_argument("--gps", metavar="tcp://HOST:PORT", help="instead: serve the camper's tour between the stops as NMEA (gpsd source tcp://HOST:PORT)")
    s.add_argument("--stops", metavar="FILE", help="stops YAML for --gps (default firmware-config/demo/stops.yaml)")
    s.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    s.add_argument("--start", default=None, help="simulated start time, ISO 8601 (default: now)")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("edge", help="run the edge agent")
    s.add_argument("--config", required=True, help="edge config YAML")
    s.set_defaults(func=cmd_edge)

    s = sub.add_parser("ingest", help="run the ingest: MQTT telemetry into the store (settings from CAMPERHUB_*)")
    s.set_defaults(func=cmd_ingest)

    from camperhub.fleet.alerts_cli import add_alerts_verbs  # argparse only at import time

    add_alerts_verbs(sub)

    s = sub.add_parser("api", help="run the API (settings from CAMPERHUB_API_* and CAMPERHUB_*)")
    s.add_argument("--host", default=None, help="address to listen on (default CAMPERHUB_API_HOST, else 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default CAMPERHUB_API_PORT, else 8000)")
    s.set_defaults(func=cmd_api)

    s = sub.add_parser("completeness", help="per local day, the share of a camper's readings that arrived and why the rest did not")
    s.add_argument("camper")
    s.add_argument("--start", type=_day, required=True, metavar="YYYY-MM-DD", help="first local day (Europe/Rome)")
    s.add_argument("--end", type=_day, required=True, metavar="YYYY-MM-DD", help="last local day, included")
    s.add_argument("--json", action="store_true", help="the report as JSON instead of a table")
    s.set_defaults(func=cmd_completeness)

    s = sub.add_parser("check-config", help="validate an edge config or a register map")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("schema", help="write the contract's JSON Schema file")
    s.add_argument("--check", action="store_true", help="only check that the committed file is up to date")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("bench", help="run a benchmark and print its figures")
    s.add_argument("name", choices=["modbus-requests", "agent-cpu"])
    s.add_argument("--duration", type=float, default=600.0, help="seconds (agent-cpu)")
    s.set_defaults(func=cmd_bench)

    b = sub.add_parser("broker", help="broker provisioning").add_subparsers(dest="broker_verb", required=True, metavar="VERB")
    for verb, func in (("add-camper", cmd_broker_add_camper), ("add-service", cmd_broker_add_service)):
        s = b.add_parser(verb)
        s.add_argument("name")
        if verb == "add-service":
            s.add_argument("--role", choices=["ingest", "api", "alerts"], required=True)
        s.add_argument("--passwd-file", default="/etc/mosquitto/camperhub/passwd")
        s.add_argument("--acl-file", default="/etc/mosquitto/camperhub/acl")
        s.set_defaults(func=func)

    from camperhub.workshops.commands import add_workshop_verbs

    add_workshop_verbs(sub)

    t = sub.add_parser("token", help="staff API tokens (stored hashed in CAMPERHUB_TOKENS_PATH)").add_subparsers(
        dest="token_verb", required=True, metavar="VERB"
    )
    s = t.add_parser("create", help="make a token and print it once")
    s.add_argument("name")
    s.add_argument("--role", choices=["staff", "admin"], required=True)
    s.set_defaults(func=cmd_token_create)
    s = t.add_parser("list", help="names, roles and creation times")
    s.set_defaults(func=cmd_token_list)
    s = t.add_parser("revoke", help="remove a token (effective at the next request)")
    s.add_argument("name")
    s.set_defaults(func=cmd_token_revoke)
    for s in (t.choices["create"], t.choices["list"], t.choices["revoke"]):
        s.add_argument("--tokens-path", default=None, help="token file (default CAMPERHUB_TOKENS_PATH, else var/tokens.sqlite)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
