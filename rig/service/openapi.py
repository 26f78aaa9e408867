"""The OpenAPI 3.1 description of the service's JSON API (served at /api/openapi.json).

Why written out rather than generated: the API is small and its security rules (cookie session,
CSRF header on every state change) and the event stream need saying in words; a test checks that
every /api route is described here and nothing described is missing.
"""

from __future__ import annotations

from typing import Any

from rig import __version__


def _op(summary: str, *, body: dict[str, Any] | None = None, changes: bool = False,
        responses: dict[str, str] | None = None, params: list[str] | None = None,
        query: list[str] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {code: {"description": text} for code, text in
                                        (responses or {"200": "OK"}).items()}}
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params or []]
    parameters += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in query or []]
    if changes:
        parameters.append({"name": "X-CSRF-Token", "in": "header", "required": True,
                           "schema": {"type": "string"}, "description": "the session's csrf (GET /api/session)"})
        op["responses"].setdefault("403", {"description": "cross-site request, missing CSRF token or wrong role"})
    op["responses"].setdefault("401", {"description": "not signed in"})
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


S, B, O = {"type": "string"}, {"type": "boolean"}, {"type": "object"}

PATHS: dict[str, dict[str, Any]] = {
    "/api/openapi.json": {"get": _op("This description")},
    "/api/session": {"get": _op("Who is signed in, their roles and the CSRF token for state changes")},
    "/api/login": {"post": _op("Sign in (sets the HttpOnly, SameSite=Strict session cookie)",
                               body=_obj(user=S, password=S),
                               responses={"200": "signed in; body has csrf", "401": "unknown user or wrong password",
                                          "415": "not JSON"})},
    "/api/logout": {"post": _op("Sign out", changes=True)},
    "/api/station": {"get": _op("Station status: instruments, identities, calibration, lock holder, jobs")},
    "/api/procedures": {"get": _op("Every procedure with its parameter schema (units, ranges, rules)")},
    "/api/procedures/{procedure}": {"get": _op("One procedure's parameter schema", params=["procedure"],
                                               responses={"200": "OK", "404": "no such procedure"})},
    "/api/jobs": {
        "get": _op("Jobs of this service, newest first"),
        "post": _op("Submit a run (kind run: procedure, fields NAME: VALUE incl. item-under-test entries) "
                    "or a nightly suite (kind nightly: suite, unsigned); checked before it is queued",
                    body=_obj(kind={"enum": ["run", "nightly"]}, procedure=S, fields=O, answers=O,
                              answers_via=S, suite=S, unsigned=B),
                    changes=True, responses={"201": "queued", "422": "refused: error, and per-field errors"}),
    },
    "/api/jobs/{job}": {"get": _op("One job (state, outcome, pending operator prompt, safe state)",
                                   params=["job"], responses={"200": "OK", "404": "no such job"})},
    "/api/jobs/{job}/abort": {"post": _op("Abort: a queued job is cancelled; a running one ends in the "
                                          "read-back safe state (see the safe_state event)",
                                          params=["job"], changes=True, responses={"202": "abort requested",
                                                                                   "409": "already ended"})},
    "/api/jobs/{job}/answer": {"post": _op("Answer the operator step the run is waiting for (recorded with "
                                           "who answered)", params=["job"], body=_obj(step=S, answer=S),
                                           changes=True, responses={"200": "accepted", "409": "not being asked",
                                                                    "422": "not a valid answer"})},
    "/api/events": {"get": {**_op("Server-Sent Events (text/event-stream): with ?job=ID that job's events "
                                  "(run_start, step, tick, points, balance, measurement, event, prompt, "
                                  "prompt_answered, outcome, safe_state, report, line, job_done) replayed "
                                  "from the start or after Last-Event-ID; always the station's job events",
                                  query=["job", "after"]),
                            "x-event-stream": True}},
    "/api/runs": {"get": _op("Finished and unfinished runs under the station's runs folder, newest first")},
    "/api/runs/{run}": {"get": _op("One run: outcome, measurements, operator entries, safe state, bundles "
                                   "with verify status", params=["run"])},
    "/api/runs/{run}/sign": {"post": _op("Sign a report bundle with your key (passphrase used once, never "
                                         "stored or logged); role must be one your panel role maps to",
                                         params=["run"], body=_obj(bundle=S, role=S, passphrase=S, key=S),
                                         changes=True, responses={"201": "signed", "422": "refused, with the reason"})},
    "/api/runs/{run}/verify": {"get": _op("Verify every report bundle of a run", params=["run"])},
    "/api/trends": {"get": _op("Per procedure and measurement: values over runs, drift assessment; nightly "
                               "summaries", query=["procedure"])},
}


def openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "rig serve: bench service API", "version": __version__,
                 "description": "The operator panel's API. Sign in with POST /api/login (or, on a loopback "
                                "service without accounts, any GET gives the login name a session); send "
                                "X-CSRF-Token with every state-changing request."},
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "rig_session"}}},
        "security": [{"session": []}],
        "paths": PATHS,
    }


__all__ = ["PATHS", "openapi"]
