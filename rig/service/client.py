"""`rig run --via URL` and `rig nightly --via URL`: submit to a bench service, watch it here.

Why replay the stream into the terminal's own ``Display``: the technician sees the same live view
as with `rig run` (rich panel on a terminal, plain lines in a pipe), because the service publishes
exactly the calls the runner makes. Operator steps are answered here (or pre-supplied with
--answer); Ctrl-C asks the service to abort and keeps watching until the bench is safe.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar
from typing import Any

from rig.engine.display import Display, RunInfo
from rig.errors import RigError, UsageError

PASSWORD_ENV = "RIG_PANEL_PASSWORD"
EXIT = {"PASS": 0, "FAIL": 1}


class ServiceError(RigError):
    """The service refused or could not be reached (exit 2 for a refused request)."""

    exit_code = 2


class ServiceClient:
    """A signed-in session with a bench service (cookie + CSRF token), stdlib only."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None,
                 timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(f"--via {url!r}: expected the service's URL, e.g. http://127.0.0.1:8714/")
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        if user:
            who = self.request("POST", "/api/login", {"user": user, "password": password or ""}, csrf=False)
        else:
            who = self.request("GET", "/api/session")
        self.csrf = who["csrf"]
        self.user = who.get("user")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, csrf: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if method != "GET" and csrf:
            req.add_header("X-CSRF-Token", self.csrf)
        try:
            with self._opener.open(req, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                detail = exc.reason
            if exc.code == 401:
                raise ServiceError(f"{self.base}: {detail} (give --user NAME and ${PASSWORD_ENV})") from None
            raise ServiceError(f"{self.base}{path}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"cannot reach the bench service at {self.base}: {reason}") from None

    def events(self, job: str) -> Iterator[dict[str, Any]]:
        """The job's events from its start, until the job is done."""
        last = 0
        while True:
            req = urllib.request.Request(f"{self.base}/api/events?job={urllib.parse.quote(job)}&after={last}")
            req.add_header("Accept", "text/event-stream")
            try:
                with self._opener.open(req, timeout=60) as stream:
                    for raw in stream:
                        line = raw.decode("utf-8").rstrip("\n")
                        if line.startswith("data: "):
                            event = json.loads(line[6:])
                            last = max(last, int(event.get("seq", 0)))
                            yield event
                            if event.get("type") == "job_done":
                                return
            except (urllib.error.URLError, OSError, TimeoutError):
                pass  # reconnect and replay after the last event seen


def login(args: Any) -> ServiceClient:
    password = None
    if getattr(args, "user", None):
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            if not sys.stdin.isatty():
                raise UsageError(f"no password for {args.user}: set ${PASSWORD_ENV} or run in a terminal")
            password = getpass.getpass(f"password for {args.user} at {args.via}: ")
    return ServiceClient(args.via, args.user, password)


class _AbortOnInterrupt:
    """Ctrl-C/SIGTERM: ask the service to abort the job (once) and keep watching."""

    def __init__(self, client: ServiceClient, job: str, display: Display) -> None:
        self.client, self.job, self.display, self.sent = client, job, display, False

    def __call__(self, signum: int, _frame: Any) -> None:
        if not self.sent:
            self.sent = True
            try:
                self.client.request("POST", f"/api/jobs/{self.job}/abort", {})
                self.display.message("abort requested from here; the service puts the bench in its safe state")
            except RigError as exc:
                self.display.message(f"abort could not be sent: {exc}")
        else:
            self.display.message("still waiting for the safe state on the service; this is not skipped")


def replay(event: dict[str, Any], display: Display) -> None:
    """One service event as the runner's own Display call."""
    kind = event.get("type")
    if kind == "run_start":
        display.start(RunInfo(event["run_id"], event["procedure"], event["title"], event["station"],
                              event["operator"], [(s["name"], s["expected_s"]) for s in event["steps"]],
                              bool(event["virtual"]), event["record"]))
    elif kind == "step":
        if event["status"] == "started":
            display.step_started(event["index"], event["name"], event["t_proc_s"])
        else:
            display.step_finished(event["index"], event["name"], event["status"])
    elif kind == "tick":
        for name, v in (event.get("live") or {}).items():
            display.live(name, v["value"], v["unit"], v.get("low"), v.get("high"))
        display.tick(event["t_proc_s"], event["t_wall_s"])
    elif kind == "measurement":
        display.measurement(event)
    elif kind == "event":
        display.event(event["kind"], event["detail"])
    elif kind in ("message", "line"):
        display.message(event["text"])
    elif kind == "prompt_answered":
        display.message(f"operator step {event['step']}: {event['answer']} (answered by {event['answered_by']})")
    elif kind == "safe_state":
        state = "confirmed (read back)" if event.get("confirmed") else f"NOT confirmed: {event.get('error')}"
        display.message(f"safe state {state}")
    elif kind == "outcome":
        display.finish(event["outcome"], event["reason"])


def _answer_prompt(client: ServiceClient, job: str, event: dict[str, Any], display: Display) -> None:
    if not sys.stdin.isatty():
        display.message(f"operator step {event['step']!r} is waiting for an answer in the panel "
                        f"({client.base}/jobs/{job}); this terminal is not interactive")
        return
    suffix = {"instruction": " [Enter when done] ", "confirm": " [yes/no] "}.get(event["kind"], ": ")
    while True:
        with display.paused():
            try:
                text = input(f"\n>>> {event['prompt']}{suffix}")
            except EOFError:
                return
        try:
            client.request("POST", f"/api/jobs/{job}/answer", {"step": event["step"], "answer": text})
            return
        except ServiceError as exc:
            if "is not being asked" in str(exc):
                return  # answered in the panel meanwhile
            print(f"    {exc}")


def watch(client: ServiceClient, job: dict[str, Any], display: Display) -> dict[str, Any]:
    handler = _AbortOnInterrupt(client, job["id"], display)
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    done: dict[str, Any] = job
    try:
        for event in client.events(job["id"]):
            if event.get("type") == "prompt":
                _answer_prompt(client, job["id"], event, display)
            elif event.get("type") == "job_done":
                done = event["summary"]
            else:
                replay(event, display)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        display.close()
    return done


def run_via(args: Any, make_display: Callable[..., Display]) -> int:
    """`rig run PROCEDURE --via URL`; ``make_display`` is the command line's (rich or plain)."""
    from rig.engine.operator import load_answers_file, parse_answer_args

    if args.out or args.station:
        raise UsageError("--out and --station belong to the service with --via (its station runs the procedure)")
    client = login(args)
    schema = client.request("GET", f"/api/procedures/{urllib.parse.quote(args.procedure)}")
    answers = dict(load_answers_file(args.answers)) if args.answers else {}
    answers.update(parse_answer_args(args.answer))
    items = {e["id"] for e in schema["item_under_test"]}
    fields: dict[str, str] = {k: v for k, v in answers.items() if k in items}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--param {item!r}: expected NAME=VALUE")
        fields[name.strip()] = value
    missing = [e for e in schema["item_under_test"] if e["id"] not in fields]
    for entry in missing:
        if not sys.stdin.isatty():
            raise UsageError(f"operator step {entry['id']!r} ({entry['prompt']!r}) needs an answer; give "
                             f"--answer {entry['id']}=...")
        fields[entry["id"]] = input(f">>> {entry['prompt']}: ")
    job = client.request("POST", "/api/jobs", {
        "kind": "run", "procedure": args.procedure, "fields": fields,
        "answers": {k: v for k, v in answers.items() if k not in items}, "answers_via": "rig run --via"})
    print(f"submitted job {job['id']} (run {job['run_id']}) to {client.base}; panel: {client.base}/jobs/{job['id']}",
          flush=True)
    done = watch(client, job, make_display(plain=True if args.plain else None))
    print(f"{done.get('outcome')}: {done.get('reason')}")
    print(f"record (on the service): {done.get('run_id')}; report: {done.get('bundle') or 'none'}")
    return EXIT.get(str(done.get("outcome")), 3)


def nightly_via(args: Any) -> int:
    """`rig nightly --via URL`: the service runs the suite; its log streams here."""
    from rig.engine.display import PlainDisplay

    suite = os.path.basename(args.suite) if args.suite else None
    client = login(args)
    job = client.request("POST", "/api/jobs", {"kind": "nightly", "suite": suite, "unsigned": bool(args.unsigned)})
    print(f"submitted nightly job {job['id']} to {client.base}; output on the service: {job.get('out_dir')}", flush=True)
    done = watch(client, job, PlainDisplay(sys.stdout))
    print(f"{done.get('outcome')}: {done.get('reason')}")
    return EXIT.get(str(done.get("outcome")), 3)


__all__ = ["ServiceClient", "ServiceError", "nightly_via", "replay", "run_via", "watch"]
