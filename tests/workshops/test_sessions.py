"""Workshop sessions: the repository, and the button that toggles them (on both stores)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from camperhub.contract import Stream
from camperhub.store.base import Store
from camperhub.workshops.sessions import NoOpenSession, SessionRepository
from tests.api.conftest import smp

T = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
MS = int(T.timestamp() * 1000)


@pytest.fixture
def repo(tmp_path: Path) -> SessionRepository:
    return SessionRepository(tmp_path / "sessions.sqlite")


def test_start_is_idempotent_and_stop_closes(repo: SessionRepository, tmp_path: Path) -> None:
    s, created = repo.start("van-1", "kiosk", T)
    assert created and s.open and s.started == T and s.started_by == "kiosk"
    again, created = repo.start("van-1", "api", T + timedelta(minutes=5))
    assert not created and again == s  # the open one, not a second session
    other, created = repo.start("van-2", "api", T)
    assert created and other.id != s.id and other.share_token != s.share_token
    stopped = repo.stop("van-1", "api", T + timedelta(hours=2))
    assert stopped.id == s.id and stopped.stopped == T + timedelta(hours=2) and stopped.stopped_by == "api"
    assert repo.current("van-1") is None and repo.current("van-2") == other
    with pytest.raises(NoOpenSession, match="no open workshop session"):
        repo.stop("van-1", "kiosk", T + timedelta(hours=3))
    # it is all there after a "restart" (a new repository on the same file)
    reopened = SessionRepository(tmp_path / "sessions.sqlite")
    assert [x.id for x in reopened.list("van-1")] == [s.id]
    assert reopened.by_token(s.share_token) == stopped
    assert reopened.by_token("not-a-token-of-ours") is None


def test_share_tokens_are_long_and_distinct(repo: SessionRepository) -> None:
    tokens = set()
    for k in range(20):
        s, _ = repo.start("van-1", "api", T + timedelta(hours=k))
        repo.stop("van-1", "api", T + timedelta(hours=k, minutes=30))
        tokens.add(s.share_token)
        assert len(s.share_token) >= 24
    assert len(tokens) == 20
    assert [s.started for s in repo.list("van-1", limit=3)] == [T + timedelta(hours=k) for k in (19, 18, 17)]


def test_one_open_session_per_camper_is_enforced_by_the_file(repo: SessionRepository) -> None:
    repo.start("van-1", "api", T)
    with sqlite3.connect(repo.path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO session (camper, started_ms, started_by, share_token) VALUES ('van-1', 1, 'api', 'x')")


def test_a_stop_before_the_start_is_clamped_and_bad_sources_refused(repo: SessionRepository) -> None:
    repo.start("van-1", "api", T)
    s = repo.stop("van-1", "api", T - timedelta(seconds=3))  # a clock a little behind
    assert s.stopped == s.started
    with pytest.raises(ValueError, match="one of button, kiosk, api"):
        repo.start("van-1", "someone", T)
    with pytest.raises(ValueError, match="no timezone"):
        repo.start("van-1", "api", datetime(2026, 5, 4, 12, 0))


def test_a_button_press_toggles_and_a_replayed_press_does_not(repo: SessionRepository) -> None:
    first = repo.press_button("van-1", 10, T)
    assert first is not None and first.open and first.started_by == "button"
    assert repo.press_button("van-1", 10, T) is None  # the same press delivered again
    assert repo.current("van-1") == first
    second = repo.press_button("van-1", 11, T + timedelta(hours=1))
    assert second is not None and second.id == first.id and second.stopped == T + timedelta(hours=1)
    assert repo.press_button("van-1", 11, T + timedelta(hours=1)) is None
    assert repo.current("van-1") is None and len(repo.list("van-1")) == 1


def test_stored_button_events_start_and_stop_a_session_once(store: Store, repo: SessionRepository) -> None:
    now = T + timedelta(hours=3)
    store.write([
        smp(Stream.EVENT, MS, camper="van-1", seq=500, kind="button"),
        smp(Stream.EVENT, MS + 30 * 60_000, camper="van-1", seq=501, kind="shore_power_on"),
        smp(Stream.EVENT, MS + 90 * 60_000, camper="van-1", seq=502, kind="button"),
        smp(Stream.EVENT, MS + 120 * 60_000, camper="van-2", seq=7, kind="button"),
    ])
    assert repo.sync_buttons(store, "van-1", now) == 2
    [s] = repo.list("van-1")
    assert (s.started, s.stopped, s.started_by, s.stopped_by) == (T, T + timedelta(minutes=90), "button", "button")
    # at-least-once: the ingest stores a replay on the same series and time; a re-sync applies nothing
    store.write([smp(Stream.EVENT, MS + 90 * 60_000, camper="van-1", seq=502, kind="button")])
    assert repo.sync_buttons(store, "van-1", now) == 0
    assert len(repo.list("van-1")) == 1 and repo.current("van-1") is None
    # the other camper's press is its own
    assert repo.sync_buttons(store, "van-2", now) == 1 and repo.current("van-2") is not None
    # a later press opens a new session; the kiosk may then stop it
    store.write([smp(Stream.EVENT, MS + 150 * 60_000, camper="van-1", seq=503, kind="button")])
    assert repo.sync_buttons(store, "van-1", now) == 1
    assert repo.current("van-1") is not None
    assert repo.stop("van-1", "kiosk", now).stopped_by == "kiosk"
