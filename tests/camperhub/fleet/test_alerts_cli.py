"""``camperhub alerts run|list``: the real command in a subprocess, on a SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from camperhub.cli import main
from camperhub.contract import Stream
from camperhub.store.base import StoredSample
from camperhub.store.sqlite import SqliteStore


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPERHUB_")}
    env.update(CAMPERHUB_STORE="sqlite", CAMPERHUB_SQLITE_PATH=str(tmp_path / "store.sqlite"),
               CAMPERHUB_ALERTS_PATH=str(tmp_path / "alerts.sqlite"), **extra)
    return env


def test_bad_settings_exit_with_the_variable_named(tmp_path: Path, monkeypatch, capsys) -> None:
    for k, v in _env(tmp_path, CAMPERHUB_ALERT_LOW_SOC_CLEAR_PCT="10").items():
        monkeypatch.setenv(k, v)
    assert main(["alerts", "run", "--no-mqtt"]) == 78
    assert "CAMPERHUB_ALERT_LOW_SOC_CLEAR_PCT" in capsys.readouterr().err
    monkeypatch.setenv("CAMPERHUB_ALERT_LOW_SOC_CLEAR_PCT", "lots")
    assert main(["alerts", "list"]) == 78
    assert "CAMPERHUB_ALERT_LOW_SOC_CLEAR_PCT" in capsys.readouterr().err


def test_list_without_an_alerts_file_says_where_it_looked(tmp_path: Path, monkeypatch, capsys) -> None:
    for k, v in _env(tmp_path).items():
        monkeypatch.setenv(k, v)
    assert main(["alerts", "list"]) == 1
    assert "alerts.sqlite" in capsys.readouterr().err


def test_run_opens_an_alert_that_list_shows_and_stops_on_sigterm(tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    store = SqliteStore(tmp_path / "store.sqlite")
    store.write([StoredSample("van-1", Stream.ENERGY, now_ms - 1000 * i, {"seq": 100 - i, "battery_soc_pct": 11.0}) for i in range(5)]
                + [StoredSample("van-1", Stream.STATUS, now_ms, {"seq": 1, "state": "online"})])
    store.close()
    env = _env(tmp_path, CAMPERHUB_ALERT_LOW_SOC_OPEN_AFTER_S="0")
    cli = [sys.executable, "-m", "camperhub.cli"]
    proc = subprocess.Popen([*cli, "alerts", "run", "--every", "0.2", "--no-mqtt"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        alerts: list = []
        while time.monotonic() < deadline and not alerts:
            time.sleep(0.2)
            out = subprocess.run([*cli, "alerts", "list", "--json"], env=env, capture_output=True, text=True, timeout=20)
            alerts = json.loads(out.stdout) if out.returncode == 0 else []
        assert [(a["camper"], a["kind"], a["severity"], a["state"]) for a in alerts] == [("van-1", "low_soc", "warning", "open")]
    finally:
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, log
    assert "alert open: van-1 low_soc" in log
    table = subprocess.run([*cli, "alerts", "list", "--all"], env=env, capture_output=True, text=True, timeout=20).stdout
    assert "van-1\tlow_soc" in table
