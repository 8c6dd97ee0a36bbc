"""Helpers of the API tests: samples as the ingest stores them, an app over a real store, SSE parsing."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.settings import ApiSettings
from camperhub.contract import SAMPLE_MODELS, Stream
from camperhub.store.base import Store, StoredSample
from camperhub.store.sqlite import SqliteStore

_seq = itertools.count(1)
#: 2026-05-04T12:00:00Z, a whole hour (14:00 in Europe/Rome)
T0 = 1_777_896_000_000
MIN = 60_000


def smp(stream: Stream, ts: int, camper: str = "van-1", seq: int | None = None, **fields: Any) -> StoredSample:
    """A sample validated by the contract model, stored as the ingest does (seq plus present fields)."""
    m = SAMPLE_MODELS[stream](seq=next(_seq) if seq is None else seq, ts=ts, **fields)
    return StoredSample(camper, stream, ts, {"seq": m.seq, **m.fields()})


def now_ms() -> int:
    return int(time.time() * 1000)


def settings(**kw: Any) -> ApiSettings:
    """Test settings: no broker, a generous rate limit, no SSE pings, the collector left alone
    (a full collection per app start would slow the suite; tests/api/test_gctune.py covers it)."""
    base: dict[str, Any] = {"live": False, "rate_burst": 10_000, "rate_per_s": 10_000, "sse_ping_s": 0, "gc_freeze_s": 0}
    base.update(kw)
    return ApiSettings(**base)


@pytest.fixture
def api(store: Store) -> Iterator[TestClient]:
    """A TestClient over the app on each real store (SQLite, InfluxDB)."""
    with TestClient(create_app(settings(), store)) as client:
        yield client


@pytest.fixture
def sqlite_api(tmp_path) -> Iterator[tuple[TestClient, SqliteStore]]:
    """A TestClient over the app on a SQLite store only, and that store."""
    store = SqliteStore(tmp_path / "api.sqlite")
    with TestClient(create_app(settings(), store)) as client:
        yield client, store


@dataclass
class Event:
    event: str | None
    id: str | None
    data: Any


def read_events(lines: Iterator[str], n: int) -> list[Event]:
    """The next ``n`` SSE events (comments skipped); stops early when the stream ends."""
    out: list[Event] = []
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                out.append(Event(fields.get("event"), fields.get("id"), json.loads("\n".join(data))))
                if len(out) == n:
                    return out
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    return out
