"""The gate every request passes: who is asking, may they, is it cross-site, and the audit entry.

Why one ASGI middleware in front of every route: a route that forgets a check is the usual hole.
Here nothing reaches a handler unless (1) it is public (login page, static files, the API
description), or it has a live session — on a loopback service without accounts one is made for
the login name, like `rig run` uses it; (2) a state-changing request (POST/PUT/PATCH/DELETE) also
passes the cross-site rules and carries the session's CSRF token. Every state-changing request is
written to the station's audit trail with the user, the method, the path and the status (never a
body: passphrases and passwords travel only in bodies).
"""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rig.service.sessions import COOKIE, SAFE_METHODS, cross_site_problem, same_token
from rig.service.state import Service, local_account

PUBLIC_PREFIXES = ("/static/", "/procedure-images/")
PUBLIC_PATHS = ("/login", "/api/login", "/api/openapi.json", "/favicon.ico")
CSRF_HEADER = "x-csrf-token"


def session_cookie(value: str, *, secure: bool, clear: bool = False) -> bytes:
    cookie: SimpleCookie = SimpleCookie()
    cookie[COOKIE] = "" if clear else value
    morsel = cookie[COOKIE]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if secure:
        morsel["secure"] = True
    if clear:
        morsel["max-age"] = 0
    return morsel.OutputString().encode("latin-1")


def this_origin(scope: Scope, service: Service) -> str:
    host = Headers(scope=scope).get("host", f"{service.host}:{service.port}")
    return f"{'https' if service.tls else 'http'}://{host}"


class Gate:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        path: str = scope["path"]
        method: str = scope["method"]
        headers = Headers(scope=scope)
        cookies = _cookies(headers.get("cookie", ""))
        session = service.sessions.get(cookies.get(COOKIE))
        new_cookie: bytes | None = None
        if session is None and not service.auth_required:
            session = service.sessions.create(local_account())
            new_cookie = session_cookie(session.id, secure=service.tls)
        scope.setdefault("state", {})["session"] = session
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        changing = method not in SAFE_METHODS
        if session is None and not public:
            if path.startswith("/api/"):
                await _json(send, 401, "sign in first (POST /api/login)")
            else:
                await _redirect(send, "/login?next=" + path)
            return
        if changing:
            problem = cross_site_problem(headers, this_origin(scope, service))
            if problem is None and path not in ("/login", "/api/login"):
                token = headers.get(CSRF_HEADER) or await _form_token(scope, receive)
                if session is None or not same_token(token, session.csrf):
                    problem = "missing or wrong CSRF token (reload the page)"
            if problem is not None:
                await self._audit(session, method, path, 403, problem)
                await _json(send, 403, problem)
                return
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                if new_cookie is not None:
                    message.setdefault("headers", []).append((b"set-cookie", new_cookie))
                message.setdefault("headers", []).extend(SECURITY_HEADERS)
                if changing and path not in ("/login", "/api/login"):  # logins audit themselves
                    # in the trail before the client hears the answer
                    await self._audit(scope["state"].get("session") or session, method, path, message["status"])
            await send(message)

        await self.app(scope, _replay(scope) if "_rig_body" in scope else receive, sending)

    async def _audit(self, session: Any, method: str, path: str, status: int, refused: str = "") -> None:
        user = session.account.user if session is not None else None
        fields = {"user": user, "method": method, "url_path": path, "status": status}
        if refused:
            fields["refused"] = refused
        await anyio.to_thread.run_sync(lambda: self.service.audit("panel_request", **fields))


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'"),
]


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no session
        return {}
    return {k: m.value for k, m in jar.items()}


async def _form_token(scope: Scope, receive: Receive) -> str | None:
    """A plain HTML form carries the token as field ``csrf``: read the body once, keep it for the app."""
    ctype = Headers(scope=scope).get("content-type", "")
    if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    scope["_rig_body"] = body
    from urllib.parse import parse_qs

    if ctype.startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("utf-8", "replace")).get("csrf")
        return values[0] if values else None
    return None


def _replay(scope: Scope) -> Receive:
    body = scope.pop("_rig_body")
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _json(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1", "replace")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


__all__ = ["CSRF_HEADER", "Gate", "session_cookie"]
