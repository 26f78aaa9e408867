"""The bench service on a real socket for the API, security and browser tests.

``PanelServer`` runs ``rig.service`` (the Starlette app on uvicorn, the job worker, the station
lock) in this process on an ephemeral 127.0.0.1 port, exactly as `rig serve` assembles it minus
the command line; ``PanelClient`` is a cookie-keeping HTTP client that speaks the API and reads the
event stream. Everything started is stopped at teardown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from rig.service.accounts import Accounts
from rig.service.server import BackgroundService
from rig.service.state import Service
from rig.station.config import load_station

PASSWORDS = {"olivia": "operator-pass-1", "rita": "reviewer-pass-1", "adam": "admin-pass-12"}


def make_accounts(path: Path, keys: dict[str, str] | None = None) -> Accounts:
    accounts = Accounts(path)
    for user, role in (("olivia", "operator"), ("rita", "reviewer"), ("adam", "admin")):
        accounts.add(user, user.title(), role, PASSWORDS[user], (keys or {}).get(user, ""))
    accounts.save()
    return accounts


class PanelServer(BackgroundService):
    """The service for ``station_path`` (``host`` is what it believes it is bound to: the auth
    rules follow it; the socket is always loopback)."""

    def __init__(self, station_path: Path, *, accounts: Accounts | None = None, host: str = "127.0.0.1",
                 registry: Path | None = None) -> None:
        self.station = load_station(station_path)
        # A lock directory of its own: module-scoped servers start before the per-test $RIG_LOCK_DIR.
        super().__init__(Service(self.station, accounts or Accounts(None), host=host, registry_path=registry),
                         lock_dir=Path(station_path).parent / "locks")

    def client(self, user: str | None = None, password: str | None = None) -> "PanelClient":
        return PanelClient(self.url, user, password)


class PanelClient:
    """A browser-like API client: session cookie, CSRF header on every POST, same-origin Origin."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30, headers={"Origin": url})
        self.csrf = ""
        if user:
            r = self.http.post("/api/login", json={"user": user, "password": password or PASSWORDS[user]})
            r.raise_for_status()
            self.csrf = r.json()["csrf"]
        else:
            r = self.http.get("/api/session")
            if r.status_code == 200:
                self.csrf = r.json()["csrf"]

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, body: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        headers.update(kw.pop("headers", {}))
        return self.http.post(path, json=body or {}, headers=headers, **kw)

    def submit(self, procedure: str, **fields: Any) -> dict[str, Any]:
        answers = fields.pop("answers", None)
        r = self.post("/api/jobs", {"procedure": procedure, "fields": fields, **({"answers": answers} if answers else {})})
        assert r.status_code == 201, r.text
        return r.json()

    def events(self, job: str, timeout_s: float = 120.0) -> Iterator[dict[str, Any]]:
        """The job's events from its start until job_done (a real SSE read)."""
        with self.http.stream("GET", f"/api/events?job={job}", timeout=timeout_s) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    yield event
                    if event.get("type") == "job_done":
                        return

    def follow(self, job: str, answers: dict[str, str] | None = None, *, abort_on: str | None = None,
               timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Watch a job to the end, answering prompts from ``answers`` and aborting when an event of
        type ``abort_on`` arrives; returns every event seen."""
        seen: list[dict[str, Any]] = []
        aborted = False
        for event in self.events(job, timeout_s):
            seen.append(event)
            if event.get("type") == "prompt" and answers is not None and event["step"] in answers:
                r = self.post(f"/api/jobs/{job}/answer", {"step": event["step"], "answer": answers[event["step"]]})
                assert r.status_code == 200, r.text
            if abort_on and not aborted and event.get("type") == abort_on:
                aborted = True
                assert self.post(f"/api/jobs/{job}/abort").status_code == 202
        return seen
