"""Staff bearer tokens (ARCHITECTURE.md §10): created once, kept only as SHA-256 hashes.

A token is ``secrets.token_urlsafe(32)`` (256 random bits): printed once by
``camperhub token create NAME --role staff|admin`` and never stored in clear.
The small SQLite file (``CAMPERHUB_TOKENS_PATH``) holds name, role, creation
time and the hash; a request's ``Authorization: Bearer ...`` is hashed and
compared with every stored hash with :func:`hmac.compare_digest` (constant
time, no early exit: there are a handful of staff tokens). Revocation takes
effect at the next request. Tokens never reach a log: failures log the reason
only.

Why SHA-256 and not a slow password hash: the tokens are long random strings,
not passwords a person chose, so a fast hash cannot be brute-forced; a slow
one would only cost every staff request time.

Roles: ``staff`` reads the fleet and edits schedules; ``admin`` can do all
that and manage. :data:`StaffDep`-protected routes accept both, ``AdminDep``
only admin. 401 (with ``WWW-Authenticate: Bearer``) without or with a bad
token, 403 with a valid token of a role that may not.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

log = logging.getLogger(__name__)

Role = Literal["staff", "admin"]
ROLES: tuple[str, ...] = ("staff", "admin")
#: Token names: a person or a machine ("maria", "fleet-kiosk"), shown in `token list`.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
#: What each role may do: a route that needs the key role accepts these.
_ALLOWED: dict[str, frozenset[str]] = {"staff": frozenset({"staff", "admin"}), "admin": frozenset({"admin"})}
REALM = "camperhub"


@dataclass(frozen=True)
class TokenInfo:
    """A token's public facts (never the token nor its hash)."""

    name: str
    role: str
    created_ms: int

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_ms / 1000, UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Token hashes in one SQLite file; a connection per call (safe from the API's threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # hashes only, still nobody else's business
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS token ("
                " name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def create(self, name: str, role: str) -> str:
        """A new token for ``name`` (returned once, stored hashed); ValueError for a bad name or
        role, or a name already used (revoke it first)."""
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"token name {name!r} must match {NAME_PATTERN}")
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        token = secrets.token_urlsafe(32)
        try:
            with closing(self._connect()) as db, db:
                db.execute(
                    "INSERT INTO token (name, role, hash, created_ms) VALUES (?, ?, ?, ?)",
                    (name, role, token_hash(token), int(time.time() * 1000)),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"a token named {name!r} exists already: revoke it first") from None
        return token

    def list(self) -> list[TokenInfo]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT name, role, created_ms FROM token ORDER BY name").fetchall()
        return [TokenInfo(*r) for r in rows]

    def revoke(self, name: str) -> bool:
        """Remove the token named ``name``; True when there was one."""
        with closing(self._connect()) as db, db:
            return db.execute("DELETE FROM token WHERE name = ?", (name,)).rowcount > 0

    def verify(self, token: str) -> TokenInfo | None:
        """The token's facts when it is one of ours, else None (constant-time comparisons)."""
        wanted = token_hash(token)
        with closing(self._connect()) as db:
            rows = db.execute("SELECT name, role, created_ms, hash FROM token").fetchall()
        found: TokenInfo | None = None
        for name, role, created_ms, stored in rows:
            if hmac.compare_digest(wanted, stored) and found is None:
                found = TokenInfo(name, role, created_ms)
        return found


# -- FastAPI dependencies (aliases StaffDep / AdminDep in camperhub.api.deps) ---------------------
bearer = HTTPBearer(auto_error=False, description="A staff token: `camperhub token create NAME --role staff`")
_tokens_lock = threading.Lock()


def get_tokens(request: Request) -> TokenStore:
    """The app's token store; opened on first use (CAMPERHUB_TOKENS_PATH) unless the app was given one."""
    state = request.app.state
    if getattr(state, "tokens", None) is None:
        with _tokens_lock:
            if getattr(state, "tokens", None) is None:
                from camperhub.api.settings import AuthSettings

                state.tokens = TokenStore(AuthSettings().tokens_path)
    return state.tokens


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": challenge})


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None, role: str) -> TokenInfo:
    """The caller's token facts; 401 without or with a bad token, 403 when its role may not."""
    if credentials is None:
        header = request.headers.get("authorization")
        if header:
            raise _unauthorized("the Authorization header must be 'Bearer TOKEN'", "invalid_request")
        raise _unauthorized(f"this needs a {role} token: send 'Authorization: Bearer TOKEN'")
    info = get_tokens(request).verify(credentials.credentials)
    if info is None:
        log.info("refused a bearer token that is not (or no longer) valid, from %s", request.client.host if request.client else "?")
        raise _unauthorized("the token is not valid (revoked, or never issued)", "invalid_token")
    if info.role not in _ALLOWED[role]:
        raise HTTPException(403, detail=f"token {info.name!r} has role {info.role!r}; this needs {role}")
    request.state.token_name = info.name
    return info
