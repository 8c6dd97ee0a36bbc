"""The Broadcaster (fan-out, bounded queues, replay) and the status SSE route over it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from camperhub.api.app import create_app
from camperhub.api.events import Broadcaster
from camperhub.api.views import sample_view
from camperhub.contract import Stream
from camperhub.store.sqlite import SqliteStore
from tests.api.conftest import T0, read_events, settings, smp

pytestmark = pytest.mark.timeout(30)


def _drain(sub) -> list:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_fan_out_in_order_to_the_clients_of_a_camper() -> None:
    async def main() -> None:
        b = Broadcaster(queue_size=10)
        a1, a2, other, every = b.subscribe("van-1"), b.subscribe("van-1"), b.subscribe("van-2"), b.subscribe(None)
        for i in range(3):
            b.publish("van-1", "status", T0 + i, {"i": i})
        b.publish("van-2", "status", T0, {"i": 9})
        assert [m.data["i"] for m in _drain(a1)] == [0, 1, 2] == [m.data["i"] for m in _drain(a2)]
        assert [m.data["i"] for m in _drain(other)] == [9]
        got = _drain(every)
        assert [m.n for m in got] == [1, 2, 3, 4] and got[0].id == f"{b.boot}.1"
        a1.close()
        assert b.subscribers == 3

    asyncio.run(main())


def test_a_slow_client_is_dropped_and_never_blocks_the_others() -> None:
    async def main() -> None:
        b = Broadcaster(queue_size=4)
        slow = b.subscribe("van-1")
        fast = b.subscribe("van-1")
        got: list[int] = []

        async def reader() -> None:
            async for m in fast:
                got.append(m.data["i"])
                if len(got) == 100:
                    return

        task = asyncio.create_task(reader())
        for i in range(100):
            b.publish("van-1", "status", T0 + i, {"i": i})
            await asyncio.sleep(0)  # the fast reader keeps up; the slow one never reads
        await asyncio.wait_for(task, 5)
        assert got == list(range(100))
        assert slow.dropped and b.dropped == 1 and not fast.dropped
        assert [m async for m in slow] == []  # its stream ends: the client reconnects with Last-Event-ID
        assert b.subscribers == 1

    asyncio.run(main())


def test_last_event_id_replays_what_came_after_it() -> None:
    async def main() -> None:
        b = Broadcaster(queue_size=2, replay=5)
        first = b.publish("van-1", "status", T0, {"i": 0})
        for i in range(1, 4):
            b.publish("van-1" if i != 2 else "van-2", "status", T0 + i, {"i": i})
        sub = b.subscribe("van-1", last_id=first.id)
        assert sub.replay_complete and [m.data["i"] for m in _drain(sub)] == [1, 3]
        for i in range(4, 10):  # the ring (5) forgets 0..4
            b.publish("van-1", "status", T0 + i, {"i": i})
        late = b.subscribe("van-1", last_id=first.id)
        assert not late.replay_complete and [m.data["i"] for m in _drain(late)] == [5, 6, 7, 8, 9]  # queue grown to hold them
        stranger = b.subscribe("van-1", last_id="deadbeef.3")  # an id of another process
        assert not stranger.replay_complete and _drain(stranger) == []
        current = b.subscribe("van-1", last_id=b.last_id())
        assert current.replay_complete and _drain(current) == []

    asyncio.run(main())


def test_the_latest_message_is_kept_per_camper_and_stream_by_reading_time() -> None:
    async def main() -> None:
        b = Broadcaster()
        b.publish("van-1", "status", T0 + 10, {"i": 1})
        b.publish("van-1", "status", T0, {"i": 2})  # a late replay: older reading
        assert b.latest("van-1", "status").data == {"i": 1} and b.latest("van-1", "position") is None

    asyncio.run(main())


def test_publish_from_another_thread() -> None:
    async def main() -> None:
        b = Broadcaster()
        b.bind()
        sub = b.subscribe("van-1")
        t = threading.Thread(target=lambda: [b.publish_threadsafe("van-1", "status", T0 + i, {"i": i}) for i in range(3)])
        t.start()
        t.join()
        got = []
        async for m in sub:
            got.append(m.data["i"])
            if len(got) == 3:
                break
        assert got == [0, 1, 2]
        b.close()
        b.publish_threadsafe("van-1", "status", T0, {})  # after close: ignored, no error

    asyncio.run(main())


# -- the SSE route -------------------------------------------------------------------------


@pytest.fixture
def app_store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "sse.sqlite")
    store.write([smp(Stream.STATUS, T0, state="online", mode="normal", in_service=True, seq=7)])
    return store


def _status(ts: int, seq: int, **fields) -> tuple:
    return ("van-1", "status", ts, sample_view("van-1", "status", ts, {"seq": seq, **fields}))


def test_status_stream_sends_the_current_status_then_updates_and_replays(app_store: SqliteStore) -> None:
    with TestClient(create_app(settings(), app_store)) as client:
        b: Broadcaster = client.app.state.broadcaster
        with client.stream("GET", "/api/v1/campers/van-1/status/stream") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            [now] = read_events(lines, 1)
            assert now.event == "status" and now.data["seq"] == 7 and now.data["fields"]["in_service"] is True
            assert now.data["time"] == "2026-05-04T12:00:00Z" and now.data["local_time"] == "2026-05-04T14:00:00+02:00"
            b.publish_threadsafe(*_status(T0 + 1000, 8, state="online", mode="live"))
            b.publish_threadsafe("van-2", "status", T0, {"other": True})  # another camper: not sent
            b.publish_threadsafe(*_status(T0 + 2000, 9, state="offline"))
            upd = read_events(lines, 2)
            assert [e.data["seq"] for e in upd] == [8, 9] and upd[1].data["fields"]["state"] == "offline"
        b.publish_threadsafe(*_status(T0 + 3000, 10, state="online"))
        # a reconnect with Last-Event-ID gets only what it missed, not the current status again
        with client.stream("GET", "/api/v1/campers/van-1/status/stream", headers={"Last-Event-ID": upd[0].id}) as r:
            again = read_events(r.iter_lines(), 2)
            assert [e.data["seq"] for e in again] == [9, 10]
        # an id of a previous process: the current status (the newest, live one)
        with client.stream("GET", "/api/v1/campers/van-1/status/stream", headers={"Last-Event-ID": "0000.5"}) as r:
            [cur] = read_events(r.iter_lines(), 1)
            assert cur.data["seq"] == 10
        assert b.subscribers == 0


def test_status_stream_of_an_unknown_or_invalid_camper(app_store: SqliteStore) -> None:
    with TestClient(create_app(settings(), app_store)) as client:
        r = client.get("/api/v1/campers/nobody/status/stream")
        assert r.status_code == 404 and r.json()["detail"] == "unknown camper 'nobody'"
        assert client.get("/api/v1/campers/NO/status/stream").status_code == 422
        assert client.app.state.broadcaster.subscribers == 0


def test_a_slow_sse_client_does_not_block_a_fast_one(app_store: SqliteStore) -> None:
    """Two real SSE responses: one never reads (its send blocks), the other reads every update."""
    with TestClient(create_app(settings(sse_queue=4), app_store)) as client:
        b: Broadcaster = client.app.state.broadcaster
        with client.stream("GET", "/api/v1/campers/van-1/status/stream") as slow, client.stream(
            "GET", "/api/v1/campers/van-1/status/stream"
        ) as fast:
            lines = fast.iter_lines()
            assert read_events(lines, 1)[0].data["seq"] == 7
            got = []
            for i in range(50):  # at the pace the fast client reads: it never lags
                b.publish_threadsafe(*_status(T0 + 1000 + i, 100 + i, state="online"))
                got += read_events(lines, 1)
            assert [e.data["seq"] for e in got] == list(range(100, 150))
            assert b.dropped == 1
            slow_events = read_events(slow.iter_lines(), 1000)  # its stream has ended: what it had, then EOF
            assert len(slow_events) < 10
        text = client.get("/metrics").text
        assert "camperhub_api_sse_dropped_total 1.0" in text
