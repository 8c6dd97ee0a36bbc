"""Workshop sessions (start, stop, list) and their recaps (public by share link).

Who may start and stop a session: the leader works at the kiosk, which has no
staff token, so the session routes accept EITHER a staff bearer token OR the
kiosk's shared key in the ``X-Kiosk-Key`` header (``CAMPERHUB_KIOSK_KEY``,
at least 16 characters, compared in constant time). Without either they
answer 401: the public cannot open sessions on someone else's camper, nor
read the list (it holds the share tokens). The key is per installation (a
kiosk is a machine the agency set up, like a staff token for a machine) and
an API without ``CAMPERHUB_KIOSK_KEY`` refuses every kiosk key. These routes
are rate limited like the public ones, which slows the guessing of a key.

Recaps: ``GET /recap/{share_token}`` (HTML, Italian by default, ``?lang=en``)
and ``GET /api/v1/recaps/{share_token}`` (JSON) are public to whoever has the
link; the token is ``secrets.token_urlsafe`` (144 bits). A recap holds no
position and does not name the camper.

Before answering, the session routes apply the camper's stored button
presses (see :mod:`camperhub.workshops.sessions` for why the store is where
presses are read from).
"""

from __future__ import annotations

import hmac
import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from camperhub.api.auth import authenticate, bearer
from camperhub.api.deps import ClockDep, KnownCamperDep, RateLimited, StoreDep
from camperhub.workshops.sessions import SESSION_JS, NoOpenSession, Session, SessionRepository, SessionSettings

router = APIRouter(tags=["workshop"], dependencies=[RateLimited])
_lock = threading.Lock()
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


def get_session_settings(request: Request) -> SessionSettings:
    """``app.state.session_settings`` (tests set it), else read from CAMPERHUB_* once."""
    state = request.app.state
    if getattr(state, "session_settings", None) is None:
        with _lock:
            if getattr(state, "session_settings", None) is None:
                state.session_settings = SessionSettings()
    return state.session_settings


def get_sessions(request: Request) -> SessionRepository:
    """``app.state.sessions``, opened on first use at CAMPERHUB_SESSIONS_PATH unless the app was given one."""
    state = request.app.state
    if getattr(state, "sessions", None) is None:
        settings = get_session_settings(request)
        with _lock:
            if getattr(state, "sessions", None) is None:
                state.sessions = SessionRepository(settings.sessions_path)
    return state.sessions


SessionsDep = Annotated[SessionRepository, Depends(get_sessions)]


def leader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_kiosk_key: Annotated[str | None, Header(description="The kiosk's key (CAMPERHUB_KIOSK_KEY), instead of a staff token")] = None,
) -> str:
    """Who acts: ``kiosk`` (a valid X-Kiosk-Key) or ``api`` (a staff token); 401 otherwise."""
    if x_kiosk_key is not None:
        key = get_session_settings(request).kiosk_key
        if key is None:
            raise HTTPException(401, detail="this API has no kiosk key configured (CAMPERHUB_KIOSK_KEY): use a staff token")
        if hmac.compare_digest(x_kiosk_key.encode("utf-8"), key.get_secret_value().encode("utf-8")):
            return "kiosk"
        raise HTTPException(401, detail="the kiosk key is not valid")
    if credentials is None and request.headers.get("authorization") is None:
        raise HTTPException(
            401, detail="starting or stopping a workshop needs the kiosk key (header X-Kiosk-Key) or a staff token",
            headers={"WWW-Authenticate": 'Bearer realm="camperhub"'},
        )
    authenticate(request, credentials, "staff")
    return "api"


LeaderDep = Annotated[str, Depends(leader)]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def session_view(s: Session) -> dict[str, Any]:
    return {
        "id": s.id, "camper": s.camper, "started": _iso(s.started), "stopped": _iso(s.stopped), "open": s.open,
        "started_by": s.started_by, "stopped_by": s.stopped_by, "share_token": s.share_token,
        "recap_url": f"/recap/{s.share_token}", "recap_json_url": f"/api/v1/recaps/{s.share_token}",
    }


