"""The newcomer's commands: `camperhub demo` shows live values; the CLI's verbs answer."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def camperhub(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camperhub.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_shows_live_energy_values_reaching_the_store(tmp_path):
    db = tmp_path / "demo.sqlite"
    res = subprocess.run(
        [sys.executable, "-m", "camperhub.cli", "demo", "--duration", "6"],
        capture_output=True, text=True, timeout=90, env={**os.environ, "CAMPERHUB_SQLITE_PATH": str(db)},
    )
    assert res.returncode == 0, res.stderr
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
