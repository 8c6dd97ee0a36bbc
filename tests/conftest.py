"""Test-wide rules: every test is timed out (pyproject: timeout) and must leave no
thread or child process behind; real services are started by fixtures, never
assumed to be running."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.fixtures.gpsd import gpsd  # noqa: F401  (fixture)
from tests.fixtures.influxdb import SESSION_PIDS, influx_server, influx_store  # noqa: F401  (fixtures)
from tests.fixtures.mosquitto import mosquitto  # noqa: F401  (fixture)
from tests.fixtures.serial_pty import serial_pty  # noqa: F401  (fixture)
from tests.fixtures.stores import store  # noqa: F401  (fixture: SQLite and InfluxDB)


def _children() -> set[int]:
    """PIDs of this process's living children (Linux /proc)."""
    me = str(os.getpid())
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.add(int(entry))
    return out


@pytest.fixture(autouse=True)
def no_leftovers():
    """Fail a test that leaves threads or child processes running."""
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    deadline = time.monotonic() + 5
    while True:
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        children = _children() - children_before - SESSION_PIDS
        if not threads and not children:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(f"test left behind threads {[t.name for t in threads]} and child processes {sorted(children)}")