def _sync(repo: SessionRepository, store: Any, camper: str, now: datetime) -> None:
    repo.sync_buttons(store, camper, now)


@router.post("/api/v1/campers/{camper}/workshop/sessions", summary="Start a workshop session (idempotent)",
             responses={200: {"description": "a session was open already: that one"}, 201: {"description": "started"}})
def start_session(camper: KnownCamperDep, by: LeaderDep, repo: SessionsDep, store: StoreDep, clock: ClockDep) -> JSONResponse:
    now = clock()
    _sync(repo, store, camper, now)
    session, created = repo.start(camper, by, now)
    return JSONResponse(session_view(session), status_code=201 if created else 200)


@router.post("/api/v1/campers/{camper}/workshop/sessions/current/stop", summary="Stop the open workshop session",
             responses={409: {"description": "no session is open"}})
def stop_session(camper: KnownCamperDep, by: LeaderDep, repo: SessionsDep, store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    now = clock()
    _sync(repo, store, camper, now)
    try:
        return session_view(repo.stop(camper, by, now))
    except NoOpenSession as exc:
        raise HTTPException(409, detail=f"camper {camper!r} has no open workshop session to stop") from exc


@router.get("/api/v1/campers/{camper}/workshop/sessions", summary="The camper's workshop sessions, newest first")
def list_sessions(
    camper: KnownCamperDep, by: LeaderDep, repo: SessionsDep, store: StoreDep, clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    _sync(repo, store, camper, clock())
    current = repo.current(camper)
    return {"camper": camper, "current": None if current is None else session_view(current),
            "sessions": [session_view(s) for s in repo.list(camper, limit)]}


ShareToken = Annotated[str, Path(pattern=TOKEN_PATTERN, description="The session's share token")]


def _by_token(repo: SessionRepository, share_token: str) -> Session:
    session = repo.by_token(share_token)
    if session is None:
        raise HTTPException(404, detail="no workshop recap has this link (check that it was copied whole)")
    return session


def _recap_headers(session: Session) -> dict[str, str]:
    # private: the link is the key; no-referrer: the token must not leak to another site
    return {"Cache-Control": "no-cache" if session.open else "private, max-age=300", "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex"}


@router.get("/api/v1/recaps/{share_token}", summary="A workshop session's recap (JSON, no location)")
def recap_json(share_token: ShareToken, repo: SessionsDep, store: StoreDep, clock: ClockDep) -> JSONResponse:
    from camperhub.workshops.analysis import AnalysisError
    from camperhub.workshops.report import recap_json as shape, recap_totals

    session = _by_token(repo, share_token)
    try:
        totals = recap_totals(store, session, clock())
    except AnalysisError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return JSONResponse(shape(totals, session), headers=_recap_headers(session))


@router.get("/recap/{share_token}", include_in_schema=False, response_model=None)
def recap_page(
    request: Request, share_token: ShareToken, repo: SessionsDep, store: StoreDep, clock: ClockDep,
    lang: Annotated[str | None, Query(max_length=35)] = None,
) -> Response:
    from camperhub.api.pages.recap import negotiate, render
    from camperhub.workshops.analysis import AnalysisError

    session = _by_token(repo, share_token)
    code = negotiate(lang, request.headers.get("accept-language"))
    try:
        html = render(store, session, clock(), code)
    except AnalysisError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return HTMLResponse(html, headers={**_recap_headers(session), **page_headers(code)})


@router.get("/workshop/session.js", include_in_schema=False)
def session_script() -> Response:
    """The kiosk's start/stop control (the kiosk page loads it; same origin, allowed by its CSP)."""
    return Response(SESSION_JS.read_bytes(), media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


def page_headers(code: str) -> dict[str, str]:
    """No script at all on a recap: the CSP allows only its own inline style."""
    return {
        "Content-Language": code, "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
                                   "form-action 'none'; frame-ancestors 'none'",
    }
