"""The newcomer's commands: `camperhub demo` shows live values; the CLI's verbs answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

from camperhub.netutil import free_port


def camperhub(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camperhub.cli", *args], capture_output=True, text=True, timeout=timeout)


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback, our own demo
        return json.loads(resp.read())


def test_demo_shows_live_energy_values_reaching_the_store_and_the_api(tmp_path):
    db = tmp_path / "demo.sqlite"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "camperhub.cli", "demo", "--duration", "12", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CAMPERHUB_SQLITE_PATH": str(db), "CAMPERHUB_SCHEDULE_PATH": str(tmp_path / "schedules.sqlite"),
             "CAMPERHUB_SESSIONS_PATH": str(tmp_path / "sessions.sqlite")},
    )
    kiosk = ""
    energy_now: object = None
    schedule: object = None
    location: object = None
    try:
        deadline = time.monotonic() + 60
        while energy_now is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                energy_now = _get_json(f"http://127.0.0.1:{port}/api/v1/campers/varese-1/energy/now")
            except (OSError, ValueError):
                time.sleep(0.3)  # not up yet, or no reading stored yet (404)
        if energy_now is not None:
            schedule = _get_json(f"http://127.0.0.1:{port}/api/v1/campers/varese-1/schedule")
            location = _get_json(f"http://127.0.0.1:{port}/api/v1/campers/varese-1/location")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/workshop", timeout=10) as r:
                kiosk = r.read().decode("utf-8")
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert res.returncode == 0, res.stderr
    assert isinstance(energy_now, dict) and "battery_soc_pct" in json.dumps(energy_now), f"the API served the demo's readings: {energy_now}"
    assert isinstance(schedule, dict) and "bustecche" in json.dumps(schedule), "the demo week is the demo camper's schedule"
    assert isinstance(location, dict) and location.get("state"), f"the public location answers: {location}"
    assert "L'energia del camper" in kiosk, "the workshop kiosk is served, in Italian"
    assert re.search(rf"workshop kiosk: http://127\.0\.0\.1:{port}/workshop#kiosk-key=[A-Za-z0-9_-]{{32}}", res.stdout), res.stdout
    energy = [line for line in res.stdout.splitlines() if re.match(r"stored: varese-1 seq=\d+ +sun +\d+ W \| battery +\d+\.\d\d V", line)]
    assert len(energy) >= 3, res.stdout
    seqs = [int(re.search(r"seq=(\d+)", line).group(1)) for line in energy]
    assert seqs == sorted(set(seqs))
    assert 'stored: varese-1 status: {"state": "offline"' in res.stdout
    assert db.exists()


def test_simulate_refuses_a_transport_the_device_does_not_speak():
    res = camperhub("simulate", "--map", "epever-tracer-an", "--listen", "tcp://127.0.0.1:1")
    assert res.returncode == 2 and "epever-tracer-an speaks rtu, not tcp" in res.stderr


def test_schema_file_is_up_to_date():
    res = camperhub("schema", "--check")
    assert res.returncode == 0, res.stderr
