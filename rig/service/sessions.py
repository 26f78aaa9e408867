"""Signed-in sessions and the cross-site request rules.

Why server-side sessions with a random id: the cookie carries nothing but 32 random bytes
(HttpOnly, so page scripts cannot read it; SameSite=Strict, so another site's page cannot make
the browser send it; Secure under TLS). Why CSRF tokens on top of SameSite: every state-changing
request must prove it comes from our own page — it carries the session's token in a header
(X-CSRF-Token) or form field, compared in constant time, and a browser's Origin/Sec-Fetch-Site
must name this service. A request failing either is refused before any handler runs.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rig.service.accounts import Account

COOKIE = "rig_session"
IDLE_S = 12 * 3600.0  # a bench shift
MAX_SESSIONS = 2000  # beyond this, idle sessions are dropped oldest first (cookie-less API clients)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass
class Session:
    id: str
    account: Account
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def create(self, account: Account) -> Session:
        session = Session(secrets.token_urlsafe(32), account)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                now = time.monotonic()
                for sid, old in sorted(self._sessions.items(), key=lambda kv: kv[1].last_seen):
                    if len(self._sessions) < MAX_SESSIONS // 2 and now - old.last_seen < IDLE_S:
                        break
                    del self._sessions[sid]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            now = time.monotonic()
            if now - session.last_seen > IDLE_S:
                del self._sessions[session_id]
                return None
            session.last_seen = now
            return session

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)


def cookie_options(secure: bool) -> dict[str, Any]:
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given), expected)


def cross_site_problem(headers: Any, origin: str) -> str | None:
    """Why a state-changing request looks cross-site, or None. ``origin`` is this service's
    scheme://host:port as the browser sees it (from the Host header)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    given = headers.get("origin")
    if given and given != "null" and given.rstrip("/") != origin:
        return f"cross-site request refused (Origin {given} is not {origin})"
    if given == "null":
        return "cross-site request refused (Origin: null)"
    return None


__all__ = ["COOKIE", "SAFE_METHODS", "Session", "SessionStore", "cookie_options", "cross_site_problem",
           "same_token"]
